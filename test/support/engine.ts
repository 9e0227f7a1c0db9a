// A stand-in for the Pulumi engine plus the command provider's `remote.Command`, for the resources a
// mock run of the real program (runStack) registered. The real engine is the judge now (test/e2e/,
// with the real CLI); this model stays only where a fault needs control no real provider gives: the
// writer's connection cut after N bytes of stdin (test/integration/ringtailFaults.ssh.test.ts). It does not
// model resource options such as deleteBeforeReplace. What it plays, as far as those tests rely on it:
//
// Engine (pulumi/pkg/resource/deploy):
//   - state = last successful inputs (and outputs) per resource; a failed create is not saved (the
//     next `up` creates again), a failed update keeps the old inputs (the next `up` updates again);
//   - diff: equal inputs → nothing; `triggers` changed (the provider's only replaceOnChanges
//     property) → replace, create-before-delete: the new resource is created in the dependency walk,
//     the old one's `delete` runs at the end of the update with the OLD inputs; any other change →
//     in-place update;
//   - steps follow registration dependencies (dependsOn and input dependencies, as runStack reads
//     them); the first failing step stops the update: later steps and all deletes are skipped;
//     condemned resources stay in state as pending deletes, deleted in the delete phase (at the
//     end) of the next `up` that gets that far;
//   - deletes (replaced-old, removed from the program, destroy) run in reverse dependency order;
//   - a resource id is assigned on create (the provider's NewUniqueHex); inputs that refer to
//     another resource's id (the mock gives "<name>-id") see the engine's id for it.
//
// Provider (pulumi-command provider/pkg/provider/remote, v1.x):
//   - create runs `create`; update runs `update`, else `create`; delete runs `delete` (if any);
//   - one SSH exec request with the command text verbatim (runRemote), the pinned `hostKey`,
//     `privateKey` (else the SSH agent: see EngineOptions.agentPrivateKey); stdin piped only when
//     non-empty; `environment` entries are sent with setenv and a refusal fails the command (our
//     sshd, like a default one, refuses: modelled as a failure without connecting);
//     addPreviousOutputInEnv (default true) sends the previous stdout/stderr on a best-effort basis
//     (a refusal is only a warning there), so it changes nothing observable and is recorded only;
//   - a failure is `<cause>: running "<command>":\n<combined output>` (Go: `%w: running %q:\n%s`).
//     runRemote keeps stdout and stderr apart, so "combined" is stdout followed by stderr here.
//
// Not modelled: parallel steps (the program's remote commands form one chain anyway), preview,
// refresh (the provider has no Read), dial retries, proxies, other resource types with side effects
// (a local.Command is refused: disable the registry check in tests).

import { randomBytes } from "node:crypto";
import { isDeepStrictEqual } from "node:util";

import type { Registered, StackRun } from "./mockStack";
import { revealed } from "./mockStack";
import { runRemote, type RemoteConn, type RunRemoteOptions, type RunRemoteResult } from "./sshRun";

const REMOTE_COMMAND = "command:remote:Command";
const LOCAL_COMMAND = "command:local:Command";

export type StepOp = "create" | "update" | "replace" | "delete-replaced" | "delete";

export interface Step {
  op: StepOp;
  name: string;
  /** Which input property ran ("create", "update", "delete"), or null when there was none to run. */
  ran: "create" | "update" | "delete" | null;
  ok: boolean;
}

/** One command sent to the host. */
export interface RemoteRun {
  name: string;
  op: StepOp;
  property: "create" | "update" | "delete";
  command: string;
  stdinBytes: number;
  result: RunRemoteResult;
  /** Names of env vars the provider would have tried to set (only recorded). */
  setenv: string[];
}

export interface ResourceState {
  name: string;
  type: string;
  id: string;
  /** Inputs as the provider received them (secrets unwrapped, resource ids resolved). */
  inputs: Record<string, unknown>;
  /** Inputs as registered (secret values still wrapped), for what-is-stored-in-plain checks. */
  registered: Record<string, unknown>;
  stdout: string;
  stderr: string;
  dependsOn: string[];
}

export interface UpResult {
  /** Steps that did something (no "same" steps), in the order they ran. */
  steps: Step[];
  runs: RemoteRun[];
  /** The first failure (step or program error); undefined when the update succeeded. */
  error?: EngineError;
}

export class EngineError extends Error {
  constructor(
    message: string,
    readonly step?: { op: StepOp; name: string },
  ) {
    super(message);
    this.name = "EngineError";
  }
}

