// Schema checks for the Kubernetes objects the indri stack writes, from the published models:
//
// - `validate*`: the models' own validators (AJV, generated from ESO's CRDs and Kubernetes' OpenAPI).
//   They check types, enums and required fields, but accept unknown fields (the OpenAPI schemas do
//   not say additionalProperties: false, and an API server would silently prune them).
// - `unknownFields`: the strict part. It walks a value against the TypeScript interface the same
//   package ships for the model (generated from the same schema) and reports every property the
//   interface does not declare, so `remoteRef.propery` or `secretStoreRef.knd` fail.
// - `baseDeployment`, `applyPatch`, `fieldPaths`: a realistic forgejo-runner Deployment as ArgoCD
//   owns it, and a server-side-apply-like merge of the patch into it (list maps keyed as the API
//   server keys them), to validate the merged result and reason about field ownership.
// - `renderTemplate`, `parseDotenv`: what ESO's template engine v2 and the runner's env_file reader
//   make of the Secret's content.
import { createHash } from "node:crypto";
import * as path from "node:path";
import * as ts from "typescript";

const ROOT = path.resolve(__dirname, "..", "..");

// --- the models' validators ----------------------------------------------------------------

type ModelClass = new (data: Record<string, unknown>) => { validate(): void };

/** Every model the tests validate against, by short name: module and interface of its type. */
const MODELS = {
  ExternalSecret: { module: "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecret", iface: "IExternalSecret" },
  ExternalSecretSpec: {
    module: "@kubernetes-models/external-secrets/external-secrets.io/v1/ExternalSecretSpec",
    iface: "IComGithubExternalSecretsExternalSecretsApisExternalsecretsV1ExternalSecretSpec",
  },
  Deployment: { module: "kubernetes-models/apps/v1/Deployment", iface: "IDeployment" },
  PodTemplateSpec: { module: "kubernetes-models/v1/PodTemplateSpec", iface: "IPodTemplateSpec" },
  Container: { module: "kubernetes-models/v1/Container", iface: "IContainer" },
  EnvVar: { module: "kubernetes-models/v1/EnvVar", iface: "IEnvVar" },
  Volume: { module: "kubernetes-models/v1/Volume", iface: "IVolume" },
  VolumeMount: { module: "kubernetes-models/v1/VolumeMount", iface: "IVolumeMount" },
  ObjectMeta: { module: "@kubernetes-models/apimachinery/apis/meta/v1/ObjectMeta", iface: "IObjectMeta" },
} as const;
export type ModelName = keyof typeof MODELS;

const classes = new Map<ModelName, ModelClass>();

/** Loads the model classes (the packages are ESM-only, so they come in through import()). */
export async function loadModels(): Promise<void> {
  for (const [name, ref] of Object.entries(MODELS) as [ModelName, (typeof MODELS)[ModelName]][]) {
    if (classes.has(name)) continue;
    const mod = (await import(ref.module)) as Record<string, unknown>;
    const cls = mod[ref.iface.replace(/^I(?=[A-Z][a-z])/, "")] ?? mod[name];
    if (typeof cls !== "function") throw new Error(`${ref.module} exports no model class for ${name}`);
    classes.set(name, cls as ModelClass);
  }
}

/** The model validator's complaints about `data` as `model` (empty when valid). */
export function modelErrors(model: ModelName, data: unknown): string[] {
  const cls = classes.get(model);
  if (!cls) throw new Error("call loadModels() first");
  try {
    new cls(structuredClone(data) as Record<string, unknown>).validate();
    return [];
  } catch (e) {
    const errors = (e as { errors?: { instancePath: string; message?: string; params?: unknown }[] }).errors;
    if (!errors) return [(e as Error).message];
    return errors.map((x) => `${x.instancePath || "/"} ${x.message ?? "invalid"} ${JSON.stringify(x.params ?? {})}`);
  }
}

// --- strict unknown-field check from the models' own type declarations ---------------------------

let checkerCache: { checker: ts.TypeChecker; types: Map<ModelName, ts.Type> } | undefined;

