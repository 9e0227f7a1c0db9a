// What ringtail really holds and uses, over SSH with the stack's pinned host key: the env file's
// value, whether the unit loads that file, and the running daemon's ZOT_CI_API_KEY. The remote
// script prints digests only; no key is on the command line, in the SSH environment or in output.
import { execFile } from "node:child_process";
import { createHash } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import type { NixosConfig } from "../../lib/config";
import { envFileLine } from "../../lib/registryKey";
import { shellCommand, shellWord } from "../../lib/remoteScript";
import { knownHostsLine, pinnedSshOptions } from "../../lib/openssh";

export interface RingtailFacts {
  /** Digest (16 hex) of the env file's value for envVar with its newline, "missing" when absent. */
  file: string;
  /** The unit's EnvironmentFiles include the env file. */
  loads: boolean;
  /** Digest of envVar in the main process's environment (with its NUL), "missing", or "not running". */
  daemon: string;
  pid: number;
}

const short = (text: string) => createHash("sha256").update(text, "utf8").digest("hex").slice(0, 16);
/** What `file` is for a key: the value part of the line the writer puts there. */
export const fileDigestFor = (envVar: string, key: string) => short(envFileLine(envVar, key).slice(envVar.length + 1));
/** What `daemon` is for a key. */
export const daemonDigestFor = (key: string) => short(`${key}\0`);

function probeScript(cfg: NixosConfig, envVar: string): string {
  const f = shellWord(cfg.envFile);
  const u = shellWord(cfg.unit);
  const v = shellWord(envVar);
  return shellCommand(
    `runner-secrets verify: digests of ${envVar} in ${cfg.envFile} and in the process of ${cfg.unit} (no key is printed)`,
    [
      "set -u",
      `if sudo -n test -f ${f}; then`,
      `  echo "file=$(sudo -n sed -n "s/^"${v}"=//p" ${f} | sha256sum | cut -c1-16)"`,
      "else echo file=missing; fi",
      `if systemctl show -p EnvironmentFiles --value ${u} | grep -qF ${f}; then echo loads=yes; else echo loads=no; fi`,
      `pid="$(systemctl show -p MainPID --value ${u})"`,
      'echo "pid=${pid:-0}"',
      'if [ "${pid:-0}" -gt 0 ] && sudo -n test -r "/proc/$pid/environ"; then',
      `  if sudo -n grep -qz "^"${v}"=" "/proc/$pid/environ"; then`,
      `    echo "daemon=$(sudo -n sed -z -n "s/^"${v}"=//p" "/proc/$pid/environ" | sha256sum | cut -c1-16)"`,
      "  else echo daemon=missing; fi",
      'else echo "daemon=not running"; fi',
    ].join("\n"),
  );
}

/** Runs the probe over OpenSSH with only the pinned host key trusted. */
export async function probeRingtail(cfg: NixosConfig, envVar: string, sshPrivateKey: string | undefined): Promise<RingtailFacts> {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-verify-"));
  try {
    const known = path.join(dir, "known_hosts");
    fs.writeFileSync(known, knownHostsLine(cfg.host, cfg.port, cfg.hostKey), { mode: 0o600 });
    const auth: string[] = [];
    const env: NodeJS.ProcessEnv = { PATH: process.env.PATH, HOME: process.env.HOME };
    if (sshPrivateKey) {
      const keyFile = path.join(dir, "id");
      fs.writeFileSync(keyFile, sshPrivateKey.endsWith("\n") ? sshPrivateKey : `${sshPrivateKey}\n`, { mode: 0o600 });
      auth.push("-o", "IdentitiesOnly=yes", "-i", keyFile);
    } else {
      env.SSH_AUTH_SOCK = cfg.agentSocketPath ?? process.env.SSH_AUTH_SOCK ?? "";
    }
    const args = [
      ...pinnedSshOptions(known, 15),
      ...auth,
      "-p",
      String(cfg.port),
      "-l",
      cfg.user,
      "--",
      cfg.host,
      probeScript(cfg, envVar),
    ];
    const out = await new Promise<string>((resolve, reject) =>
      execFile("ssh", args, { env, encoding: "utf8", timeout: 60_000 }, (err, stdout, stderr) => {
        if (err) reject(new Error(`ssh ${cfg.user}@${cfg.host}:${cfg.port}: ${stderr.trim().split("\n").pop() || err.message}`));
        else resolve(stdout);
      }),
    );
    const facts = Object.fromEntries(
      out
        .split("\n")
        .filter((l) => l.includes("="))
        .map((l) => [l.slice(0, l.indexOf("=")), l.slice(l.indexOf("=") + 1)]),
    );
    if (facts.file === undefined || facts.daemon === undefined) throw new Error(`ssh ${cfg.host}: unexpected probe output`);
    return { file: facts.file, loads: facts.loads === "yes", daemon: facts.daemon, pid: Number(facts.pid ?? 0) };
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
