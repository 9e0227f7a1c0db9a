// indri: a forgejo-runner Deployment on minikube that ArgoCD owns. ESO syncs the key from 1Password
// into a Secret; a server-side-apply patch adds only the env entry, the read-only env-file volume
// and a pod-template annotation to the Deployment. Pulumi never sees the key in any object it writes.
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import * as k8s from "@pulumi/kubernetes";
import { parse as parseYaml } from "yaml";
import type { KubernetesConfig } from "./config";
import type { FieldRef } from "./onePassword";
import type { RunnerTarget, TargetContext, TargetResult } from "./target";

export const DIGEST_ANNOTATION = "runner-secrets/key-digest";

/** Kubeconfig files the provider would read: the configured one, else $KUBECONFIG, else ~/.kube/config. */
export function kubeconfigPaths(cfg: KubernetesConfig, env: NodeJS.ProcessEnv = process.env): string[] {
  if (cfg.kubeconfig) return [cfg.kubeconfig];
  if (env.KUBECONFIG) return env.KUBECONFIG.split(path.delimiter).filter(Boolean);
  return [path.join(os.homedir(), ".kube", "config")];
}

/** Why the configured context cannot be used, or undefined when one of the files defines it. */
export function kubeContextProblem(context: string, files: { path: string; text?: string }[]): string | undefined {
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

/** The ExternalSecret's spec: which 1Password field, where it lands, and how the Secret is rendered. */
export function externalSecretSpec(cfg: KubernetesConfig, source: FieldRef, envVar: string) {
  const envFileKey = path.posix.basename(cfg.envFilePath);
  return {
    refreshInterval: cfg.refreshInterval,
    secretStoreRef: { kind: cfg.secretStore.kind, name: cfg.secretStore.name },
    target: {
      name: cfg.secretName,
      // The Secret belongs to the ExternalSecret and goes away with it.
      creationPolicy: "Owner",
      template: {
        engineVersion: "v2",
        type: "Opaque",
        data: {
          // For the daemon's own env (secretKeyRef).
          [envVar]: "{{ .apiKey }}",
          // For runner.env_file: Docker jobs get only runner.envs and this file, never the daemon's env.
          // Single quotes: godotenv reads them literally (no $ expansion).
          [envFileKey]: `${envVar}='{{ .apiKey }}'\n`,
          // Lets an operator confirm which key the Secret holds without reading it.
          "key-digest": "{{ .apiKey | sha256sum | trunc 16 }}",
        },
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
export function podTemplatePatch(cfg: KubernetesConfig, envVar: string, digest: pulumi.Input<string>) {
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

  /** Checks the kube context first: a wrong cluster is the failure that matters most here. */
  constructor(
    private readonly cfg: KubernetesConfig,
    opts: { preview: boolean; readFile?: (p: string) => string | undefined } = { preview: false },
  ) {
    const read = opts.readFile ?? ((p: string) => (fs.existsSync(p) ? fs.readFileSync(p, "utf8") : undefined));
    const files = kubeconfigPaths(cfg).map((p) => ({ path: p, text: read(p) }));
    const problem = kubeContextProblem(cfg.context, files);
    if (problem && !opts.preview) throw new Error(problem);
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

    const externalSecret = new k8s.apiextensions.CustomResource(
      `${ctx.name}-external-secret`,
      {
        apiVersion: "external-secrets.io/v1",
        kind: "ExternalSecret",
        metadata: {
          name: cfg.externalSecret,
          namespace: cfg.namespace,
          annotations: {
            // A changed annotation makes ESO re-sync now instead of at the next refreshInterval.
            [DIGEST_ANNOTATION]: ctx.key.digest,
            "pulumi.com/waitFor": "condition=Ready",
            "pulumi.com/timeoutSeconds": String(cfg.readyTimeoutSeconds),
          },
        },
        spec: externalSecretSpec(cfg, ctx.source, ctx.envVar),
      },
      { ...opts, dependsOn: ctx.gate },
    );

    // Applied only after the ExternalSecret is Ready, so the rolled pod starts with the new key.
    const patch = new k8s.apps.v1.DeploymentPatch(
      `${ctx.name}-deployment-patch`,
      {
        metadata: {
          name: cfg.deployment,
          namespace: cfg.namespace,
          annotations: { "pulumi.com/patchFieldManager": cfg.fieldManager },
        },
        spec: { template: podTemplatePatch(cfg, ctx.envVar, ctx.key.digest) },
      },
      { ...opts, dependsOn: [externalSecret, ...ctx.gate] },
    );

    return {
      location: pulumi.output(`${cfg.namespace}/${cfg.secretName}`),
      // Known only once the patch that rolls the runner onto the key is applied.
      keyDigest: pulumi.all([patch.id, ctx.key.digest]).apply(([, digest]) => digest),
    };
  }
}
