// The stack configuration: one schema, validated as a whole before any resource is registered.
//
// Every string here that ends up in a shell command, a path, a unit name, a host, a Kubernetes name
// or an env var name is held to a strict pattern, so the script renderers downstream can embed it
// without quoting tricks (see remoteScript.ts).
import * as pulumi from "@pulumi/pulumi";
import { z } from "zod";
import { absPath, hostLabel, httpUrl, pattern } from "./patterns";
import { registryOptionsSchema } from "./registryOptions";

const NAMESPACE = "runner-secrets";

/** The variable CI jobs read the key from, unless a stack sets `envVar`. */
export const DEFAULT_ENV_VAR = "ZOT_CI_API_KEY";

// --- patterns -------------------------------------------------------------------------------

const unixNameRe = /^[a-z_][a-z0-9_-]{0,31}$/;
const hostnameRe = new RegExp(`^${hostLabel}(?:\\.${hostLabel})*$`);
const ipv6Re = /^[0-9A-Fa-f]{0,4}(?::[0-9A-Fa-f]{0,4}){2,7}$/;
const envNameRe = /^[A-Za-z_][A-Za-z0-9_]*$/;
const unitRe = /^[A-Za-z0-9:_.@-]+\.service$/;
const flakeRe = /^[A-Za-z0-9._/:+=?&@-]+#[A-Za-z0-9._+-]+$/;
const modeRe = /^0?[0-7]{3}$/;
const dns1123Label = "[a-z0-9](?:[-a-z0-9]*[a-z0-9])?";
const dns1123LabelRe = new RegExp(`^${dns1123Label}$`);
const dns1123SubdomainRe = new RegExp(`^${dns1123Label}(?:\\.${dns1123Label})*$`);
const fieldManagerRe = /^[A-Za-z0-9._-]{1,128}$/;
// Printable text for things that only travel as data (1Password names, kube context names).
const printableRe = /^[^\u0000-\u001f\u007f]+$/;

const hostKeyTypes = [
  "ssh-ed25519",
  "ssh-rsa",
  "ecdsa-sha2-nistp256",
  "ecdsa-sha2-nistp384",
  "ecdsa-sha2-nistp521",
  "sk-ssh-ed25519@openssh.com",
  "sk-ecdsa-sha2-nistp256@openssh.com",
];

const unixName = pattern(unixNameRe, "a Unix user or group name (lowercase letters, digits, _ and -)");
const host = z.string().refine((h) => (hostnameRe.test(h) && h.length <= 253) || ipv6Re.test(h), {
  message: "must be a hostname or IP address (letters, digits, . and -)",
});
const port = z.coerce.number({ message: "must be a port number" }).int().min(1).max(65535);
const fileMode = pattern(modeRe, 'an octal file mode such as "0600"').transform((m) => m.padStart(4, "0"));
const k8sLabel = pattern(dns1123LabelRe, "a DNS-1123 label (lowercase letters, digits and -, at most 63)").max(63);
const k8sName = pattern(dns1123SubdomainRe, "a DNS-1123 subdomain (lowercase letters, digits, - and .)").max(253);
const printable = (max = 256) => pattern(printableRe, "non-empty text without control characters").max(max);

const bool = z.union([z.boolean(), z.enum(["true", "false"]).transform((v) => v === "true")]);

