// The real Pulumi engine for the e2e tier: the `pulumi` CLI built by test/setup/engine.sh drives the
// project's own index.ts through the Automation API (an inline program, so no nodejs language host
// binary is needed), with a throw-away file backend and a passphrase secrets provider. Config is
// set with the CLI itself (`pulumi config set [--path] [--secret]`), as an operator does it.
//
// Plugins come from PATH: RS_E2E_PROVIDERS (a directory of real provider binaries, when given)
// first, then the e2e bin directory (`npm run -s e2e:bin`: the CLI, the kubernetes provider and the
// stand-ins for the providers the Go module proxy does not serve).
import { execFileSync, spawnSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import * as pulumi from "@pulumi/pulumi";
import {
  LocalWorkspace,
  PulumiCommand,
  type DestroyResult,
  type PreviewResult,
  type Stack,
  type UpResult,
} from "@pulumi/pulumi/automation";
import { runTs } from "../../support/runTs";

export const ROOT = path.resolve(__dirname, "..", "..", "..");

let binDir: string | undefined;
/** The directory engine.sh fills (it builds what is missing: minutes on a cold machine). */
export function e2eBin(): string {
  if (binDir) return binDir;
  const dir =
    process.env.RS_E2E_BIN ?? execFileSync("bash", [path.join(ROOT, "test/setup/engine.sh"), "--print"], { encoding: "utf8" }).trim();
  if (!fs.existsSync(path.join(dir, "pulumi"))) {
    execFileSync("bash", [path.join(ROOT, "test/setup/engine.sh")], { stdio: "inherit" });
  }
  binDir = dir;
  return dir;
}

/** Which plugins the run uses: "stand-in" or the RS_E2E_PROVIDERS directory. */
export const providersUnderTest = process.env.RS_E2E_PROVIDERS ? `real (${process.env.RS_E2E_PROVIDERS})` : "stand-in";

export interface CliResult {
  stdout: string;
  stderr: string;
  code: number;
}

export interface Project {
  /** The project directory the engine runs in (Pulumi.yaml, the stack file). */
  dir: string;
  stackName: string;
  stack: Stack;
  /** The backend directory: every state file the engine wrote. */
  stateDir: string;
  env: Record<string, string>;
  /** `pulumi <args> --stack <name>` in the project directory, never throwing. */
  cli(args: string[], opts?: { input?: string }): CliResult;
  /** `pulumi config set` as an operator types it; throws with the CLI's words on refusal. */
  configSet(key: string, value: string, opts?: { secret?: boolean; path?: boolean; plaintext?: boolean }): void;
  up(opts?: { replace?: string[]; refresh?: boolean; signal?: AbortSignal; onOutput?: (s: string) => void }): Promise<Ran<UpResult>>;
  preview(opts?: { replace?: string[]; refresh?: boolean }): Promise<Ran<PreviewResult>>;
  destroy(): Promise<Ran<DestroyResult>>;
  /** `pulumi stack export --show-secrets=false` as text. */
  exportText(): string;
  /** Every file under the backend directory, concatenated. */
  stateText(): string;
  outputs(): Promise<Record<string, { value: unknown; secret: boolean }>>;
  /** The URN of the one resource of that name (a name ending in "-": of that prefix). */
  urn(nameSuffix: string): Promise<string>;
  remove(): Promise<void>;
}

/** An operation's result plus everything it printed (stdout and stderr), or its error. */
export type Ran<T> = { result?: T; error?: Error; output: string };

/**
 * Runs index.ts afresh (the module cache of the project's own files is dropped) and returns its
 * exports as the stack outputs. A RunError is reported the way the nodejs language host reports
 * it under `pulumi up` (its message as an error, no stack trace); the inline server would print
 * the stack and leave the rejection unhandled in this process.
 */
async function program(): Promise<Record<string, unknown>> {
  for (const id of Object.keys(require.cache)) {
    if (id.startsWith(ROOT) && !id.includes(`${path.sep}node_modules${path.sep}`) && !id.includes(`${path.sep}test${path.sep}`)) {
      delete require.cache[id];
    }
  }
  try {
    return require(path.join(ROOT, "index.ts")) as Record<string, unknown>;
  } catch (e) {
    if (!pulumi.RunError.isInstance(e)) throw e;
    await pulumi.log.error((e as Error).message);
    return {};
  }
}

/**
 * A project directory of its own per test: Pulumi.yaml and the committed stack file are copied
 * (the engine writes stack config there), and the files the program's local commands use
 * (components/, lib/, checker/, tools/, node_modules, package.json) are linked from the repo.
 */
export async function newProject(stackName: "ringtail" | "indri", opts: { env?: Record<string, string> } = {}): Promise<Project> {
  const bin = e2eBin();
  const base = fs.mkdtempSync(path.join(os.tmpdir(), `rs-e2e-${stackName}-`));
  const dir = path.join(base, "project");
  const stateDir = path.join(base, "state");
  const home = path.join(base, "pulumi-home");
  for (const d of [dir, stateDir, home]) fs.mkdirSync(d, { recursive: true });
  fs.copyFileSync(path.join(ROOT, "Pulumi.yaml"), path.join(dir, "Pulumi.yaml"));
  fs.copyFileSync(path.join(ROOT, `Pulumi.${stackName}.yaml`), path.join(dir, `Pulumi.${stackName}.yaml`));
  for (const link of ["index.ts", "components", "lib", "checker", "tools", "node_modules", "package.json", "tsconfig.json"]) {
    if (fs.existsSync(path.join(ROOT, link))) fs.symlinkSync(path.join(ROOT, link), path.join(dir, link));
  }

  const pathDirs = [process.env.RS_E2E_PROVIDERS, bin, path.dirname(process.execPath), process.env.PATH].filter(Boolean);
  const env: Record<string, string> = {
    PATH: pathDirs.join(":"),
    PULUMI_HOME: home,
    PULUMI_BACKEND_URL: `file://${stateDir}`,
    PULUMI_CONFIG_PASSPHRASE: randomBytes(12).toString("hex"),
    PULUMI_SKIP_UPDATE_CHECK: "true",
    PULUMI_DISABLE_AUTOMATIC_PLUGIN_ACQUISITION: "true",
    PULUMI_AUTOMATION_API_SKIP_VERSION_CHECK: "true",
    PULUMI_SKIP_CONFIRMATIONS: "true",
    // Nothing ambient: no agent, no kubeconfig, no 1Password session, unless a test gives one.
    SSH_AUTH_SOCK: "",
    ...opts.env,
  };
  const pulumiCommand = await PulumiCommand.get({ root: path.dirname(bin), skipVersionCheck: true });
  // PulumiCommand.get looks for <root>/bin/pulumi: the bin dir's parent is its root.
  const stack = await LocalWorkspace.createOrSelectStack(
    { stackName, projectName: "runner-secrets", program },
    { workDir: dir, envVars: env, pulumiCommand },
  );

  const cliEnv = { ...process.env, ...env };
  const cli = (args: string[], o: { input?: string } = {}): CliResult => {
    // Flags before a `--`: what follows it is positional (a value may start with "-").
    const dash = args.indexOf("--");
    const [head, tail] = dash < 0 ? [args, []] : [args.slice(0, dash), args.slice(dash)];
    const child = spawnSync(path.join(bin, "pulumi"), [...head, "--stack", stackName, "--non-interactive", ...tail], {
      cwd: dir,
      env: cliEnv,
      input: o.input,
      encoding: "utf8",
      maxBuffer: 64 << 20,
    });
    return { stdout: child.stdout ?? "", stderr: child.stderr ?? "", code: child.status ?? -1 };
  };

  async function ran<T>(op: (onOutput: (s: string) => void) => Promise<T>, extra?: (s: string) => void): Promise<Ran<T>> {
    let output = "";
    const onOutput = (s: string) => {
      output += s;
      extra?.(s);
    };
    try {
      const result = await op(onOutput);
      // Diagnostics the engine prints to stderr (warnings) are part of what an operator sees.
      const stderr = (result as { stderr?: string }).stderr;
      return { result, output: stderr ? `${output}\n${stderr}` : output };
    } catch (e) {
      const err = e as Error & { commandResult?: { stdout: string; stderr: string } };
      output += err.commandResult ? err.commandResult.stdout + err.commandResult.stderr : "";
      return { error: err, output: output + "\n" + String(err.message ?? err) };
    }
  }

  const project: Project = {
    dir,
    stackName,
    stack,
    stateDir,
    env,
    cli,
    configSet(key, value, o = {}) {
      const args = [
        "config",
        "set",
        ...(o.path ? ["--path"] : []),
        ...(o.secret ? ["--secret"] : []),
        ...(o.plaintext ? ["--plaintext"] : []),
        key,
      ];
      // A secret goes on stdin, as `pulumi config set --secret KEY` then typing it would.
      const r = o.secret ? cli(args, { input: value }) : cli([...args, "--", value]);
      if (r.code !== 0) throw new Error(`pulumi ${args.join(" ")} failed (exit ${r.code}): ${r.stderr}${r.stdout}`);
    },
    up: (o = {}) =>
      ran(
        (onOutput) => stack.up({ onOutput, color: "never", replace: o.replace, refresh: o.refresh, signal: o.signal, diff: true }),
        o.onOutput,
      ),
    preview: (o = {}) => ran((onOutput) => stack.preview({ onOutput, color: "never", replace: o.replace, refresh: o.refresh, diff: true })),
    destroy: () => ran((onOutput) => stack.destroy({ onOutput, color: "never" })),
    exportText() {
      const r = cli(["stack", "export"]);
      if (r.code !== 0) throw new Error(`pulumi stack export failed: ${r.stderr}`);
      return r.stdout;
    },
    stateText() {
      const out: string[] = [];
      const walk = (d: string) => {
        for (const e of fs.readdirSync(d, { withFileTypes: true })) {
          const p = path.join(d, e.name);
          if (e.isDirectory()) walk(p);
          else out.push(fs.readFileSync(p, "utf8"));
        }
      };
      walk(stateDir);
      return out.join("\n");
    },
    async outputs() {
      const o = await stack.outputs();
      return Object.fromEntries(Object.entries(o).map(([k, v]) => [k, { value: v.value, secret: v.secret }]));
    },
    async urn(nameSuffix) {
      const state = await stack.exportStack();
      const urns = ((state.deployment as { resources?: { urn: string }[] }).resources ?? []).map((r) => r.urn);
      // A name ending in "-" matches names with that prefix (e.g. a shape-hashed name).
      const hit = urns.filter((u) =>
        nameSuffix.endsWith("-") ? u.split("::").pop()!.startsWith(nameSuffix) : u.endsWith(`::${nameSuffix}`),
      );
      if (hit.length !== 1) throw new Error(`no single resource named ${nameSuffix} in ${urns.join(", ")}`);
      return hit[0];
    },
    async remove() {
      fs.rmSync(base, { recursive: true, force: true });
    },
  };
  return project;
}

/**
 * `tools/verify.ts --stack <stack>` run as an operator runs it, in the project directory with the
 * project's backend and CLI. Asynchronous: the stand-ins it talks to answer from this process.
 */
export async function runVerify(project: Project, stack: string): Promise<{ code: number | null; out: string }> {
  return runTool(project, "tools/verify.ts", ["--stack", stack]);
}

/** One of the operator tools (tools/…), run in the project directory as `mise run` would. */
export async function runTool(project: Project, file: string, args: string[]): Promise<{ code: number | null; out: string }> {
  const r = await runTs(path.join(ROOT, file), args, { cwd: project.dir, env: { ...process.env, ...project.env } });
  return { code: r.code, out: r.stdout + r.stderr };
}

/** Kills (SIGKILL) every pulumi process of this project: an `up` cut short as by a crash. */
export function killEngine(project: Project): number {
  let killed = 0;
  for (const pid of fs.readdirSync("/proc").filter((d) => /^\d+$/.test(d))) {
    try {
      const environ = fs.readFileSync(`/proc/${pid}/environ`, "latin1");
      if (environ.includes(`PULUMI_HOME=${project.env.PULUMI_HOME}\0`) && Number(pid) !== process.pid) {
        process.kill(Number(pid), "SIGKILL");
        killed++;
      }
    } catch {
      /* gone, or not ours */
    }
  }
  return killed;
}
