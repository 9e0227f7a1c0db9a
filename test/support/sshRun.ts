// Runs command text on an SSH host the way @pulumi/command's remote.Command
// does (Go x/crypto/ssh): one exec request carrying the text verbatim (so the
// remote user's login shell parses it: `$SHELL -c <text>`), the pinned host
// key as the only acceptable key, key auth only, no environment sent, stdin
// piped only when non-empty and then closed.
//
// Implemented with the OpenSSH client. `-F /dev/null` keeps ssh_config out
// (Debian's sets `SendEnv LANG LC_*`, which the provider would not send).
// Caveat for process watching: the command text is in the local `ssh`
// process's argv (the provider keeps it in memory); on the host it is in the
// shell's argv either way.

import { spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { knownHostsLine, pinnedSshOptions } from "../../lib/openssh";

export interface RemoteConn {
  host: string;
  port: number;
  user: string;
  /** Pinned host key, authorized_keys format: "ssh-ed25519 AAAA..." (a trailing comment is ignored). */
  hostKey: string;
  /** Client private key, OpenSSH format. */
  privateKey: string;
}

export interface RunRemoteOptions {
  /** Piped to the remote command if non-empty, then closed (EOF). */
  stdin?: string;
  /**
   * Write only this many bytes of stdin (never closing it), and once the SSH
   * connection is up, wait ~300 ms and SIGKILL the ssh client: the connection
   * dies mid-write. Resolves with aborted=true.
   */
  abortAfterStdinBytes?: number;
  /** Kill the client and reject after this long. Default 60000. */
  timeoutMs?: number;
  /** Extra ssh options inserted before the destination, for tests of the host itself (e.g. ["-o", "SetEnv=FOO=bar"]). */
  extraSshArgs?: string[];
}

export interface RunRemoteResult {
  /** Remote exit status; 255 for SSH-level failure (e.g. host key mismatch); null if the client was killed. */
  code: number | null;
  stdout: string;
  stderr: string;
  aborted: boolean;
}

export async function runRemote(conn: RemoteConn, commandText: string, opts: RunRemoteOptions = {}): Promise<RunRemoteResult> {
  // Empty text would make ssh ask for a shell instead of an exec request.
  if (commandText === "") throw new Error("runRemote: empty command text");
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-sshrun-"));
  try {
    const knownHosts = path.join(dir, "known_hosts");
    const keyFile = path.join(dir, "id");
    const connected = path.join(dir, "connected");
    fs.writeFileSync(knownHosts, knownHostsLine(conn.host, conn.port, conn.hostKey));
    fs.writeFileSync(keyFile, conn.privateKey.endsWith("\n") ? conn.privateKey : conn.privateKey + "\n", { mode: 0o600 });

    const args = [
      ...pinnedSshOptions(knownHosts, 10),
      ...["IdentitiesOnly=yes", "IdentityAgent=none", "LogLevel=ERROR"].flatMap((o) => ["-o", o]),
      "-i",
      keyFile,
      "-p",
      String(conn.port),
    ];
    const abortAt = opts.abortAfterStdinBytes;
    if (abortAt !== undefined) {
      // LocalCommand runs once the connection is authenticated: our signal
      // that the stdin bytes can actually reach the remote command before the kill.
      args.push("-o", "PermitLocalCommand=yes", "-o", `LocalCommand=touch ${connected}`);
    }
    args.push(...(opts.extraSshArgs ?? []), "--", `${conn.user}@${conn.host}`, commandText);

    // No shell on the local side: the text is one argv element, sent verbatim.
    const child = spawn("ssh", args, { stdio: ["pipe", "pipe", "pipe"], env: { PATH: process.env.PATH ?? "/usr/bin:/bin", HOME: dir } });
    const out: Buffer[] = [];
    const err: Buffer[] = [];
    child.stdout.on("data", (d: Buffer) => out.push(d));
    child.stderr.on("data", (d: Buffer) => err.push(d));
    child.stdin.on("error", () => {}); // EPIPE if the remote side never reads

    let aborted = false;
    let timedOut = false;
    const exited = new Promise<number | null>((resolve, reject) => {
      child.once("error", reject);
      child.once("close", (code) => resolve(code));
    });
    const timer = setTimeout(() => {
      timedOut = true;
      child.kill("SIGKILL");
    }, opts.timeoutMs ?? 60_000);

    const input = Buffer.from(opts.stdin ?? "", "utf8");
    if (abortAt !== undefined) {
      child.stdin.write(input.subarray(0, abortAt));
      void (async () => {
        let alive = true;
        void exited.then(() => (alive = false));
        while (alive && !fs.existsSync(connected)) await new Promise((r) => setTimeout(r, 10));
        if (!alive) return; // connection failed on its own: report it as such
        await new Promise((r) => setTimeout(r, 300));
        if (alive) {
          aborted = true;
          child.kill("SIGKILL");
        }
      })();
    } else if (input.length > 0) {
      child.stdin.end(input);
    } else {
      child.stdin.end();
    }

    const code = await exited.finally(() => clearTimeout(timer));
    const stdout = Buffer.concat(out).toString("utf8");
    const stderr = Buffer.concat(err).toString("utf8");
    if (timedOut) throw new Error(`runRemote timed out after ${opts.timeoutMs ?? 60_000} ms\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    return { code, stdout, stderr, aborted };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
