// indri: a forgejo-runner Deployment on minikube that ArgoCD owns. ESO syncs the key from 1Password
// into a Secret; a server-side-apply patch adds only the env entry, the read-only env-file volume
// and a pod-template annotation to the Deployment. Pulumi never sees the key in any object it writes.
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { parse as parseYaml } from "yaml";
import { ConfigError, type KubernetesConfig } from "../lib/config";
import type { FieldRef } from "./onePassword";
import type { RunnerTarget, TargetContext, TargetResult } from "./target";

const DIGEST_ANNOTATION = "runner-secrets/key-digest";
/** The Secret's data key ESO renders the synced key's digest into. */
const KEY_DIGEST_KEY = "key-digest";

/**
 * A short hash of what the patch adds to the pod template's lists. The provider compares those
 * lists with the live object by position (ArgoCD's items come first), so the patch ignores them
 * in diffs; a change to them instead gets a new patch resource and field manager named by this.
 */
function patchShape(cfg: KubernetesConfig, envVar: string): string {
  const { spec } = podTemplatePatch(cfg, envVar, "");
  return createHash("sha256").update(JSON.stringify(spec)).digest("hex").slice(0, 8);
}

/** Kubeconfig files the provider would read: the configured one, else $KUBECONFIG, else ~/.kube/config. */
function kubeconfigPaths(cfg: KubernetesConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  if (cfg.kubeconfig) return [cfg.kubeconfig];
  if (env.KUBECONFIG) return env.KUBECONFIG.split(path.delimiter).filter(Boolean);
  return [path.join(os.homedir(), ".kube", "config")];
}

/** Why the configured context cannot be used, or undefined when one of the files defines it. */
function kubeContextProblem(context: string, files: { path: string; text?: string }[]): string | undefined {
  const known: string[] = [];
  for (const f of files) {
    if (f.text === undefined) continue;
    const doc = parseYaml(f.text) as { contexts?: { name?: unknown }[] } | null;
    for (const c of doc?.contexts ?? []) if (typeof c?.name === "string") known.push(c.name);
  }
  if (known.includes(context)) return undefined;
  const where = files.map((f) => f.path).join(", ");
  const found = files.some((f) => f.text !== undefined);
  const have = known.length ? `contexts there: ${known.join(", ")}` : found ? "it defines no contexts" : "no such file";
  return (
    `runner-secrets:kubernetes.context: kube context "${context}" not found in ${where} (${have}). ` +
    "Start the cluster (minikube start) or set runner-secrets:kubernetes.context / .kubeconfig; " +
    "this program never falls back to the current context"
  );
}

/**
 * ESO's template refuses any key but the approved one: a key changed in 1Password without `up` (or
 * one the registry check refused) never reaches the Secret, not on a re-sync after the Secret was
 * deleted, not after ESO restarts. Only the digest is in the object, never the key.
 */
export function approvedOnly(digest: string, body: string): string {
  return `{{ if ne (.apiKey | sha256sum | trunc 16) "${digest}" }}{{ fail "runner-secrets: the key in 1Password is not the one pulumi up approved (digest ${digest}); run pulumi up" }}{{ end }}${body}`;
}

/** The ExternalSecret's spec: which 1Password field, where it lands, and how the Secret is rendered. */
function externalSecretSpec(cfg: KubernetesConfig, source: FieldRef, envVar: string, digest: pulumi.Input<string>) {
  const envFileKey = path.posix.basename(cfg.envFilePath);
  return {
    // Sync only when the ExternalSecret changes (each approved key changes the template), never on a timer.
    refreshPolicy: "OnChange",
    secretStoreRef: { kind: cfg.secretStore.kind, name: cfg.secretStore.name },
    target: {
      name: cfg.secretName,
      // The Secret belongs to the ExternalSecret and goes away with it.
      creationPolicy: "Owner",
      template: {
        engineVersion: "v2",
        type: "Opaque",
        data: pulumi.output(digest).apply((d) => ({
          // For the daemon's own env (secretKeyRef).
          [envVar]: approvedOnly(d, "{{ .apiKey }}"),
          // For runner.env_file: Docker jobs get only runner.envs and this file, never the daemon's env.
          // Single quotes: godotenv reads them literally (no $ expansion).
          [envFileKey]: approvedOnly(d, `${envVar}='{{ .apiKey }}'\n`),
          // What ESO really synced; `up` waits for it before rolling the runner.
          [KEY_DIGEST_KEY]: approvedOnly(d, "{{ .apiKey | sha256sum | trunc 16 }}"),
        })),
      },
    },
    data: [
      {
        secretKey: "apiKey",
        // property must name the field: left empty, ESO's 1Password provider reads "password",
        // which API Credential items do not have.
        remoteRef: { key: source.item, property: source.field },
      },
    ],
  };
}