const hostKey = z.string().superRefine((value, ctx) => {
  const problem = hostKeyProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

/** Why `value` is not a public host key line as in known_hosts/authorized_keys, or undefined. */
export function hostKeyProblem(value: string): string | undefined {
  const m = /^(\S+) ([A-Za-z0-9+/]+={0,2})(?: [^\u0000-\u001f\u007f]*)?$/.exec(value);
  const expected = `must be a public host key line such as "ssh-ed25519 AAAA…" (from ssh-keyscan or /etc/ssh/ssh_host_ed25519_key.pub)`;
  if (!m) return expected;
  const [, type, blob] = m;
  if (!hostKeyTypes.includes(type)) return `${expected}; key type "${type}" is not one of ${hostKeyTypes.join(", ")}`;
  // The base64 blob starts with its own length-prefixed type name: a truncated or mismatched key fails here.
  const raw = Buffer.from(blob, "base64");
  const len = raw.length >= 4 ? raw.readUInt32BE(0) : -1;
  if (len <= 0 || raw.length < 4 + len || raw.subarray(4, 4 + len).toString("latin1") !== type) {
    return `${expected}; the key data does not decode to a ${type} key`;
  }
  return undefined;
}

// The env file's directory becomes the Secret volume's mount point (hiding whatever the image has
// there) and its name becomes a key of the Secret.
const secretDataKeyRe = /^[-._a-zA-Z0-9]+$/;
const reservedMountDirs = new Set([
  "/etc",
  "/run",
  "/var",
  "/var/run",
  "/run/secrets",
  "/var/run/secrets",
  "/tmp",
  "/home",
  "/root",
  "/opt",
  "/srv",
  "/data",
]);
const systemTrees = new Set(["bin", "sbin", "lib", "lib64", "usr", "boot", "dev", "proc", "sys"]);

function envFilePathProblems(p: string, ctx: z.RefinementCtx): void {
  const dir = p.slice(0, p.lastIndexOf("/")) || "/";
  const base = p.slice(p.lastIndexOf("/") + 1);
  if (dir === "/" || reservedMountDirs.has(dir) || systemTrees.has(dir.split("/")[1] ?? "")) {
    ctx.addIssue({
      code: "custom",
      message: `must be in a directory of its own, e.g. /run/secrets/zot-ci/zot-ci.env: ${dir} is mounted over and would hide the image's files there`,
    });
  }
  if (!secretDataKeyRe.test(base))
    ctx.addIssue({ code: "custom", message: "must end in a file name of letters, digits, . _ and - (it is also a key of the Secret)" });
  if (base === "key-digest") ctx.addIssue({ code: "custom", message: 'must not be named "key-digest" (a key the Secret already uses)' });
}

// --- schema ---------------------------------------------------------------------------------
//
// Facts of the homelab (names that exist there: vault, item, hosts, users, paths on the host, the
// unit, the flake, kube context and objects, the registry) have no default here: each lives in
// its stack file (Pulumi.<stack>.yaml) alone. The defaults below are the program's own choices.

// An absent object is validated as {}, so each of its missing required keys is named on its own.
const emptyIfAbsent = <T extends z.ZodObject>(schema: T) => schema.prefault({} as z.input<T>);

const onePasswordSchema = z.strictObject({
  vault: printable(),
  item: printable(),
  // "password", "credential" (API Credential items) or the label of any other field.
  field: printable().default("credential"),
  // Label of the section holding the field, when it is not a top-level field.
  section: printable().optional(),
  // Provider mode: service account token (default), 1Password Connect, or the desktop app account.
  mode: z.enum(["serviceAccount", "connect", "desktop"]).default("serviceAccount"),
  connectUrl: httpUrl.optional(),
  account: printable().optional(),
  opCliPath: absPath.optional(),
});

const kubernetesSchema = z.strictObject({
  context: printable(),
  kubeconfig: absPath.optional(),
  namespace: k8sLabel,
  deployment: k8sName,
  container: k8sLabel,
  secretStore: emptyIfAbsent(
    z.strictObject({
      kind: z
        .enum(["SecretStore", "ClusterSecretStore"], { message: 'must be "SecretStore" or "ClusterSecretStore"' })
        .default("ClusterSecretStore"),
      name: k8sName,
    }),
  ),
  externalSecret: k8sName.default("zot-ci-apikey"),
  secretName: k8sName.default("zot-ci-apikey"),
  volumeName: k8sLabel.default("zot-ci-env"),
  // Where the dotenv file appears in the runner container; config.yaml's runner.env_file points here.
  envFilePath: absPath.superRefine(envFilePathProblems).default("/run/secrets/zot-ci/zot-ci.env"),
  fieldManager: pattern(fieldManagerRe, "a field manager name (letters, digits, . _ -)").default("runner-secrets"),
  // Gone since ESO syncs only when `up` changes the ExternalSecret (refreshPolicy OnChange).
  refreshInterval: z
    .undefined({ message: "no longer used: ESO re-syncs only when `pulumi up` changes the ExternalSecret; remove this key" })
    .optional(),
  readyTimeoutSeconds: z.coerce.number({ message: "must be a number of seconds" }).int().min(10).max(3600).default(300),
});

const nixosSchema = z.strictObject({
  host,
  port: port.default(22),
  user: unixName,
  // Required: without it the command provider silently skips host-key verification.
  hostKey,
  agentSocketPath: absPath.optional(),
  envFile: absPath,
  owner: unixName.default("root"),
  group: unixName.default("root"),
  fileMode: fileMode.default("0600"),
  dirMode: fileMode.default("0700"),
  flake: pattern(flakeRe, 'a flake reference with an attribute, such as "/etc/nixos#myhost"'),
  unit: pattern(unitRe, 'a systemd service unit name such as "gitea-runner-default.service"'),
  keepOnDestroy: bool.default(false),
});

const registryCheckSchema = registryOptionsSchema.extend({ enabled: bool.default(true) });

/** Keys whose values are credentials: they must be set with `pulumi config set --secret`. */
const SECRET_KEYS = ["onePasswordToken", "sshPrivateKey"] as const;

const stackSchema = z.strictObject({
  target: z.enum(["kubernetes", "nixos"], { message: 'must be "kubernetes" or "nixos"' }),
  envVar: pattern(envNameRe, "an environment variable name (letters, digits and _, not starting with a digit)").default(DEFAULT_ENV_VAR),
  onePassword: emptyIfAbsent(onePasswordSchema),
  kubernetes: kubernetesSchema.optional(),
  nixos: nixosSchema.optional(),
  registryCheck: emptyIfAbsent(registryCheckSchema),
  onePasswordToken: z.string().min(1).optional(),
  sshPrivateKey: z.string().min(1).optional(),
});

// Pulumi.yaml declares both target objects with default {}: empty means "not configured".
const isSet = (v: unknown) => v !== undefined && !(typeof v === "object" && v !== null && Object.keys(v).length === 0);

/**
 * Rules across keys, checked on the raw input so they are reported together with every other
 * problem (zod skips object refinements once a field fails).
 */
function crossKeyProblems(input: Record<string, unknown>): string[] {
  const problems: string[] = [];
  const target = input.target;
  if (target === "kubernetes" || target === "nixos") {
    const other = target === "kubernetes" ? "nixos" : "kubernetes";
    if (isSet(input[other])) {
      problems.push(`${NAMESPACE}:${other}: is set, but ${NAMESPACE}:target is "${target}": a stack has exactly one target; remove it`);
    }
    if (!isSet(input[target])) {
      const keys = Object.entries((target === "nixos" ? nixosSchema : kubernetesSchema).shape)
        .filter(([, field]) => !field.safeParse(undefined).success)
        .map(([k]) => k);
      problems.push(`${NAMESPACE}:${target}: is required when target is "${target}" (at least ${keys.join(", ")})`);
    }
    if (target === "kubernetes" && input.sshPrivateKey !== undefined) {
      problems.push(`${NAMESPACE}:sshPrivateKey: is only used by the nixos target; remove it`);
    }
  }
  const k8s = input.kubernetes as Record<string, unknown> | undefined;
  const envVar = typeof input.envVar === "string" ? input.envVar : DEFAULT_ENV_VAR;
  if (target === "kubernetes" && typeof k8s?.envFilePath === "string" && k8s.envFilePath.endsWith(`/${envVar}`)) {
    problems.push(
      `${NAMESPACE}:kubernetes.envFilePath: must not be named like the env var ${envVar} (the Secret holds the plain key under that name)`,
    );
  }
  const op = (typeof input.onePassword === "object" && input.onePassword !== null ? input.onePassword : {}) as Record<string, unknown>;
  const mode = op.mode ?? "serviceAccount";
  const opKey = `${NAMESPACE}:onePassword`;
  if (mode === "connect" && op.connectUrl === undefined)
    problems.push(`${opKey}.connectUrl: is required when onePassword.mode is "connect"`);
  if (mode !== "connect" && op.connectUrl !== undefined) {
    problems.push(
      `${opKey}.connectUrl: is only used when onePassword.mode is "connect" (1Password Connect cannot be mixed with the other modes)`,
    );
  }
  if (mode === "desktop" && op.account === undefined) problems.push(`${opKey}.account: is required when onePassword.mode is "desktop"`);
  if (mode !== "desktop" && op.account !== undefined) problems.push(`${opKey}.account: is only used when onePassword.mode is "desktop"`);
  if (mode === "desktop" && input.onePasswordToken !== undefined) {
    problems.push(`${NAMESPACE}:onePasswordToken: is not used when onePassword.mode is "desktop"; remove it`);
  }
  return problems;
}

type Parsed = z.output<typeof stackSchema>;
export type OnePasswordConfig = Parsed["onePassword"];
export type KubernetesConfig = z.output<typeof kubernetesSchema>;
export type NixosConfig = z.output<typeof nixosSchema>;
export type RegistryCheckConfig = Parsed["registryCheck"];

/** The validated stack configuration. Credentials are kept apart so they can be wrapped as secrets. */
interface CommonConfig<Secret> {
  envVar: string;
  onePassword: OnePasswordConfig;
  registryCheck: RegistryCheckConfig;
  secrets: { onePasswordToken?: Secret; sshPrivateKey?: Secret };
}

/** The validated stack config: exactly one target's settings, told apart by `target`. */
export type TargetConfig =
  | { target: "kubernetes"; kubernetes: KubernetesConfig; nixos?: undefined }
  | { target: "nixos"; nixos: NixosConfig; kubernetes?: undefined };

export type StackConfig = CommonConfig<string> & TargetConfig;

// A RunError: `pulumi up` prints the message alone, without a stack trace.
export class ConfigError extends pulumi.RunError {
  constructor(readonly problems: string[]) {
    super(
      `Invalid ${NAMESPACE} configuration (${problems.length} problem${problems.length === 1 ? "" : "s"}); nothing was changed:\n` +
        problems.map((p) => `  - ${p}`).join("\n"),
    );
    this.name = "ConfigError";
  }
}

const topKeys = Object.keys(stackSchema.shape) as string[];
const objectKeys = new Set(["onePassword", "kubernetes", "nixos", "registryCheck"]);

/**
 * Validates the raw config map (as `pulumi.runtime.allConfig()` returns it: "runner-secrets:key" →
 * string, objects as JSON) and the list of keys set as secrets. Throws one ConfigError listing
 * every problem with its full key.
 */
export function parseConfig(raw: Record<string, string>, secretKeys: readonly string[] = []): StackConfig {
  const problems: string[] = [];
  const input: Record<string, unknown> = {};
  for (const [fullKey, value] of Object.entries(raw)) {
    const sep = fullKey.indexOf(":");
    if (sep < 0 || fullKey.slice(0, sep) !== NAMESPACE) continue; // other namespaces belong to providers
    const key = fullKey.slice(sep + 1);
    if (!topKeys.includes(key)) {
      problems.push(`${fullKey}: unknown key (known keys: ${topKeys.join(", ")})`);
      continue;
    }
    if ((SECRET_KEYS as readonly string[]).includes(key)) {
      if (!secretKeys.includes(fullKey))
        problems.push(`${fullKey}: holds a credential and must be set with \`pulumi config set --secret\``);
      input[key] = value;
    } else if (objectKeys.has(key)) {
      try {
        input[key] = JSON.parse(value);
      } catch {
        problems.push(`${fullKey}: must be an object (a YAML mapping in the stack file)`);
      }
    } else {
      input[key] = value;
    }
  }
  for (const t of ["kubernetes", "nixos"] as const) if (t !== input.target && !isSet(input[t])) delete input[t];
  const result = stackSchema.safeParse(input);
  if (!result.success) {
    for (const issue of result.error.issues) problems.push(describeIssue(issue, input));
  }
  problems.push(...crossKeyProblems(input));
  if (problems.length > 0 || !result.success) throw new ConfigError(problems);
  const { onePasswordToken, sshPrivateKey, kubernetes, nixos, ...rest } = result.data;
  // Only the chosen target's settings are kept (the other one is at most the empty default).
  const { target, ...common } = rest;
  const secrets = { onePasswordToken, sshPrivateKey };
  // crossKeyProblems has refused a target without its settings.
  if (target === "kubernetes" && kubernetes !== undefined) return { ...common, secrets, target, kubernetes };
  if (target === "nixos" && nixos !== undefined) return { ...common, secrets, target, nixos };
  throw new ConfigError([`${NAMESPACE}:${target}: is required when target is "${target}"`]);
}

function describeIssue(issue: z.core.$ZodIssue, input: Record<string, unknown>): string {
  const path = issue.path.map(String);
  if (issue.code === "unrecognized_keys") {
    return issue.keys.map((k) => `${fullKeyOf([...path, k])}: unknown key`).join("\n  - ");
  }
  const key = fullKeyOf(path);
  const isSecret = (SECRET_KEYS as readonly string[]).includes(path[0] ?? "");
  const given = isSecret ? undefined : valueAt(input, path);
  let message = issue.message;
  if (given === undefined && issue.code === "invalid_type") {
    message = `is required${requiredHints[path.join(".")] ?? ": set it in the stack file (Pulumi.<stack>.yaml) or with pulumi config set --path"}`;
  }
  if (given === undefined && issue.code === "invalid_value") message = `is required (${message})`;
  const shown = given === undefined || typeof given === "object" ? "" : ` (got ${JSON.stringify(given)})`;
  return `${key}: ${message}${shown}`;
}

const requiredHints: Record<string, string> = {
  "nixos.hostKey":
    ': pin the host\'s public key, e.g. pulumi config set --path nixos.hostKey "$(ssh-keyscan -t ed25519 ringtail 2>/dev/null | cut -d" " -f2-)"',
};

function fullKeyOf(path: string[]): string {
  return path.length === 0 ? `${NAMESPACE}` : `${NAMESPACE}:${path.join(".")}`;
}

function valueAt(obj: unknown, path: string[]): unknown {
  let cur = obj;
  for (const seg of path) {
    if (cur === null || typeof cur !== "object") return undefined;
    cur = (cur as Record<string, unknown>)[seg];
  }
  return cur;
}

/** The stack's configuration as the program uses it: credentials wrapped as Pulumi secrets. */
/** The stack config as the program uses it: credentials as Pulumi secrets. */
export type LoadedConfig = CommonConfig<pulumi.Output<string>> & TargetConfig;

/** One leaf key of the stack config, as the README's table documents it. */
export interface ConfigKey {
  key: string;
  required: boolean;
  default?: unknown;
}

/** Every leaf key of the schema with its default (the README's table is checked against this). */
export function configKeys(): ConfigKey[] {
  const out: ConfigKey[] = [];
  const walk = (schema: z.ZodType, key: string, required: boolean, dflt?: unknown): void => {
    const def = schema._zod.def as unknown as { type: string; innerType?: z.ZodType; shape?: Record<string, z.ZodType> };
    if (def.type === "default") walk(def.innerType as z.ZodType, key, false, (schema as z.ZodDefault).def.defaultValue);
    else if (def.type === "prefault") walk(def.innerType as z.ZodType, key, false);
    else if (def.type === "optional") walk(def.innerType as z.ZodType, key, false, dflt);
    else if (def.type === "object" && def.shape) {
      for (const [k, field] of Object.entries(def.shape)) walk(field, key === "" ? k : `${key}.${k}`, true);
    } else if (def.type !== "undefined") {
      // (an `undefined` leaf is a removed key, kept only to say so)
      out.push({ key, required, ...(dflt === undefined ? {} : { default: dflt }) });
    }
  };
  walk(stackSchema, "", true);
  return out;
}

/** Reads and validates this stack's configuration from the Pulumi runtime. */
export function readStackConfig(): LoadedConfig {
  const raw = pulumi.runtime.allConfig();
  const parsed = parseConfig(raw, configSecretKeys(raw));
  const wrap = (v?: string) => (v === undefined ? undefined : pulumi.secret(v));
  return {
    ...parsed,
    secrets: { onePasswordToken: wrap(parsed.secrets.onePasswordToken), sshPrivateKey: wrap(parsed.secrets.sshPrivateKey) },
  };
}

/** Keys the engine passed as secrets (the SDK keeps this list beside the config, not in its public API). */
function configSecretKeys(raw: Record<string, string>): string[] {
  const listed = raw["PULUMI_CONFIG_SECRET_KEYS"] ?? process.env.PULUMI_CONFIG_SECRET_KEYS;
  if (listed) {
    try {
      const keys: unknown = JSON.parse(listed);
      if (Array.isArray(keys)) return keys.filter((k): k is string => typeof k === "string");
    } catch {
      /* fall through */
    }
  }
  // eslint-disable-next-line @typescript-eslint/no-require-imports
  const internal = require("@pulumi/pulumi/runtime/config") as { isConfigSecret?: (k: string) => boolean };
  return Object.keys(raw).filter((k) => internal.isConfigSecret?.(k) ?? false);
}