export interface StepContext {
  name: string;
  op: StepOp;
  property: "create" | "update" | "delete";
}

/**
 * curve25519-sha256 is what Go's x/crypto/ssh client (the provider's) has long offered first;
 * OpenSSH 9.2 would otherwise pick sntrup761x25519, which costs ~50 ms of CPU per connection here.
 */
const DEFAULT_SSH_ARGS = ["-o", "KexAlgorithms=curve25519-sha256"];

export interface EngineOptions {
  /** ssh client options for every command (default DEFAULT_SSH_ARGS). */
  sshArgs?: string[];
  /** The key the SSH agent would offer when a connection has no privateKey (the provider's fallback). */
  agentPrivateKey?: string;
  /** runRemote timeout per command, ms. Default 30000. */
  timeoutMs?: number;
}

export interface UpOptions {
  /** Extra runRemote options for one step, e.g. fault injection with abortAfterStdinBytes. */
  remoteOptions?: (step: StepContext) => Partial<RunRemoteOptions> | undefined;
}

type Json = unknown;

export class Engine {
  private resources = new Map<string, ResourceState>();
  /** Replaced resources whose delete has not run yet (update failed before the delete phase). */
  private pending: ResourceState[] = [];
  /** Every remote run of every update, for leak checks across a whole test. */
  readonly history: RemoteRun[] = [];

  constructor(private readonly opts: EngineOptions = {}) {}

  /** The current state (a copy), by name. */
  state(): Map<string, ResourceState> {
    return new Map([...this.resources].map(([k, v]) => [k, { ...v }]));
  }

  pendingDeletes(): string[] {
    return this.pending.map((r) => r.name);
  }

  /** `pulumi up` with the registrations of one mock run of the program. */
  async up(run: StackRun, upOpts: UpOptions = {}): Promise<UpResult> {
    const out: UpResult = { steps: [], runs: [] };
    for (const r of run.resources) {
      if (r.type === LOCAL_COMMAND) {
        throw new Error(
          `engine: ${r.name} is a local.Command; this engine only models remote commands (disable runner-secrets:registryCheck)`,
        );
      }
    }
    const commands = run.resources.filter((r) => r.type === REMOTE_COMMAND);

    // Replaced resources an earlier failed update did not get to delete: deleted in this update's
    // delete phase, with the ones this update condemns (the engine's GenerateDeletes).
    const pendingBefore = this.pending;
    this.pending = [];
    const condemned: ResourceState[] = [...pendingBefore];
    const registeredNames = new Set(commands.map((c) => c.name));
    for (const reg of dependencyOrder(commands)) {
      const inputs = this.resolve(revealed(reg.inputs) as Record<string, unknown>, registeredNames);
      const old = this.resources.get(reg.name);
      const dependsOn = reg.dependsOn.filter((d) => registeredNames.has(d));
      let ok: boolean;
      if (!old) {
        ok = await this.createStep("create", reg, inputs, dependsOn, out, upOpts);
      } else if (isDeepStrictEqual(old.inputs, inputs)) {
        old.dependsOn = dependsOn;
        continue;
      } else if (!isDeepStrictEqual(old.inputs.triggers, inputs.triggers)) {
        ok = await this.createStep("replace", reg, inputs, dependsOn, out, upOpts);
        if (ok) condemned.push(old);
      } else {
        ok = await this.updateStep(reg, old, inputs, dependsOn, out, upOpts);
      }
      if (!ok) {
        this.pending.push(...condemned);
        return out;
      }
    }

    if (run.error) {
      // The engine runs the steps of what was registered, then fails the update: no deletes.
      this.pending.push(...condemned);
      out.error = new EngineError(`the program failed: ${run.error.message}`);
      return out;
    }

    const removed = [...this.resources.values()].filter((r) => !registeredNames.has(r.name));
    const deletions: { r: ResourceState; op: StepOp }[] = [
      ...condemned.map((r) => ({ r, op: "delete-replaced" as const })),
      ...removed.map((r) => ({ r, op: "delete" as const })),
    ];
    const order = reverseDependencyOrder(deletions.map((d) => d.r));
    for (const r of order) {
      const d = deletions.find((x) => x.r === r)!;
      const ok = await this.deleteStep(d.op, r, out, upOpts);
      if (!ok) {
        // What is left stays in state: condemned ones as pending deletes, removed ones as resources.
        const rest = order.slice(order.indexOf(r));
        this.pending.push(...rest.filter((x) => condemned.includes(x)));
        return out;
      }
    }
    return out;
  }