/** What the patch adds to the Deployment's pod template: nothing else is claimed by its field manager. */
function podTemplatePatch(cfg: KubernetesConfig, envVar: string, digest: pulumi.Input<string>) {
  const envFileKey = path.posix.basename(cfg.envFilePath);
  return {
    metadata: { annotations: { [DIGEST_ANNOTATION]: digest } },
    spec: {
      containers: [
        {
          name: cfg.container,
          env: [{ name: envVar, valueFrom: { secretKeyRef: { name: cfg.secretName, key: envVar } } }],
          volumeMounts: [{ name: cfg.volumeName, mountPath: path.posix.dirname(cfg.envFilePath), readOnly: true }],
        },
      ],
      volumes: [
        {
          name: cfg.volumeName,
          secret: { secretName: cfg.secretName, defaultMode: 0o400, items: [{ key: envFileKey, path: envFileKey }] },
        },
      ],
    },
  };
}

export class KubernetesTarget implements RunnerTarget {
  readonly kind = "kubernetes";
  /** False only in a preview without the kube context (e.g. on a pull request). */
  private readonly clusterVisible: boolean;

  /** Checks the kube context first: a wrong cluster is the failure that matters most here. */
  constructor(
    private readonly cfg: KubernetesConfig,
    opts: { preview: boolean; readFile?: (p: string) => string | undefined } = { preview: false },
  ) {
    const read = opts.readFile ?? ((p: string) => (fs.existsSync(p) ? fs.readFileSync(p, "utf8") : undefined));
    const files = kubeconfigPaths(cfg).map((p) => ({ path: p, text: read(p) }));
    const problem = kubeContextProblem(cfg.context, files);
    this.clusterVisible = !problem;
    // A config error (no stack trace on `up`), before any resource is registered.
    if (problem && !opts.preview) throw new ConfigError([problem]);
    // A preview without cluster access (e.g. on a pull request) only shows what would change.
    if (problem) pulumi.log.warn(problem);
  }

