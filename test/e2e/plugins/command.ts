// STAND-IN for the `command` provider plugin (real: pulumi/pulumi-command v1.2.1, built on
// pulumi-go-provider; the Go module proxy here does not serve it). Implements only what
// runner-secrets uses, `command:remote:Command` and `command:local:Command`, following the real
// provider's code (provider/pkg/provider/{remote,local,common}, read at v1.2.1):
//   - Check: connection defaults user "root", port 22, dialErrorLimit 10, perDialTimeout 15, and the
//     connection is kept secret; other inputs pass through.
//   - Diff: inputs (not stdout/stderr) compared leaf by leaf, keyed by the engine's property paths;
//     a change is an in-place update. Only adding or removing `triggers` replaces here; a changed
//     element is replaced by the SDK's replaceOnChanges ["triggers[*]"], as with the real plugin.
//     The plugin never asks for delete-before-replace (the program's resource option does).
//   - Create runs `create`; Update runs `update`, else `create`; Delete runs `delete` with the
//     stored (old) state, if there is one; Read returns the stored state (refresh runs nothing).
//   - One SSH connection and one exec session per operation; the command text verbatim; stdin
//     only when non-empty; only the pinned host key (and only its key type) accepted; a private
//     key if given, and the agent (agentSocketPath, else SSH_AUTH_SOCK). Dial errors are retried
//     dialErrorLimit times (so limit+1 attempts), backoff 100 ms × 1.5, at most 5 s.
//   - Outputs: every input, plus stdout and stderr with one trailing newline removed (never
//     secret). Errors: `Process exited with status N: running "<cmd>":\n<stdout+stderr>` (local:
//     `exit status N: …`); a failed create saves nothing, a failed update keeps the old state.
//   - `logging` (default both) sends output lines to the engine as ephemeral info messages.
// Deviations: SSH is OpenSSH's client, not Go's x/crypto/ssh; output lines are logged when the
// command ends rather than as they arrive; `environment` and addPreviousOutputInEnv's variables are
// never sent (a default sshd refuses them anyway: the real plugin fails on `environment` and only
// warns for addPreviousOutputInEnv, so `environment` is refused here and the other is a warning);
// no password auth, proxies or keepalives.
import { spawn } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { isDeepStrictEqual } from "node:util";

import { reveal, secret, serve, type DiffResult, type EngineLog, type Props, type Provider } from "./plugin";

interface Connection {
  host: string;
  port: number;
  user: string;
  hostKey?: string;
  privateKey?: string;
  agentSocketPath?: string;
  dialErrorLimit: number;
  perDialTimeout: number;
}

interface Ran {
  code: number;
  stdout: string;
  stderr: string;
}

const OUTPUTS = new Set(["stdout", "stderr"]);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));
const trimNl = (s: string) => (s.endsWith("\n") ? s.slice(0, -1) : s);

function run(cmd: string, args: string[], stdin: string, opts: { cwd?: string; env?: NodeJS.ProcessEnv } = {}): Promise<Ran> {
  return new Promise((resolve, reject) => {
    const child = spawn(cmd, args, { cwd: opts.cwd, env: opts.env, stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code, signal) => resolve({ code: code ?? (signal ? 128 : 1), stdout, stderr }));
    child.stdin.on("error", () => undefined); // the remote side may exit before reading it all
    if (stdin !== "") child.stdin.write(stdin);
    child.stdin.end();
  });
}

/** OpenSSH reports its own failures (connect, host key, auth) with exit 255 and nothing on stdout. */
function isDialError(r: Ran): boolean {
  return (
    r.code === 255 &&
    r.stdout === "" &&
    /^(ssh: |Host key verification failed|.*Permission denied|kex_exchange_identification|Connection (closed|reset)|Unable to negotiate)/m.test(
      r.stderr,
    )
  );
}