  /** `pulumi destroy`: deletes everything in state (pending deletes too), dependents first. */
  async destroy(upOpts: UpOptions = {}): Promise<UpResult> {
    const out: UpResult = { steps: [], runs: [] };
    const pending = new Set(this.pending);
    for (const r of reverseDependencyOrder([...this.pending, ...this.resources.values()])) {
      if (!(await this.deleteStep(pending.has(r) ? "delete-replaced" : "delete", r, out, upOpts))) return out;
      if (pending.has(r)) this.pending = this.pending.filter((x) => x !== r);
    }
    return out;
  }

  // --- steps --------------------------------------------------------------------------------

  private async createStep(
    op: "create" | "replace",
    reg: Registered,
    inputs: Record<string, unknown>,
    dependsOn: string[],
    out: UpResult,
    upOpts: UpOptions,
  ): Promise<boolean> {
    const id = `${reg.name}-${randomBytes(4).toString("hex")}`;
    const create = typeof inputs.create === "string" ? inputs.create : undefined;
    let stdout = "";
    let stderr = "";
    if (create !== undefined) {
      const res = await this.exec(reg.name, op, "create", create, inputs, undefined, out, upOpts);
      if (res instanceof EngineError) {
        out.steps.push({ op, name: reg.name, ran: "create", ok: false });
        out.error = res;
        return false;
      }
      ({ stdout, stderr } = res);
    }
    out.steps.push({ op, name: reg.name, ran: create !== undefined ? "create" : null, ok: true });
    this.resources.set(reg.name, { name: reg.name, type: reg.type, id, inputs, registered: reg.inputs, stdout, stderr, dependsOn });
    return true;
  }

  private async updateStep(
    reg: Registered,
    old: ResourceState,
    inputs: Record<string, unknown>,
    dependsOn: string[],
    out: UpResult,
    upOpts: UpOptions,
  ): Promise<boolean> {
    const property = typeof inputs.update === "string" ? "update" : typeof inputs.create === "string" ? "create" : null;
    let stdout = old.stdout;
    let stderr = old.stderr;
    if (property !== null) {
      const res = await this.exec(reg.name, "update", property, inputs[property] as string, inputs, old, out, upOpts);
      if (res instanceof EngineError) {
        out.steps.push({ op: "update", name: reg.name, ran: property, ok: false });
        out.error = res;
        return false; // old inputs stay in state
      }
      ({ stdout, stderr } = res);
    }
    out.steps.push({ op: "update", name: reg.name, ran: property, ok: true });
    this.resources.set(reg.name, { ...old, inputs, registered: reg.inputs, stdout, stderr, dependsOn });
    return true;
  }

  private async deleteStep(op: StepOp, r: ResourceState, out: UpResult, upOpts: UpOptions): Promise<boolean> {
    const del = typeof r.inputs.delete === "string" ? r.inputs.delete : undefined;
    if (del !== undefined) {
      const res = await this.exec(r.name, op, "delete", del, r.inputs, r, out, upOpts);
      if (res instanceof EngineError) {
        out.steps.push({ op, name: r.name, ran: "delete", ok: false });
        out.error = res;
        return false;
      }
    }
    out.steps.push({ op, name: r.name, ran: del !== undefined ? "delete" : null, ok: true });
    // A replaced resource's old state is gone; the new one (same name) stays.
    if (op === "delete" && this.resources.get(r.name) === r) this.resources.delete(r.name);
    return true;
  }

  // --- the provider's run() -----------------------------------------------------------------

