// Everything the indri stack meets on the real engine: a real kube-apiserver (audit log on) with
// kube-controller-manager (Deployments roll ReplicaSets, the garbage collector removes owned
// Secrets), the real ESO v0.16.2 controller syncing from the 1Password Connect stand-in through a
// ClusterSecretStore, a Deployment applied the way ArgoCD applies it, and the real registry for the
// registry check. Each client has its own API user, so the audit log tells Pulumi's requests apart.
//
// STAND-IN: there is no scheduler and no kubelet. `kubelet` below plays the kubelet's part of the
// proof: when a pod appears it resolves the runner container's ZOT_CI_API_KEY secretKeyRef and the
// env-file volume from the Secret *at that moment* (as the kubelet does when it starts a
// container), records the key's digest, and only then marks the pod Ready. A pod whose Secret or
// key is missing stays unready and is recorded as "missing" (the kubelet's
// CreateContainerConfigError), and is retried, as the kubelet retries.
import { spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { keyDigest } from "../../../lib/registryKey";
import { requireBinaries, startApiServer, type ApiServer, type AuditEvent } from "../../support/apiServer";
import { baseDeployment } from "../../support/argoDeployment";
import { committedValue } from "../../support/mockStack";
import { startRegistry, type TestRegistry } from "../../support/registry";
import { startConnect, type ConnectStandIn } from "./connect";
import { e2eBin, newProject, type Project } from "./realEngine";
import { freshKey, ITEM, REGISTRY_USER, VAULT } from "./ringtailWorld";

type Obj = Record<string, any>;

export const ARGOCD = "argocd-controller";
const STORE = committedValue("indri", "kubernetes.secretStore.name");
const CONTEXT = committedValue("indri", "kubernetes.context");
const MUTATING = new Set(["create", "update", "patch", "delete", "deletecollection"]);

export interface PodStart {
  namespace: string;
  pod: string;
  /** The pod template's runner-secrets/key-digest annotation. */
  templateDigest?: string;
  /** Digest of the ZOT_CI_API_KEY the runner container got, "none" without the env entry, "missing" while its Secret/key is absent. */
  envDigest: string;
  /** Digest of the key in the mounted env file, same conventions. */
  fileDigest: string;
  at: number;
}

export interface Eso {
  start(): Promise<void>;
  stop(): Promise<void>;
  running(): boolean;
  log(): string;
}

export interface IndriWorld {
  api: ApiServer;
  connect: ConnectStandIn;
  registry: TestRegistry;
  eso: Eso;
  key: string;
  /** The registry takes the new key, then 1Password gets it (the runbook's order). */
  rotate(): Promise<string>;
  /** A key changed in 1Password only (nobody ran `up`). */
  changeInOnePassword(): string;
  /** Kubeconfig whose only context is `minikube`, for the API user "pulumi". */
  kubeconfig: string;
  /** Pod starts the kubelet stand-in saw, oldest first. */
  starts(namespace?: string): PodStart[];
  /** Pulumi's mutating requests since `mark` (an index from auditMark()). */
  mutations(mark: number): AuditEvent[];
  auditMark(): number;
  /** Applies the runner Deployment as ArgoCD does: client-side apply (Update), or server-side apply (forced). */
  argoSync(namespace: string, opts?: { serverSide?: boolean }): Promise<Obj>;
  get(urlPath: string): Promise<Obj | undefined>;
  stop(): Promise<void>;
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

async function must(api: ApiServer, what: string, p: Promise<{ status: number; body: any }>): Promise<Obj> {
  const r = await p;
  if (r.status >= 300) throw new Error(`${what}: ${r.status} ${JSON.stringify(r.body)}`);
  return r.body as Obj;
}

function startEso(api: ApiServer): Eso {
  const kubeconfig = api.kubeconfig("eso", "eso");
  const logFile = path.join(fs.mkdtempSync(path.join(os.tmpdir(), "rs-eso-")), "eso.log");
  let child: ChildProcess | undefined;
  return {
    async start() {
      if (child) return;
      const out = fs.openSync(logFile, "a");
      child = spawn(
        path.join(e2eBin(), "eso"),
        [
          "--metrics-addr=0",
          "--enable-leader-election=false",
          "--enable-cluster-external-secret-reconciler=false",
          "--enable-push-secret-reconciler=false",
          "--enable-cluster-push-secret-reconciler=false",
          "--loglevel=debug",
        ],
        { env: { ...process.env, KUBECONFIG: kubeconfig }, stdio: ["ignore", out, out] },
      );
      const c = child;
      c.once("exit", () => {
        if (child === c) child = undefined;
      });
      // Ready when its informers run: the store reconciler has looked at the ClusterSecretStore.
      const until = Date.now() + 60_000;
      while (!/Starting workers/.test(fs.readFileSync(logFile, "utf8"))) {
        if (!child) throw new Error(`eso exited:\n${fs.readFileSync(logFile, "utf8").slice(-3000)}`);
        if (Date.now() > until) throw new Error(`eso not started in 60s:\n${fs.readFileSync(logFile, "utf8").slice(-3000)}`);
        await sleep(100);
      }
    },
    async stop() {
      const c = child;
      if (!c) return;
      child = undefined;
      const exited = new Promise((r) => c.once("exit", r));
      c.kill("SIGTERM");
      await Promise.race([exited, sleep(5000)]);
      if (c.exitCode === null && c.signalCode === null) c.kill("SIGKILL");
    },
    running: () => child !== undefined,
    log: () => (fs.existsSync(logFile) ? fs.readFileSync(logFile, "utf8") : ""),
  };
}

/** The kubelet's part: see the header. */
function startKubelet(api: ApiServer): { starts: PodStart[]; stop(): void } {
  const starts: PodStart[] = [];
  const seen = new Map<string, string>(); // uid -> last recorded envDigest
  let stopped = false;
  const keyFrom = async (ns: string, ref?: { name: string; key: string }): Promise<string | undefined> => {
    if (!ref) return undefined;
    const r = await api.request("GET", `/api/v1/namespaces/${ns}/secrets/${ref.name}`);
    const b64 = r.status === 200 ? (r.body as Obj).data?.[ref.key] : undefined;
    return b64 === undefined ? undefined : Buffer.from(b64, "base64").toString("utf8");
  };
  const tick = async () => {
    const list = await api.request("GET", "/api/v1/pods");
    if (list.status !== 200) return;
    for (const pod of (list.body as Obj).items as Obj[]) {
      if (pod.metadata.deletionTimestamp || pod.status?.conditions?.some((c: Obj) => c.type === "Ready" && c.status === "True")) continue;
      const ns = pod.metadata.namespace;
      const runner = (pod.spec.containers as Obj[]).find((c) => c.name === "runner") ?? pod.spec.containers[0];
      const envRef = (runner.env as Obj[] | undefined)?.find((e) => e.name === "ZOT_CI_API_KEY")?.valueFrom?.secretKeyRef;
      const mounts = (runner.volumeMounts as Obj[] | undefined) ?? [];
      const fileVol = (pod.spec.volumes as Obj[] | undefined)?.find((v) => v.secret && mounts.some((m) => m.name === v.name));
      const fileRef = fileVol ? { name: fileVol.secret.secretName, key: fileVol.secret.items?.[0]?.key } : undefined;
      const envKey = await keyFrom(ns, envRef);
      const fileText = await keyFrom(ns, fileRef);
      const envDigest = !envRef ? "none" : envKey === undefined ? "missing" : keyDigest(envKey);
      const fileKey = fileText?.match(/^ZOT_CI_API_KEY='?([^'\n]*)'?\n?$/)?.[1];
      const fileDigest = !fileRef ? "none" : fileKey === undefined ? "missing" : keyDigest(fileKey);
      if (seen.get(pod.metadata.uid) !== `${envDigest}/${fileDigest}`) {
        seen.set(pod.metadata.uid, `${envDigest}/${fileDigest}`);
        starts.push({
          namespace: ns,
          pod: pod.metadata.name,
          templateDigest: pod.metadata.annotations?.["runner-secrets/key-digest"],
          envDigest,
          fileDigest,
          at: Date.now(),
        });
      }
      if (envDigest === "missing" || fileDigest === "missing") continue; // CreateContainerConfigError: retried
      const now = new Date().toISOString();
      await api.request(
        "PATCH",
        `/api/v1/namespaces/${ns}/pods/${pod.metadata.name}/status`,
        {
          status: {
            phase: "Running",
            startTime: now,
            conditions: ["Initialized", "ContainersReady", "Ready", "PodScheduled"].map((type) => ({
              type,
              status: "True",
              lastTransitionTime: now,
            })),
          },
        },
        "application/merge-patch+json",
      );
    }
  };
  void (async () => {
    while (!stopped) {
      await tick().catch(() => undefined);
      await sleep(100);
    }
  })();
  return { starts, stop: () => (stopped = true) };
}

export async function startIndriWorld(): Promise<IndriWorld> {
  const api = await startApiServer(requireBinaries(), { users: ["pulumi", "eso"], audit: true });
  const cleanup: (() => Promise<unknown> | unknown)[] = [() => api.stop()];
  try {
    const bin = requireBinaries();
    // Every CRD the controller watches with the reconcilers it runs. Without GeneratorState's, ESO
    // v0.16.2 waits for that informer's cache and its manager exits two minutes after start.
    for (const crd of [
      "externalsecrets.external-secrets.io",
      "secretstores.external-secrets.io",
      "clustersecretstores.external-secrets.io",
      "generatorstates.generators.external-secrets.io",
    ]) {
      const [plural, ...group] = crd.split(".");
      const text = fs.readFileSync(path.join(bin.esoCrds, `${group.join(".")}_${plural}.yaml`), "utf8");
      await must(api, `CRD ${crd}`, api.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}`, text, "test-setup"));
    }
    for (;;) {
      const r = await api.request("GET", "/apis/external-secrets.io/v1/externalsecrets");
      if (r.status === 200) break;
      await sleep(200);
    }
    await api.startControllers();

    const connect = await startConnect();
    cleanup.push(() => connect.close());
    connect.addVault(VAULT);
    const key = freshKey();
    connect.putItem(VAULT, ITEM, [{ label: "credential", value: key }], "API_CREDENTIAL");
    const registry = await startRegistry({ auth: { user: REGISTRY_USER, key } });
    cleanup.push(() => registry.stop());

    // The ClusterSecretStore indri has: 1Password Connect, the token in a Secret.
    await must(
      api,
      "namespace",
      api.apply(
        "/api/v1/namespaces/external-secrets",
        { apiVersion: "v1", kind: "Namespace", metadata: { name: "external-secrets" } },
        "test-setup",
      ),
    );
    await must(
      api,
      "connect token",
      api.apply(
        "/api/v1/namespaces/external-secrets/secrets/onepassword-connect-token",
        {
          apiVersion: "v1",
          kind: "Secret",
          metadata: { name: "onepassword-connect-token", namespace: "external-secrets" },
          stringData: { token: connect.token },
        },
        "test-setup",
      ),
    );
    await must(
      api,
      "ClusterSecretStore",
      api.apply(
        `/apis/external-secrets.io/v1/clustersecretstores/${STORE}`,
        {
          apiVersion: "external-secrets.io/v1",
          kind: "ClusterSecretStore",
          metadata: { name: STORE },
          spec: {
            provider: {
              onepassword: {
                connectHost: connect.url,
                vaults: { [VAULT]: 1 },
                auth: {
                  secretRef: { connectTokenSecretRef: { name: "onepassword-connect-token", key: "token", namespace: "external-secrets" } },
                },
              },
            },
          },
        },
        "test-setup",
      ),
    );
    const eso = startEso(api);
    cleanup.push(() => eso.stop());
    await eso.start();
    const kubelet = startKubelet(api);
    cleanup.push(() => kubelet.stop());

    const world: IndriWorld = {
      api,
      connect,
      registry,
      eso,
      key,
      kubeconfig: api.kubeconfig("pulumi", CONTEXT),
      async rotate() {
        const next = freshKey();
        await registry.setKey(next);
        connect.setField(VAULT, ITEM, "credential", next);
        world.key = next;
        return next;
      },
      changeInOnePassword() {
        const next = freshKey();
        connect.setField(VAULT, ITEM, "credential", next);
        return next;
      },
      starts: (ns) => kubelet.starts.filter((s) => ns === undefined || s.namespace === ns),
      auditMark: () => api.auditEvents().length,
      mutations: (mark) =>
        api
          .auditEvents()
          .slice(mark)
          .filter((e) => e.user === "pulumi" && MUTATING.has(e.verb)),
      async argoSync(ns, opts = {}) {
        const dep = baseDeployment() as Obj;
        dep.metadata.namespace = ns;
        const url = `/apis/apps/v1/namespaces/${ns}/deployments/forgejo-runner`;
        if (opts.serverSide) return must(api, "argocd SSA sync", api.apply(url, dep, ARGOCD, { force: true }));
        // Client-side apply: create, else a strategic merge patch of the manifest (kubectl apply's way).
        const existing = await api.request("GET", url);
        if (existing.status === 404) {
          return must(api, "argocd create", api.request("POST", `/apis/apps/v1/namespaces/${ns}/deployments?fieldManager=${ARGOCD}`, dep));
        }
        return must(
          api,
          "argocd sync",
          api.request("PATCH", `${url}?fieldManager=${ARGOCD}`, dep, "application/strategic-merge-patch+json"),
        );
      },
      async get(urlPath) {
        const r = await api.request("GET", urlPath);
        return r.status === 200 ? (r.body as Obj) : undefined;
      },
      async stop() {
        for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => undefined);
      },
    };
    return world;
  } catch (e) {
    for (const c of cleanup.reverse()) await Promise.resolve(c()).catch(() => undefined);
    throw e;
  }
}

export interface Indri {
  project: Project;
  namespace: string;
}

/** An indri project in a namespace of its own, with ArgoCD's Deployment there, configured as an operator would. */
export async function indriProject(world: IndriWorld, name: string): Promise<Indri> {
  const namespace = `rs-${name}`;
  await must(
    world.api,
    "namespace",
    world.api.apply(
      `/api/v1/namespaces/${namespace}`,
      { apiVersion: "v1", kind: "Namespace", metadata: { name: namespace } },
      "test-setup",
    ),
  );
  await world.argoSync(namespace);
  const project = await newProject("indri");
  const set = project.configSet.bind(project);
  set("kubernetes.kubeconfig", world.kubeconfig, { path: true });
  set("kubernetes.namespace", namespace, { path: true });
  set("kubernetes.readyTimeoutSeconds", "20", { path: true });
  set("onePassword.mode", "connect", { path: true });
  set("onePassword.connectUrl", world.connect.url, { path: true, plaintext: true });
  set("onePasswordToken", world.connect.token, { secret: true });
  set("registryCheck.url", world.registry.url, { path: true });
  set("registryCheck.caFile", world.registry.caFile, { path: true });
  return { project, namespace };
}
