// Schema checks for the Kubernetes objects the indri stack writes, from the published models:
//
// - `validate*`: the models' own validators (AJV, generated from ESO's CRDs and Kubernetes' OpenAPI).
//   They check types, enums and required fields, but accept unknown fields (the OpenAPI schemas do
//   not say additionalProperties: false, and an API server would silently prune them).
// - `unknownFields`: the strict part. It walks a value against the TypeScript interface the same
//   package ships for the model (generated from the same schema) and reports every property the
//   interface does not declare, so `remoteRef.propery` or `secretStoreRef.knd` fail.
//
// The Deployment ArgoCD owns is in argoDeployment.ts, ESO's template rendering in esoTemplate.ts.

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