  deploy(ctx: TargetContext): TargetResult {
    const cfg = this.cfg;
    const provider = new k8s.Provider(
      `${ctx.name}-k8s`,
      { context: cfg.context, ...(cfg.kubeconfig ? { kubeconfig: cfg.kubeconfig } : {}), enableServerSideApply: true },
      { parent: ctx.parent },
    );
    const opts = { parent: ctx.parent, provider };

    const timeout = String(cfg.readyTimeoutSeconds);
    const externalSecret = new k8s.apiextensions.CustomResource(
      `${ctx.name}-external-secret`,
      {
        apiVersion: "external-secrets.io/v1",
        kind: "ExternalSecret",
        metadata: {
          name: cfg.externalSecret,
          namespace: cfg.namespace,
          // Truthful on create only (Ready stays True from the previous sync on an update); the
          // Secret's own digest is what a rotation waits for, below.
          annotations: { "pulumi.com/waitFor": "condition=Ready", "pulumi.com/timeoutSeconds": timeout },
        },
        spec: externalSecretSpec(cfg, ctx.source, ctx.envVar, ctx.key.digest),
      },
      // A renamed ExternalSecret must let go of the Secret before the new one can own it.
      { ...opts, dependsOn: ctx.dependsOn, deleteBeforeReplace: true },
    );

    // Waits until ESO has written the approved key into the Secret: only then may a pod roll.
    // The patch claims only these annotations; the Secret's data stays ESO's (and reaches
    // Pulumi's state only as the provider's encrypted secret output).
    const synced = new k8s.core.v1.SecretPatch(
      `${ctx.name}-secret-synced`,
      {
        metadata: {
          name: cfg.secretName,
          namespace: cfg.namespace,
          annotations: pulumi.all([ctx.key.digest, externalSecret.metadata.uid]).apply(([digest, uid]) => ({
            "pulumi.com/patchFieldManager": cfg.fieldManager,
            "pulumi.com/waitFor": `jsonpath={.data['${KEY_DIGEST_KEY}']}=${Buffer.from(digest).toString("base64")}`,
            "pulumi.com/timeoutSeconds": timeout,
            [DIGEST_ANNOTATION]: digest,
            // A new ExternalSecret (rename, replace) re-applies this wait against the Secret it writes.
            "runner-secrets/external-secret-uid": uid,
          })),
        },
      },
      { ...opts, dependsOn: [externalSecret, ...ctx.dependsOn] },
    );

    // The live Deployment's uid: one that ArgoCD deleted and re-created gets patched again (the
    // patch's diff compares with state, which still holds the old object). Read on every run; a
    // preview without cluster access keeps the recorded uid instead.
    const uidKey = "runner-secrets/deployment-uid";
    const uid = this.clusterVisible
      ? k8s.apps.v1.Deployment.get(`${ctx.name}-deployment`, `${cfg.namespace}/${cfg.deployment}`, opts).metadata.uid
      : pulumi.output("");

    // Applied only after the Secret holds the new key; the provider then waits for the rollout.
    // Two patches, because the provider cannot diff lists against ArgoCD's (it compares them by
    // position, and with ignoreChanges its update rewrites them from the live object):
    //  - the lists (env, mount, volume): named and field-managed by their shape, never updated in
    //    place: a new shape is a new patch, a re-created Deployment (new uid) a replacement;
    //  - the pod-template digest annotation: a map, updated in place on every rotation.
    const shape = patchShape(cfg, ctx.envVar);
    const template = podTemplatePatch(cfg, ctx.envVar, ctx.key.digest);
    const uidIgnored = this.clusterVisible ? [] : [`metadata.annotations["${uidKey}"]`];
    const wiring = new k8s.apps.v1.DeploymentPatch(
      `${ctx.name}-deployment-patch-${shape}`,
      {
        metadata: {
          name: cfg.deployment,
          namespace: cfg.namespace,
          annotations: {
            // One field manager per shape: the old shape's patch, deleted after the new one is
            // applied, relinquishes only what the new one no longer claims.
            "pulumi.com/patchFieldManager": `${cfg.fieldManager}-${shape}`,
            // Takes over the fields the previous shape's manager held (same env name, same mount).
            "pulumi.com/patchForce": "true",
            [uidKey]: uid,
          },
        },
        spec: { template: { spec: template.spec } },
      },
      {
        ...opts,
        dependsOn: [synced, externalSecret, ...ctx.dependsOn],
        // Their content is in the name (shape); compared by position they always differ.
        ignoreChanges: ["spec.template.spec.containers", "spec.template.spec.volumes", ...uidIgnored],
        replaceOnChanges: [`metadata.annotations["${uidKey}"]`],
        // `--replace` (or a new uid) under the same field manager: the old one must let go first,
        // or its delete would withdraw every field the new one just applied.
        deleteBeforeReplace: true,
      },
    );

    const rollout = new k8s.apps.v1.DeploymentPatch(
      `${ctx.name}-rollout`,
      {
        metadata: {
          name: cfg.deployment,
          namespace: cfg.namespace,
          // No patchFieldManager: the provider's own per-resource manager (kept in state, new on
          // each replacement), so `--replace` applies before the old one lets go. A named one
          // would also put a second, conflicting value on the Deployment's annotation.
          annotations: { [uidKey]: uid },
        },
        spec: { template: { metadata: template.metadata } },
      },
      { ...opts, dependsOn: [wiring, synced, ...ctx.dependsOn], ignoreChanges: uidIgnored },
    );

    return {
      location: pulumi.output(`${cfg.namespace}/${cfg.secretName}`),
      // Known only once the rollout onto the key has finished (the provider awaits it).
      keyDigest: pulumi.all([rollout.id, ctx.key.digest]).apply(([, digest]) => digest),
    };
  }
}