function typeChecker() {
  if (checkerCache) return checkerCache;
  const entries = Object.entries(MODELS) as [ModelName, (typeof MODELS)[ModelName]][];
  const file = path.join(ROOT, "test", "support", "__k8s_model_types__.ts");
  const text = entries
    .map(([name, ref]) => `import type { ${ref.iface} as __${name} } from "${ref.module}";\nexport type T_${name} = __${name};`)
    .join("\n");
  const options: ts.CompilerOptions = {
    strict: true,
    noEmit: true,
    target: ts.ScriptTarget.ES2022,
    module: ts.ModuleKind.ESNext,
    // Honours the packages' "exports" (with their "types" conditions), as their authors intend.
    moduleResolution: ts.ModuleResolutionKind.Bundler,
    skipLibCheck: true,
    types: [],
  };
  const host = ts.createCompilerHost(options);
  const getSourceFile = host.getSourceFile.bind(host);
  host.getSourceFile = (name, lang, ...rest) =>
    path.resolve(name) === file ? ts.createSourceFile(name, text, lang) : getSourceFile(name, lang, ...rest);
  const fileExists = host.fileExists.bind(host);
  host.fileExists = (name) => path.resolve(name) === file || fileExists(name);
  const program = ts.createProgram([file], options, host);
  const diagnostics = ts.getPreEmitDiagnostics(program).filter((d) => d.file && path.resolve(d.file.fileName) === file);
  if (diagnostics.length) {
    throw new Error(
      `model types did not resolve: ${diagnostics.map((d) => ts.flattenDiagnosticMessageText(d.messageText, "\n")).join("; ")}`,
    );
  }
  const checker = program.getTypeChecker();
  const source = program.getSourceFile(file)!;
  const types = new Map<ModelName, ts.Type>();
  for (const stmt of source.statements) {
    if (ts.isTypeAliasDeclaration(stmt)) {
      types.set(stmt.name.text.slice(2) as ModelName, checker.getTypeAtLocation(stmt.name));
    }
  }
  checkerCache = { checker, types };
  return checkerCache;
}

/**
 * Every property of `value` (recursively) that the model's interface does not declare, as
 * "path: unknown field "x" (known: …)". Maps with string index signatures (annotations, labels,
 * template data) accept any key.
 */
export function unknownFields(model: ModelName, value: unknown): string[] {
  const { checker, types } = typeChecker();
  const type = types.get(model);
  if (!type) throw new Error(`no type for ${model}`);
  const problems: string[] = [];
  walk(checker, value, type, model, problems);
  return problems;
}

function walk(checker: ts.TypeChecker, value: unknown, type: ts.Type, at: string, problems: string[]): void {
  if (value === null || value === undefined) return;
  const t = checker.getNonNullableType(type);
  if (t.flags & (ts.TypeFlags.Any | ts.TypeFlags.Unknown)) return;
  if (t.isUnion()) {
    const objects = t.types.filter((m) => m.flags & ts.TypeFlags.Object);
    if (typeof value !== "object" || objects.length === 0) return; // primitives: the validator's job
    let best: string[] | undefined;
    for (const m of objects) {
      const p: string[] = [];
      walk(checker, value, m, at, p);
      if (p.length === 0) return;
      if (!best || p.length < best.length) best = p;
    }
    problems.push(...best!);
    return;
  }
  if (Array.isArray(value)) {
    if (!checker.isArrayType(t)) {
      problems.push(`${at}: is a list, the model expects ${checker.typeToString(t)}`);
      return;
    }
    const elem = checker.getTypeArguments(t as ts.TypeReference)[0];
    value.forEach((v, i) => {
      walk(checker, v, elem, `${at}[${i}]`, problems);
    });
    return;
  }
  if (typeof value !== "object") return;
  if (!(t.flags & ts.TypeFlags.Object)) {
    problems.push(`${at}: is an object, the model expects ${checker.typeToString(t)}`);
    return;
  }
  const index = checker.getIndexTypeOfType(t, ts.IndexKind.String);
  for (const [k, v] of Object.entries(value as Record<string, unknown>)) {
    const prop = checker.getPropertyOfType(t, k);
    if (prop) {
      const decl = prop.valueDeclaration ?? prop.declarations?.[0];
      const propType = decl ? checker.getTypeOfSymbolAtLocation(prop, decl) : checker.getAnyType();
      walk(checker, v, propType, `${at}.${k}`, problems);
    } else if (index) {
      walk(checker, v, index, `${at}[${JSON.stringify(k)}]`, problems);
    } else {
      const known = checker.getPropertiesOfType(t).map((p) => p.name);
      problems.push(`${at}: unknown field "${k}" (known: ${known.join(", ")})`);
    }
  }
}

/** Both checks together: the model's validator, then unknown fields. */
export function schemaProblems(model: ModelName, value: unknown): string[] {
  return [...modelErrors(model, value), ...unknownFields(model, value)];
}

// --- the Deployment ArgoCD owns, and a server-side-apply-like merge into it ----------------------

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