async function runRemote(c: Connection, command: string, stdin: string): Promise<Ran> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-standin-ssh-"));
  try {
    const args = [
      "-F",
      "/dev/null",
      "-T",
      "-o",
      "BatchMode=yes",
      "-o",
      `ConnectTimeout=${c.perDialTimeout}`,
      "-o",
      "GlobalKnownHostsFile=/dev/null",
    ];
    if (c.hostKey) {
      const [type, blob] = c.hostKey.trim().split(/\s+/);
      fs.writeFileSync(path.join(dir, "known_hosts"), `pinned ${type} ${blob}\n`);
      args.push(
        "-o",
        "HostKeyAlias=pinned",
        "-o",
        `UserKnownHostsFile=${path.join(dir, "known_hosts")}`,
        "-o",
        "StrictHostKeyChecking=yes",
        "-o",
        `HostKeyAlgorithms=${type}`,
      );
    } else {
      // The real plugin's InsecureIgnoreHostKey.
      args.push("-o", "UserKnownHostsFile=/dev/null", "-o", "StrictHostKeyChecking=no");
    }
    if (c.privateKey) {
      fs.writeFileSync(path.join(dir, "id"), c.privateKey.endsWith("\n") ? c.privateKey : `${c.privateKey}\n`, { mode: 0o600 });
      args.push("-i", path.join(dir, "id"));
    }
    const agent = c.agentSocketPath || process.env.SSH_AUTH_SOCK;
    args.push("-o", `IdentityAgent=${agent ? agent : "none"}`, "-p", String(c.port), "-l", c.user, c.host, "--", command);
    let last: Ran | undefined;
    let wait = 100;
    for (let attempt = 0; attempt <= c.dialErrorLimit; attempt++) {
      last = await run("ssh", args, stdin);
      if (!isDialError(last)) return last;
      if (attempt < c.dialErrorLimit) {
        await sleep(wait);
        wait = Math.min(wait * 1.5, 5000);
      }
    }
    throw new Error(`after ${c.dialErrorLimit + 1} failed attempts: ${last!.stderr.trim()}`);
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}

/** A property path as the engine prints it (resource.PropertyPath.String): a.b[0], a["odd key"]. */
function pathString(p: (string | number)[]): string {
  let out = "";
  for (const part of p) {
    if (typeof part === "number") out += `[${part}]`;
    else if (/^[A-Za-z_][A-Za-z0-9_$]*$/.test(part)) out += out === "" ? part : `.${part}`;
    else out += `[${JSON.stringify(part)}]`;
  }
  return out;
}

/** The detailed diff pulumi-go-provider builds (plugin.NewDetailedDiffFromObjectDiff): one entry
 * per changed leaf, objects and arrays recursed, elements past the shorter array added/deleted. */
function diffValue(at: (string | number)[], o: unknown, n: unknown, acc: DiffResult["detailed"]): void {
  const isObj = (v: unknown): v is Record<string, unknown> => typeof v === "object" && v !== null && !Array.isArray(v);
  if (isObj(o) && isObj(n)) {
    for (const k of new Set([...Object.keys(o), ...Object.keys(n)])) {
      if (o[k] === undefined && n[k] !== undefined) acc[pathString([...at, k])] = "add";
      else if (o[k] !== undefined && n[k] === undefined) acc[pathString([...at, k])] = "delete";
      else if (o[k] !== undefined) diffValue([...at, k], o[k], n[k], acc);
    }
  } else if (Array.isArray(o) && Array.isArray(n)) {
    for (let i = 0; i < Math.max(o.length, n.length); i++) {
      if (i >= o.length) acc[pathString([...at, i])] = "add";
      else if (i >= n.length) acc[pathString([...at, i])] = "delete";
      else diffValue([...at, i], o[i], n[i], acc);
    }
  } else if (!isDeepStrictEqual(o, n)) {
    acc[pathString(at)] = o === null || o === undefined ? "add" : n === null || n === undefined ? "delete" : "update";
  }
}

function nameOf(urn: string): string {
  return urn.split("::").pop() ?? "command";
}

class CommandProvider implements Provider {
  name = "command";
  version = "1.2.1";
  engine?: EngineLog;