  private async exec(
    name: string,
    op: StepOp,
    property: "create" | "update" | "delete",
    command: string,
    inputs: Record<string, unknown>,
    previous: ResourceState | undefined,
    out: UpResult,
    upOpts: UpOptions,
  ): Promise<{ stdout: string; stderr: string } | EngineError> {
    const fail = (cause: string, output = "") =>
      new EngineError(`${op} of ${REMOTE_COMMAND} ${name} failed: ${cause}: running ${JSON.stringify(command)}:\n${output}`, { op, name });

    const conn = this.connection(inputs.connection);
    if (typeof conn === "string") return new EngineError(`${op} of ${REMOTE_COMMAND} ${name} failed: ${conn}`, { op, name });

    const env = (inputs.environment ?? {}) as Record<string, Json>;
    const envNames = Object.keys(env);
    if (envNames.length > 0) {
      // The provider fails on a refused setenv; sshd without AcceptEnv refuses every one.
      return new EngineError(
        `${op} of ${REMOTE_COMMAND} ${name} failed: could not set environment variable ${JSON.stringify(envNames[0])}: ssh: setenv failed`,
        { op, name },
      );
    }
    const setenv: string[] = [];
    if (inputs.addPreviousOutputInEnv !== false && previous) {
      if (previous.stdout !== "") setenv.push("PULUMI_COMMAND_STDOUT");
      if (previous.stderr !== "") setenv.push("PULUMI_COMMAND_STDERR");
    }

    const stdin = typeof inputs.stdin === "string" ? inputs.stdin : "";
    const extra = upOpts.remoteOptions?.({ name, op, property }) ?? {};
    const result = await runRemote(conn, command, {
      timeoutMs: this.opts.timeoutMs ?? 30_000,
      ...extra,
      extraSshArgs: [...(this.opts.sshArgs ?? DEFAULT_SSH_ARGS), ...(extra.extraSshArgs ?? [])],
      ...(stdin !== "" ? { stdin } : {}),
    });
    const record: RemoteRun = { name, op, property, command, stdinBytes: Buffer.byteLength(stdin), result, setenv };
    out.runs.push(record);
    this.history.push(record);

    const combined = result.stdout + result.stderr;
    if (result.aborted || result.code === null) return fail("ssh: connection lost (client killed)", combined);
    if (result.code === 255) return fail(`ssh: connection failed (exit 255)`, combined);
    if (result.code !== 0) return fail(`Process exited with status ${result.code}`, combined);
    return { stdout: result.stdout.replace(/\n$/, ""), stderr: result.stderr.replace(/\n$/, "") };
  }

  private connection(c: unknown): RemoteConn | string {
    if (c === null || typeof c !== "object") return "no connection";
    const o = c as Record<string, unknown>;
    const privateKey = typeof o.privateKey === "string" ? o.privateKey : this.opts.agentPrivateKey;
    if (privateKey === undefined) return "no privateKey and no SSH agent key (EngineOptions.agentPrivateKey)";
    if (typeof o.hostKey !== "string") {
      // The provider would accept any host key here (InsecureIgnoreHostKey); refuse to model that.
      return "no hostKey: the provider would not verify the host";
    }
    return {
      host: String(o.host),
      port: o.port === undefined ? 22 : Number(o.port),
      user: o.user === undefined ? "root" : String(o.user),
      hostKey: o.hostKey,
      privateKey,
    };
  }

  /** Replaces mock ids ("<name>-id") of registered resources with the ids this engine assigned. */
  private resolve(v: Record<string, unknown>, names: Set<string>): Record<string, unknown> {
    const walk = (x: unknown): unknown => {
      if (typeof x === "string" && x.endsWith("-id") && names.has(x.slice(0, -3))) {
        const st = this.resources.get(x.slice(0, -3));
        if (!st) throw new Error(`engine: an input refers to ${x}, which has no state yet (dependency order broken)`);
        return st.id;
      }
      if (Array.isArray(x)) return x.map(walk);
      if (x !== null && typeof x === "object") return Object.fromEntries(Object.entries(x).map(([k, y]) => [k, walk(y)]));
      return x;
    };
    return walk(v) as Record<string, unknown>;
  }
}

/** Registration order, but never before a dependency (Kahn, stable; several items may share a name). */
function dependencyOrder<T extends { name: string; dependsOn: string[] }>(items: T[]): T[] {
  const done = new Set<T>();
  const out: T[] = [];
  const waitsFor = (i: T, dep: string) => items.some((j) => j !== i && j.name === dep && !done.has(j));
  while (out.length < items.length) {
    const next = items.find((i) => !done.has(i) && !i.dependsOn.some((d) => waitsFor(i, d)));
    if (!next)
      throw new Error(
        `engine: dependency cycle among ${items
          .filter((i) => !done.has(i))
          .map((i) => i.name)
          .join(", ")}`,
      );
    done.add(next);
    out.push(next);
  }
  return out;
}

/** Dependents before what they depend on. */
function reverseDependencyOrder<T extends { name: string; dependsOn: string[] }>(items: T[]): T[] {
  return dependencyOrder(items).reverse();
}

/** "op name" per step, e.g. ["update zot-ci-env-file", "replace zot-ci-restart"]: for assertions. */
export function summary(r: UpResult): string[] {
  return r.steps.map((s) => `${s.op} ${s.name}${s.ok ? "" : " (failed)"}`);
}
