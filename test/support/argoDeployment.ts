// The forgejo-runner Deployment as ArgoCD owns it, and a server-side-apply-like merge of the
// indri patches into it (list maps keyed as the API server keys them): to validate the merged
// result and reason about field ownership.

/** A Deployment shaped like the operator's kustomize output for forgejo-runner (runner + dind). */
export function baseDeployment(): Record<string, unknown> {
  return {
    apiVersion: "apps/v1",
    kind: "Deployment",
    metadata: {
      name: "forgejo-runner",
      namespace: "forgejo-runner",
      labels: { "app.kubernetes.io/name": "forgejo-runner", "app.kubernetes.io/instance": "forgejo-runner" },
      annotations: { "argocd.argoproj.io/tracking-id": "forgejo-runner:apps/Deployment:forgejo-runner/forgejo-runner" },
    },
    spec: {
      replicas: 1,
      strategy: { type: "Recreate" },
      selector: { matchLabels: { "app.kubernetes.io/name": "forgejo-runner" } },
      template: {
        metadata: { labels: { "app.kubernetes.io/name": "forgejo-runner" } },
        spec: {
          containers: [
            {
              name: "runner",
              image: "code.forgejo.org/forgejo/runner:12.0.0",
              command: ["forgejo-runner", "daemon", "--config", "/config/config.yaml"],
              workingDir: "/data",
              env: [{ name: "DOCKER_HOST", value: "tcp://localhost:2376" }],
              envFrom: [{ secretRef: { name: "forgejo-runner-env" } }],
              volumeMounts: [
                { name: "config", mountPath: "/config", readOnly: true },
                { name: "data", mountPath: "/data" },
                { name: "docker-certs", mountPath: "/certs", readOnly: true },
              ],
            },
            {
              name: "dind",
              image: "docker:28-dind",
              securityContext: { privileged: true },
              env: [{ name: "DOCKER_TLS_CERTDIR", value: "/certs" }],
              volumeMounts: [{ name: "docker-certs", mountPath: "/certs" }],
            },
          ],
          volumes: [
            { name: "config", configMap: { name: "forgejo-runner-config" } },
            { name: "data", emptyDir: {} },
            { name: "docker-certs", emptyDir: {} },
          ],
        },
      },
    },
  };
}

/**
 * List-map keys as the API server's structured-merge schema declares them (x-kubernetes-list-map-keys
 * / patchMergeKey) for the lists a pod-template patch touches; every other list is atomic.
 */
const LIST_MAP_KEYS: Record<string, string> = {
  "spec.template.spec.containers": "name",
  "spec.template.spec.initContainers": "name",
  "spec.template.spec.volumes": "name",
  "spec.template.spec.containers[].env": "name",
  "spec.template.spec.containers[].volumeMounts": "mountPath",
};

/** Structs the schema marks atomic (`+structType=atomic`): owned and replaced as a whole. */
const ATOMIC_MAPS = new Set([
  "spec.template.spec.containers[].env[].valueFrom.secretKeyRef",
  "spec.template.spec.containers[].env[].valueFrom.configMapKeyRef",
  "spec.template.spec.containers[].env[].valueFrom.fieldRef",
  "spec.template.spec.containers[].env[].valueFrom.resourceFieldRef",
]);

type Obj = Record<string, unknown>;
const isObj = (v: unknown): v is Obj => v !== null && typeof v === "object" && !Array.isArray(v);

/** `patch` merged into `base` as server-side apply merges an applied configuration. */
export function applyPatch(base: unknown, patch: unknown, at = ""): unknown {
  if (isObj(base) && isObj(patch)) {
    const out: Obj = { ...base };
    for (const [k, v] of Object.entries(patch)) out[k] = k in base ? applyPatch(base[k], v, at ? `${at}.${k}` : k) : structuredClone(v);
    return out;
  }
  const key = LIST_MAP_KEYS[at.replace(/\[[^\]]*\]/g, "[]")];
  if (Array.isArray(base) && Array.isArray(patch) && key) {
    const out = base.map((x) => structuredClone(x));
    for (const item of patch as Obj[]) {
      const i = out.findIndex((x) => isObj(x) && x[key] === item[key]);
      if (i >= 0) out[i] = applyPatch(out[i], item, `${at}[]`);
      else out.push(structuredClone(item));
    }
    return out;
  }
  return structuredClone(patch);
}

/**
 * The field paths a value sets, in managedFields style: list-map items as `k:{"name":"runner"}`,
 * atomic lists as one leaf. What a field manager would own after applying it.
 */
export function fieldPaths(value: unknown, at = ""): string[] {
  const shape = at.replace(/\.k:\{[^}]*\}/g, "[]");
  if (isObj(value) && ATOMIC_MAPS.has(shape)) return [at];
  if (isObj(value)) {
    const keys = Object.entries(value);
    if (keys.length === 0) return [at];
    return keys.flatMap(([k, v]) => fieldPaths(v, at ? `${at}.${k}` : k));
  }
  const key = LIST_MAP_KEYS[shape];
  if (Array.isArray(value) && key) {
    return (value as Obj[]).flatMap((item) => fieldPaths(item, `${at}.k:{${JSON.stringify(key)}:${JSON.stringify(item[key])}}`));
  }
  return [at];
}