  check(urn: string, _olds: Props, news: Props): Props {
    if (!urn.includes("command:remote:Command") || news.connection === undefined) return news;
    const c = reveal(news.connection) as Record<string, unknown>;
    const conn = { user: "root", port: 22, dialErrorLimit: 10, perDialTimeout: 15, ...c };
    return { ...news, connection: secret(conn) };
  }

  diff(_urn: string, _id: string, olds: Props, news: Props): DiffResult {
    const detailed: DiffResult["detailed"] = {};
    const o: Props = {};
    const n: Props = {};
    for (const k of Object.keys(olds)) if (!OUTPUTS.has(k)) o[k] = reveal(olds[k]);
    for (const k of Object.keys(news)) if (!OUTPUTS.has(k)) n[k] = reveal(news[k]);
    diffValue([], o, n, detailed);
    // The real schema marks `triggers` replaceOnChanges, which pulumi-go-provider applies to the
    // top-level key only; element changes ("triggers[1]") are replaced by the engine through the
    // SDK's replaceOnChanges ["triggers[*]"], so the paths below must be the engine's own.
    const replaces = "triggers" in detailed ? ["triggers"] : [];
    return { changes: Object.keys(detailed).length > 0, replaces, detailed };
  }

  async create(urn: string, props: Props) {
    const ran = await this.exec(urn, props, "create", "create");
    return {
      id: `${nameOf(urn)}${randomBytes(4).toString("hex")}`,
      outs: { ...props, stdout: trimNl(ran.stdout), stderr: trimNl(ran.stderr) },
    };
  }

  async update(urn: string, _id: string, olds: Props, news: Props) {
    const which = news.update !== undefined ? "update" : "create";
    const ran = await this.exec(urn, news, which, "update", olds);
    return { ...news, stdout: trimNl(ran.stdout), stderr: trimNl(ran.stderr) };
  }

  async delete(urn: string, _id: string, props: Props) {
    if (props.delete === undefined) return;
    await this.exec(urn, props, "delete", "delete", props);
  }

  private async exec(urn: string, props: Props, which: "create" | "update" | "delete", op: string, previous?: Props): Promise<Ran> {
    const command = reveal(props[which]) as string | undefined;
    if (command === undefined || command === "") return { code: 0, stdout: "", stderr: "" };
    const stdin = (reveal(props.stdin) as string | undefined) ?? "";
    const environment = (reveal(props.environment) as Record<string, string> | undefined) ?? {};
    const local = urn.includes("command:local:Command");
    if (!local && Object.keys(environment).length > 0) {
      throw new Error(
        `could not set environment variable "${Object.keys(environment)[0]}": ssh: setenv failed (stand-in: environment is not sent)`,
      );
    }
    if (!local && op !== "create" && props.addPreviousOutputInEnv !== false && (previous?.stdout || previous?.stderr)) {
      await this.engine?.send(
        urn,
        "Unable to set 'PULUMI_COMMAND_STDOUT'. This only works if your SSH server is configured to accept these variables",
        "warning",
        false,
      );
    }
    const ran = local
      ? await run("/bin/sh", ["-c", command], stdin, {
          cwd: (reveal(props.dir) as string | undefined) ?? process.cwd(),
          env: { ...process.env, ...environment },
        })
      : await runRemote(reveal(props.connection) as Connection, command, stdin);
    const logging = (props.logging as string | undefined) ?? "stdoutAndStderr";
    const shown = [
      logging === "stdout" || logging === "stdoutAndStderr" ? ran.stdout : "",
      logging === "stderr" || logging === "stdoutAndStderr" ? ran.stderr : "",
    ].join("");
    for (const line of shown.split("\n").filter((l) => l !== "")) await this.engine?.send(urn, line);
    if (ran.code !== 0) {
      const status = local ? `exit status ${ran.code}` : `Process exited with status ${ran.code}`;
      throw new Error(`${status}: running ${JSON.stringify(command)}:\n${ran.stdout}${ran.stderr}`);
    }
    return ran;
  }
}

serve(new CommandProvider());
