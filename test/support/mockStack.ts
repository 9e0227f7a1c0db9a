// Runs the real program (index.ts) under Pulumi's mocks with a stack's committed configuration.
//
// The mocks stand in for what cannot run here: the Pulumi engine, and the providers behind it
// (1Password's service answers getItem from a fixture; resources echo their inputs as state).
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { parse as parseYaml } from "yaml";
import { parseConfig, type StackConfig } from "../../lib/config";

export const ROOT = path.resolve(__dirname, "..", "..");
export const FAKE_KEY = "zak_TESTONLYnotarealkey0000";

export interface Registered {
  type: string;
  name: string;
  inputs: Record<string, unknown>;
  /** Names of the resources this one was given in `dependsOn`. */
  dependsOn: string[];
  parent?: string;
  provider?: string;
}

export interface RunOptions {
  /** Extra or replacing config, by full key ("runner-secrets:nixos"); objects are merged one level deep. */
  config?: Record<string, unknown>;
  /** Full keys to pass as secrets. */
  secretKeys?: string[];
  preview?: boolean;
  /** The registry key the fake 1Password item holds (in field "credential" unless `item` says otherwise). */
  key?: string;
  item?: Record<string, unknown>;
  /** Makes getItem fail with this message (as the provider does for a missing item). */
  itemError?: string;
  /** Kubeconfig text made available through $KUBECONFIG; by default one with a "minikube" context. */
  kubeconfig?: string | null;
}

export interface StackRun {
  resources: Registered[];
  outputs: Record<string, unknown>;
  invokes: { token: string; inputs: Record<string, unknown>; provider?: string }[];
  error?: Error;
}

export const TEST_HOST_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIKNsaWVudC10ZXN0LWhvc3Qta2V5LW5vdC1yZWFsISE";

export const DEFAULT_KUBECONFIG = `apiVersion: v1
kind: Config
clusters: [{name: minikube, cluster: {server: "https://127.0.0.1:1"}}]
users: [{name: minikube, user: {token: fake}}]
contexts:
  - name: minikube
    context: {cluster: minikube, user: minikube}
  - name: other-cluster
    context: {cluster: minikube, user: minikube}
current-context: other-cluster
`;

/** The committed config of a stack (Pulumi.<stack>.yaml), as full key → value. */
export function committedConfig(stack: string): Record<string, unknown> {
  const doc = parseYaml(fs.readFileSync(path.join(ROOT, `Pulumi.${stack}.yaml`), "utf8")) as { config?: Record<string, unknown> };
  return { ...(doc.config ?? {}) };
}

/** One value of a committed stack file by its path ("nixos.flake"): the homelab's facts live there alone. */
export function committedValue(stack: string, key: string): string {
  const [group, ...rest] = key.split(".");
  let v: unknown = committedConfig(stack)[`runner-secrets:${group}`];
  for (const k of rest) v = (v as Record<string, unknown> | undefined)?.[k];
  if (typeof v !== "string") throw new Error(`Pulumi.${stack}.yaml does not set ${key}`);
  return v;
}

/** Project-level defaults from Pulumi.yaml, as the CLI would pass them. */
function projectDefaults(): Record<string, unknown> {
  const doc = parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as {
    name: string;
    config?: Record<string, { default?: unknown }>;
  };
  const out: Record<string, unknown> = {};
  for (const [k, v] of Object.entries(doc.config ?? {})) if (v.default !== undefined) out[`${doc.name}:${k}`] = v.default;
  return out;
}

/** The ringtail stack needs a pinned host key that is not committed; tests supply a fake one. */
export function stackConfig(stack: string | null, extra: Record<string, unknown> = {}): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...projectDefaults(), ...(stack ? committedConfig(stack) : {}) };
  if (stack === "ringtail") {
    merged["runner-secrets:nixos"] = { ...(merged["runner-secrets:nixos"] as object), hostKey: TEST_HOST_KEY };
  }
  for (const [k, v] of Object.entries(extra)) {
    const cur = merged[k];
    merged[k] =
      v !== null && typeof v === "object" && !Array.isArray(v) && cur !== null && typeof cur === "object"
        ? { ...(cur as object), ...(v as object) }
        : v;
    if (v === undefined) delete merged[k];
  }
  return merged;
}

/** Config as the engine hands it to the program: full key → string, objects as JSON. */
export function engineConfig(config: Record<string, unknown>): Record<string, string> {
  return Object.fromEntries(Object.entries(config).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]));
}

/** `stackConfig` as the program validates it. */
export function parsedStackConfig(stack: string, extra: Record<string, unknown> = {}): StackConfig {
  return parseConfig(engineConfig(stackConfig(stack, extra)));
}

export function isSecretValue(v: unknown): v is { value: unknown } {
  return (
    v !== null && typeof v === "object" && (v as Record<string, unknown>)[pulumi.runtime.specialSigKey] === pulumi.runtime.specialSecretSig
  );
}

/** The inputs with every secret replaced by a marker: what Pulumi would store in plaintext. */
export function plainParts(v: unknown): unknown {
  if (isSecretValue(v)) return "[secret]";
  if (Array.isArray(v)) return v.map(plainParts);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, plainParts(x)]));
  return v;
}

/** The inputs with secrets unwrapped, to compare values between runs. */
export function revealed(v: unknown): unknown {
  if (isSecretValue(v)) return revealed(v.value);
  if (Array.isArray(v)) return v.map(revealed);
  if (v !== null && typeof v === "object") return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, revealed(x)]));
  return v;
}