// --- what ESO's template engine v2 and godotenv make of the Secret ------------------------------

/**
 * Renders `{{ .name }}` and `{{ .name | fn args… }}` with the sprig functions used here. Anything
 * else throws, so a template this cannot mirror faithfully fails the test instead of passing by luck.
 */
export function renderTemplate(text: string, data: Record<string, string>): string {
  // The approved-key guard (components/kubernetes.ts approvedOnly): sprig's `fail` aborts the render.
  const guard = /^\{\{ if ne \(\.(\w+) \| sha256sum \| trunc 16\) "([0-9a-f]{16})" \}\}\{\{ fail "([^"]*)" \}\}\{\{ end \}\}/.exec(text);
  if (guard) {
    const [all, name, digest, message] = guard;
    if (!(name in data)) throw new Error(`template reads .${name}, which the ExternalSecret does not provide`);
    if (createHash("sha256").update(data[name], "utf8").digest("hex").slice(0, 16) !== digest) throw new Error(message);
    text = text.slice(all.length);
  }
  return text.replace(/\{\{(.*?)\}\}/gs, (_, body: string) => {
    const stages = body.trim().split(/\s*\|\s*/);
    const first = /^\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(stages[0]);
    if (!first) throw new Error(`template action not supported by this renderer: {{${body}}}`);
    if (!(first[1] in data)) throw new Error(`template reads .${first[1]}, which the ExternalSecret does not provide`);
    let v = data[first[1]];
    for (const stage of stages.slice(1)) {
      const [fn, ...args] = stage.split(/\s+/);
      if (fn === "sha256sum" && args.length === 0) v = createHash("sha256").update(v, "utf8").digest("hex");
      else if (fn === "trunc" && args.length === 1 && /^\d+$/.test(args[0])) v = v.slice(0, Number(args[0]));
      else throw new Error(`template function not supported by this renderer: ${stage}`);
    }
    return v;
  });
}

/**
 * Parses a dotenv file as github.com/joho/godotenv v1.5 (forgejo-runner's env_file reader) does:
 * `export` prefix, `=` or `:`, single quotes literal, double quotes with escapes and $ expansion,
 * unquoted values trimmed, inline ` #` comments dropped and $ expanded.
 */
export function parseDotenv(text: string, env: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const expand = (s: string) =>
    s.replace(/(\\)?\$(\{[A-Za-z0-9_]+\}|[A-Za-z0-9_]+)?/g, (m, esc: string | undefined, name: string | undefined) => {
      if (esc) return m.slice(1);
      if (!name) return m;
      const n = name.replace(/^\{|\}$/g, "");
      return out[n] ?? env[n] ?? "";
    });
  let src = text.replace(/\r\n/g, "\n");
  while (src.length) {
    src = src.replace(/^[\s]+/, "");
    if (!src.length) break;
    if (src.startsWith("#")) {
      src = src.slice(src.indexOf("\n") < 0 ? src.length : src.indexOf("\n"));
      continue;
    }
    src = src.replace(/^export[ \t]+/, "");
    const sep = src.search(/[=:]/);
    if (sep < 0) throw new Error(`dotenv: no separator in ${JSON.stringify(src.split("\n")[0])}`);
    const key = src.slice(0, sep).trim();
    if (!/^[A-Za-z0-9_.]+$/.test(key)) throw new Error(`dotenv: bad key ${JSON.stringify(key)}`);
    src = src.slice(sep + 1).replace(/^[ \t]+/, "");
    const q = src[0];
    if (q === "'" || q === '"') {
      let end = -1;
      for (let i = 1; i < src.length; i++)
        if (src[i] === q && src[i - 1] !== "\\") {
          end = i;
          break;
        }
      if (end < 0) throw new Error(`dotenv: unterminated quoted value for ${key}`);
      let value = src.slice(0, end).replace(new RegExp(`^${q}+|${q}+$`, "g"), "");
      if (q === '"') {
        value = expand(value.replace(/\\([^$])/g, (_, c: string) => (({ n: "\n", r: "\r" }) as Record<string, string>)[c] ?? c));
      }
      out[key] = value;
      src = src.slice(end + 1);
      src = src.slice(src.indexOf("\n") < 0 ? src.length : src.indexOf("\n"));
    } else {
      const eol = src.indexOf("\n") < 0 ? src.length : src.indexOf("\n");
      let line = src.slice(0, eol);
      const hash = line.search(/[ \t]#/);
      if (hash >= 0) line = line.slice(0, hash);
      out[key] = expand(line.trim());
      src = src.slice(eol);
    }
  }
  return out;
}