let running = false;

// A failed apply surfaces as unhandled rejections of every registration that depends on it (the
// real Pulumi runtime turns those into the program's failure). During a run they are collected here
// instead of reaching the test runner's own handler.
function captureRejections(errors: Error[]): () => Promise<void> {
  const saved = process.listeners("unhandledRejection");
  process.removeAllListeners("unhandledRejection");
  const own = (e: unknown) => errors.push(e instanceof Error ? e : new Error(String(e)));
  process.on("unhandledRejection", own);
  return async () => {
    // Wait until the failures stop coming, then hand the process back.
    for (let seen = -1; seen !== errors.length; ) {
      seen = errors.length;
      await new Promise((r) => setTimeout(r, 30));
    }
    process.off("unhandledRejection", own);
    for (const l of saved) process.on("unhandledRejection", l as (...a: unknown[]) => void);
  };
}

// The engine orders steps by the dependencies each registration carries; mocks do not pass them to
// newResource, so they are read off the request here (explicit dependsOn and input dependencies).
const dependencies = new Map<string, string[]>();
const mockMonitor = (require("@pulumi/pulumi/runtime/mocks") as { MockMonitor: { prototype: Record<string, Function> } }).MockMonitor;
const registerResource = mockMonitor.prototype.registerResource;
mockMonitor.prototype.registerResource = function (
  this: unknown,
  req: { getName(): string; getDependenciesList(): string[] },
  cb: unknown,
) {
  dependencies.set(req.getName(), req.getDependenciesList());
  return registerResource.call(this, req, cb);
};

/** Runs index.ts once under mocks; never throws for program errors (see `error`). */
export async function runStack(stack: string | null, opts: RunOptions = {}): Promise<StackRun> {
  if (running) throw new Error("runStack is not re-entrant");
  running = true;
  const resources: Registered[] = [];
  const invokes: StackRun["invokes"] = [];
  const errors: Error[] = [];
  const release = captureRejections(errors);
  const savedKubeconfig = process.env.KUBECONFIG;
  dependencies.clear();
  try {
    const kubeconfig = opts.kubeconfig === undefined ? DEFAULT_KUBECONFIG : opts.kubeconfig;
    // One path per process: the provider records $KUBECONFIG among its inputs.
    process.env.KUBECONFIG = path.join(os.tmpdir(), `rs-mock-kubeconfig-${process.pid}`);
    fs.rmSync(process.env.KUBECONFIG, { force: true });
    if (kubeconfig !== null) fs.writeFileSync(process.env.KUBECONFIG, kubeconfig);

    const key = opts.key ?? FAKE_KEY;
    await pulumi.runtime.setMocks(
      {
        newResource(args: pulumi.runtime.MockResourceArgs) {
          const dependsOn: string[] = [];
          resources.push({ type: args.type, name: args.name, inputs: args.inputs, dependsOn, provider: args.provider });
          return { id: `${args.name}-id`, state: args.inputs };
        },
        call(args: pulumi.runtime.MockCallArgs) {
          invokes.push({ token: args.token, inputs: args.inputs, provider: args.provider });
          if (args.token === "onepassword:index/getItem:getItem") {
            if (opts.itemError) throw new Error(opts.itemError);
            return {
              id: "vaults/vault-uuid/items/item-uuid-1",
              uuid: "item-uuid-1",
              title: args.inputs.title,
              vault: args.inputs.vault,
              category: "api_credential",
              credential: key,
              password: "",
              sections: [],
              ...(opts.item ?? {}),
            };
          }
          throw new Error(`unexpected invoke ${args.token}`);
        },
      },
      "runner-secrets",
      stack ?? "test",
      opts.preview ?? false,
    );
    const config = stackConfig(stack, opts.config);
    pulumi.runtime.setAllConfig(engineConfig(config), opts.secretKeys ?? []);

    for (const id of Object.keys(require.cache)) {
      if (id.startsWith(ROOT) && !id.includes(`${path.sep}node_modules${path.sep}`)) delete require.cache[id];
    }
    let exportsObj: Record<string, unknown> = {};
    try {
      exportsObj = require(path.join(ROOT, "index.ts")) as Record<string, unknown>;
    } catch (e) {
      errors.push(e as Error);
    }
    const outputs: Record<string, unknown> = {};
    for (const [k, v] of Object.entries(exportsObj)) {
      try {
        outputs[k] = pulumi.Output.isInstance(v) ? await (v as unknown as { promise(): Promise<unknown> }).promise() : v;
      } catch (e) {
        errors.push(e as Error);
      }
    }
    // Let every outstanding registration finish.
    await (require("@pulumi/pulumi/runtime/settings") as { waitForRPCs(): Promise<void> }).waitForRPCs();
    await new Promise((r) => setTimeout(r, 10));
    for (const r of resources) r.dependsOn.push(...(dependencies.get(r.name) ?? []).map((urn) => urn.split("::").pop()!));
    await release();
    return { resources, outputs, invokes, error: errors[0] };
  } catch (e) {
    await release();
    throw e;
  } finally {
    if (savedKubeconfig === undefined) delete process.env.KUBECONFIG;
    else process.env.KUBECONFIG = savedKubeconfig;
    running = false;
  }
}

export function byName(run: StackRun, suffix: string): Registered {
  const r = run.resources.find((x) => x.name.endsWith(suffix));
  if (!r) throw new Error(`no resource named *${suffix}; have ${run.resources.map((x) => x.name).join(", ")}`);
  return r;
}
