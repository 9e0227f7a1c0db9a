// A real SSH test host on 127.0.0.1, standing in for ringtail.
//
// What is real: OpenSSH's sshd (own config, own host key, own port), real
// system users whose passwd login shells are fish / bash / zsh / dash (sshd
// runs `<shell> -c <text>` exactly as on ringtail), and real sudo with a
// sudoers drop-in. What is fake: `nixos-rebuild` and `systemctl`, which are
// small recording stand-ins found first on PATH, both for plain calls and
// under `sudo` (via secure_path).
//
// Needs root and test/setup/ssh-host.sh to have run (it installs the
// packages). Users, the sudoers drop-in and the stand-in scripts are
// machine-wide and shared by every instance (created under a lock, left in
// place on stop); everything per instance lives in a temp state dir that the
// stand-ins find through RS_TEST_STATE, which this sshd sets (SetEnv) and sudo
// keeps (env_keep), so concurrent instances do not see each other's calls.

import { execFileSync, spawn, type ChildProcess } from "node:child_process";
import * as fs from "node:fs";
import * as net from "node:net";
import * as os from "node:os";
import * as path from "node:path";

import type { RemoteConn } from "./sshRun";

export type StandinName = "nixos-rebuild" | "systemctl";

export interface StandinCall {
  name: StandinName;
  /** Arguments after the command name, exactly as the stand-in received them. */
  argv: string[];
  /** Effective uid of the stand-in process (0 when run through sudo). */
  uid: number;
  /** Wall-clock time of the call in ns since the Unix epoch (as a double: ~256 ns resolution). */
  time: number;
  /** SHA-256 (hex) of the watched env file at the call (Standins.watchEnvFile), "missing", or "" when none is watched. */
  envFile: string;
}

export interface FailureSpec {
  exitCode: number;
  /**
   * Written to the stand-in's stderr (where nixos-rebuild writes its build
   * log) before it exits. Omitted: 100 lines of fake build output ending in an
   * `error:` line. "" for no output.
   */
  output?: string;
}

export interface Standins {
  /** Make every later call of `name` print `spec.output` and exit `spec.exitCode`; null: back to silent exit 0. */
  setFailure(name: StandinName, spec: FailureSpec | null): void;
  /** Make every later call of `name` sleep this long first (null: not at all). */
  setDelay(name: StandinName, seconds: number | null): void;
  /** Record in each call the SHA-256 of this file as it is at that moment (what a restarted unit reads). */
  watchEnvFile(file: string | null): void;
  /** All calls so far, in call order. */
  calls(): StandinCall[];
  /**
   * Makes the systemctl stand-in keep a unit with these EnvironmentFile= paths (null: none): its
   * restart then starts a main process with their variables, and `show` reports both.
   */
  defineUnit(envFiles: string[] | null): void;
  /** A restart that reports success but leaves the old main process running. */
  ignoreRestarts(on: boolean): void;
  /** The unit's main process id, 0 when none runs. */
  mainPid(): number;
  /** Forget recorded calls and clear all failures. */
  reset(): void;
}

export interface SshHost {
  host: "127.0.0.1";
  port: number;
  /** Public host key as pinned in the program's config: "ssh-ed25519 AAAA..." (no comment). */
  hostKey: string;
  /** Client private key (OpenSSH format) authorized for every test user. */
  clientPrivateKey: string;
  clientKeyPath: string;
  users: { fish: string; bash: string; zsh: string; dash: string; needPassword: string };
  standins: Standins;
  /** Empty root-owned dir (0755) tests may use as a fake filesystem root, e.g. `${root}/etc/forgejo-runner`. */
  root: string;
  /** The second port (SshHostOptions.secondPort), else undefined. */
  secondPort?: number;
  /** sshd's own log (-E). */
  sshdLog: string;
  /** Connection settings for runRemote as `user` (pinned hostKey, client key). */
  conn(user: string): RemoteConn;
  stop(): Promise<void>;
}

export interface SshHostOptions {
  /** Keep the state dir on stop (for debugging). Default false. */
  keepState?: boolean;
  /** Also listen on a second port (the same sshd: "the same host on another port"). */
  secondPort?: boolean;
  /** sshd's LogLevel; VERBOSE logs one "Starting session" line per exec request. Default ERROR. */
  logLevel?: "ERROR" | "INFO" | "VERBOSE";
}

const USERS = {
  fish: { name: "rs-fish", shell: "/usr/bin/fish" },
  bash: { name: "rs-bash", shell: "/bin/bash" },
  zsh: { name: "rs-zsh", shell: "/usr/bin/zsh" },
  dash: { name: "rs-dash", shell: "/bin/dash" },
  needPassword: { name: "rs-needpw", shell: "/bin/bash" },
} as const;

/** Machine-wide, root-owned dir of stand-ins; first on PATH (sshd SetEnv) and on sudo's secure_path. */
const STANDIN_BIN = "/usr/local/lib/runner-secrets-test/bin";
const STD_PATH = "/usr/local/bin:/usr/bin:/bin";
const SUDO_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";
const SUDOERS_FILE = "/etc/sudoers.d/runner-secrets-test";
const LOCK_FILE = "/run/lock/runner-secrets-test-sshhost.lock";
const STANDIN_NAMES: StandinName[] = ["nixos-rebuild", "systemctl"];

// The stand-in (POSIX sh, so it runs the same as root or as a user). Each
// argument is logged hex-encoded so any bytes (quotes, newlines) survive the
// JSON line without a JSON encoder in shell; one printf = one O_APPEND write.
function standinScript(name: StandinName): string {
  return `#!/bin/sh
# Test stand-in for ${name} (runner-secrets test/support/sshHost.ts).
# Records the call, then exits 0 or as configured by the test.
d="\${RS_TEST_STATE:-}/standins"
if [ -z "\${RS_TEST_STATE:-}" ] || [ ! -d "$d" ]; then
  echo "${name} (test stand-in): RS_TEST_STATE is not set or has no standins dir" >&2
  exit 127
fi
args=""
for a in "$@"; do
  args="$args\${args:+,}\\"$(printf '%s' "$a" | od -An -v -tx1 | tr -d ' \\n')\\""
done
# What the unit would read at this moment (the env file a test watches): its SHA-256, or "missing".
seen=""
if [ -f "$d/watched-env-file" ]; then
  f="$(cat "$d/watched-env-file")"
  if [ -f "$f" ]; then seen="$(sha256sum <"$f" | cut -c1-64)"; else seen=missing; fi
fi
printf '{"name":"${name}","argvHex":[%s],"uid":%s,"time":%s,"envFile":"%s"}\\n' "$args" "$(id -u)" "$(date +%s%N)" "$seen" >>"$d/calls.log"
if [ -f "$d/${name}.sleep" ]; then sleep "$(cat "$d/${name}.sleep")"; fi
if [ -f "$d/${name}.exit" ]; then
  if [ -f "$d/${name}.out" ]; then cat "$d/${name}.out" >&2; fi
  exit "$(cat "$d/${name}.exit")"
fi
${name === "systemctl" ? SYSTEMD_UNIT : ""}exit 0
`;
}

// With a unit defined (Standins.defineUnit), the systemctl stand-in also plays systemd's part for
// it: \`restart\` starts a main process whose environment is what the unit's EnvironmentFile=
// lines load (the files are sourced by sh, which reads NAME=value and NAME='value' as systemd
// does), and \`show -p EnvironmentFiles|MainPID --value\` reports them as systemd formats them.
const SYSTEMD_UNIT = `if [ -f "$d/unit-env-files" ]; then
  case "$1" in
  restart)
    if [ -f "$d/unit-restart-ignored" ]; then exit 0; fi
    if [ -f "$d/mainpid" ]; then kill "$(cat "$d/mainpid")" 2>/dev/null || true; fi
    setsid sh -c 'set -a; while read -r f; do [ -f "$f" ] && . "$f"; done <"$1"; exec sleep 86400' sh "$d/unit-env-files" </dev/null >/dev/null 2>&1 &
    echo "$!" >"$d/mainpid"
    exit 0 ;;
  show)
    case "$3" in
    EnvironmentFiles) while read -r f; do echo "$f (ignore_errors=no)"; done <"$d/unit-env-files" ;;
    MainPID) pid="$(cat "$d/mainpid" 2>/dev/null || echo 0)"; if [ "$pid" -gt 0 ] && [ -d "/proc/$pid" ]; then echo "$pid"; else echo 0; fi ;;
    esac
    exit 0 ;;
  esac
fi
`;

function sudoers(): string {
  const all = Object.values(USERS).map((u) => u.name);
  const nopw = all.filter((u) => u !== USERS.needPassword.name);
  return `# runner-secrets SSH test host (test/support/sshHost.ts). Test users only.
User_Alias RS_TEST_ALL = ${all.join(", ")}
User_Alias RS_TEST_NOPW = ${nopw.join(", ")}
User_Alias RS_TEST_PW = ${USERS.needPassword.name}
# Stand-ins first, so 'sudo -n nixos-rebuild' / 'sudo -n systemctl' hit them.
Defaults:RS_TEST_ALL secure_path="${STANDIN_BIN}:${SUDO_PATH}"
# Lets the stand-ins find their per-instance state under sudo.
Defaults:RS_TEST_ALL env_keep += "RS_TEST_STATE"
RS_TEST_NOPW ALL=(ALL:ALL) NOPASSWD: ALL
RS_TEST_PW ALL=(ALL:ALL) ALL
`;
}

// Machine-wide provisioning, run under flock so parallel test files don't
// race useradd. Idempotent: existing users get their shell reset.
// Password '*': no password can match (so rs-needpw's sudo can never be
// satisfied) but the account is not "locked" ('!'), which sshd with
// UsePAM=no would refuse even for key logins.
const PROVISION = `set -euo pipefail
users_file=$1 sudoers_src=$2 standin_src=$3
while read -r user shell; do
  if id -u "$user" >/dev/null 2>&1; then
    usermod -s "$shell" "$user"
  elif getent group "$user" >/dev/null; then
    useradd -m -g "$user" -s "$shell" "$user"  # group left over from an earlier userdel
  else
    useradd -m -U -s "$shell" "$user"
  fi
  usermod -p '*' "$user"
done <"$users_file"
visudo -cqf "$sudoers_src"
install -m 0440 -o root -g root "$sudoers_src" ${SUDOERS_FILE}.tmp
mv -f ${SUDOERS_FILE}.tmp ${SUDOERS_FILE}
install -d -m 0755 -o root -g root ${STANDIN_BIN}
for f in "$standin_src"/*; do
  install -m 0755 -o root -g root "$f" "${STANDIN_BIN}/.$(basename "$f").tmp"
  mv -f "${STANDIN_BIN}/.$(basename "$f").tmp" "${STANDIN_BIN}/$(basename "$f")"
done
`;

function provision(state: string): void {
  const src = path.join(state, "provision");
  fs.mkdirSync(path.join(src, "standins"), { recursive: true });
  fs.writeFileSync(
    path.join(src, "users"),
    Object.values(USERS)
      .map((u) => `${u.name} ${u.shell}\n`)
      .join(""),
  );
  fs.writeFileSync(path.join(src, "sudoers"), sudoers());
  for (const n of STANDIN_NAMES) fs.writeFileSync(path.join(src, "standins", n), standinScript(n));
  fs.mkdirSync(path.dirname(LOCK_FILE), { recursive: true });
  execFileSync(
    "flock",
    [LOCK_FILE, "bash", "-c", PROVISION, "provision", path.join(src, "users"), path.join(src, "sudoers"), path.join(src, "standins")],
    { stdio: ["ignore", "ignore", "pipe"] },
  );
  fs.rmSync(src, { recursive: true, force: true });
}

function keygen(file: string): void {
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", file], { stdio: "ignore" });
}

function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.once("error", reject);
    srv.listen(0, "127.0.0.1", () => {
      const addr = srv.address();
      const port = typeof addr === "object" && addr ? addr.port : 0;
      srv.close(() => resolve(port));
    });
  });
}

/** Resolves true once something on the port answers with an SSH banner. */
function sshBanner(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const sock = net.connect(port, "127.0.0.1");
    let buf = "";
    const done = (ok: boolean) => {
      sock.destroy();
      resolve(ok);
    };
    sock.setTimeout(1000, () => done(false));
    sock.on("data", (d) => {
      buf += d.toString("latin1");
      if (buf.includes("\n")) done(buf.startsWith("SSH-2.0-"));
    });
    sock.on("error", () => done(false));
    sock.on("close", () => done(false));
  });
}

const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

function sshdConfig(state: string, ports: number[], logLevel: string): string {
  const userNames = Object.values(USERS).map((u) => u.name);
  return `# Own config: no Include of /etc/ssh/sshd_config.d, so nothing else leaks in.
ListenAddress 127.0.0.1
${ports.map((p) => `Port ${p}`).join("\n")}
HostKey ${state}/ssh_host_ed25519_key
PidFile ${state}/sshd.pid
AuthorizedKeysFile ${state}/authorized_keys
AllowUsers ${userNames.join(" ")}
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin no
# No PAM: the session environment is exactly sshd's own (below) plus nothing
# from /etc/environment. sudo uses PAM on its own; it does not need sshd's.
UsePAM no
# The state dir is under world-writable /tmp, which StrictModes rejects.
StrictModes no
# AcceptEnv deliberately unset: env sent by a client is dropped, as by a default sshd.
PermitUserEnvironment no
SetEnv PATH=${STANDIN_BIN}:${STD_PATH} RS_TEST_STATE=${state}
PrintMotd no
PrintLastLog no
X11Forwarding no
LogLevel ${logLevel}
`;
}

export async function startSshHost(opts: SshHostOptions = {}): Promise<SshHost> {
  if (process.getuid?.() !== 0) throw new Error("startSshHost needs root (it creates system users and a sudoers drop-in)");
  if (!fs.existsSync("/usr/sbin/sshd")) throw new Error("sshd missing: run test/setup/ssh-host.sh first");

  // 0755: the test users (and sshd acting as them) must read authorized_keys
  // and the stand-in control files, and append to the stand-in log.
  const state = fs.mkdtempSync(path.join(os.tmpdir(), "rs-sshhost-"));
  fs.chmodSync(state, 0o755);
  const stopOnError = () => {
    if (!opts.keepState) fs.rmSync(state, { recursive: true, force: true });
  };
  try {
    provision(state);
    fs.mkdirSync("/run/sshd", { recursive: true, mode: 0o755 }); // privilege-separation dir

    keygen(path.join(state, "ssh_host_ed25519_key"));
    const hostKey = fs.readFileSync(path.join(state, "ssh_host_ed25519_key.pub"), "utf8").trim().split(/\s+/).slice(0, 2).join(" ");

    const clientDir = path.join(state, "client");
    fs.mkdirSync(clientDir, { mode: 0o700 });
    const clientKeyPath = path.join(clientDir, "id_ed25519");
    keygen(clientKeyPath);
    fs.copyFileSync(`${clientKeyPath}.pub`, path.join(state, "authorized_keys"));
    fs.chmodSync(path.join(state, "authorized_keys"), 0o644);

    const standinDir = path.join(state, "standins");
    fs.mkdirSync(standinDir, { mode: 0o755 });
    const logFile = path.join(standinDir, "calls.log");
    fs.writeFileSync(logFile, "");
    fs.chmodSync(logFile, 0o666); // appended to by users and by root (via sudo)

    const root = path.join(state, "root");
    fs.mkdirSync(root, { mode: 0o755 });

    const cfg = path.join(state, "sshd_config");
    const sshdLog = path.join(state, "sshd.log");
    let sshd: ChildProcess | undefined;
    let port = 0;
    let secondPort: number | undefined;
    // The free port can be taken between probing and sshd's bind: retry.
    for (let attempt = 0; attempt < 5 && !sshd; attempt++) {
      port = await freePort();
      secondPort = opts.secondPort ? await freePort() : undefined;
      const ports = secondPort === undefined ? [port] : [port, secondPort];
      fs.writeFileSync(cfg, sshdConfig(state, ports, opts.logLevel ?? "ERROR"));
      execFileSync("/usr/sbin/sshd", ["-t", "-f", cfg], { stdio: ["ignore", "ignore", "pipe"] });
      const child = spawn("/usr/sbin/sshd", ["-D", "-f", cfg, "-E", sshdLog], { stdio: "ignore" });
      let exited = false;
      child.once("exit", () => (exited = true));
      for (let i = 0; i < 100 && !exited; i++) {
        if ((await sshBanner(port)) && (secondPort === undefined || (await sshBanner(secondPort)))) {
          sshd = child;
          break;
        }
        await sleep(50);
      }
      if (!sshd && !exited) child.kill("SIGKILL");
    }
    if (!sshd) {
      const log = fs.existsSync(sshdLog) ? fs.readFileSync(sshdLog, "utf8") : "";
      throw new Error(`sshd did not start:\n${log}`);
    }
    const daemon = sshd;

    const standins: Standins = {
      setFailure(name, spec) {
        const exitFile = path.join(standinDir, `${name}.exit`);
        const outFile = path.join(standinDir, `${name}.out`);
        fs.rmSync(exitFile, { force: true });
        fs.rmSync(outFile, { force: true });
        if (spec === null) return;
        if (!Number.isInteger(spec.exitCode) || spec.exitCode < 0 || spec.exitCode > 255) throw new Error(`bad exitCode ${spec.exitCode}`);
        const output = spec.output ?? fakeBuildOutput(name, spec.exitCode);
        // Output first, exit code last: the exit file is what switches the stand-in over.
        fs.writeFileSync(outFile, output, { mode: 0o644 });
        fs.writeFileSync(exitFile, `${spec.exitCode}\n`, { mode: 0o644 });
      },
      setDelay(name, seconds) {
        const f = path.join(standinDir, `${name}.sleep`);
        if (seconds === null) fs.rmSync(f, { force: true });
        else fs.writeFileSync(f, `${seconds}\n`, { mode: 0o644 });
      },
      watchEnvFile(file) {
        const f = path.join(standinDir, "watched-env-file");
        if (file === null) fs.rmSync(f, { force: true });
        else fs.writeFileSync(f, file, { mode: 0o644 });
      },
      calls() {
        return fs
          .readFileSync(logFile, "utf8")
          .split("\n")
          .filter((l) => l !== "")
          .map((l) => {
            const r = JSON.parse(l) as { name: StandinName; argvHex: string[]; uid: number; time: number; envFile?: string };
            return {
              name: r.name,
              argv: r.argvHex.map((h) => Buffer.from(h, "hex").toString("utf8")),
              uid: r.uid,
              time: r.time,
              envFile: r.envFile ?? "",
            };
          });
      },
      defineUnit(envFiles) {
        const f = path.join(standinDir, "unit-env-files");
        if (envFiles === null) fs.rmSync(f, { force: true });
        else fs.writeFileSync(f, envFiles.map((x) => `${x}\n`).join(""), { mode: 0o644 });
      },
      ignoreRestarts(on) {
        const f = path.join(standinDir, "unit-restart-ignored");
        if (on) fs.writeFileSync(f, "", { mode: 0o644 });
        else fs.rmSync(f, { force: true });
      },
      mainPid() {
        const f = path.join(standinDir, "mainpid");
        const pid = fs.existsSync(f) ? Number(fs.readFileSync(f, "utf8").trim()) : 0;
        return pid > 0 && fs.existsSync(`/proc/${pid}`) ? pid : 0;
      },
      reset() {
        const pid = standins.mainPid();
        if (pid) process.kill(pid, "SIGTERM");
        standins.defineUnit(null);
        standins.ignoreRestarts(false);
        fs.truncateSync(logFile, 0);
        for (const n of STANDIN_NAMES) {
          standins.setFailure(n, null);
          standins.setDelay(n, null);
        }
        standins.watchEnvFile(null);
      },
    };

    const clientPrivateKey = fs.readFileSync(clientKeyPath, "utf8");
    let stopped = false;
    return {
      host: "127.0.0.1",
      port,
      secondPort,
      sshdLog,
      hostKey,
      clientPrivateKey,
      clientKeyPath,
      users: {
        fish: USERS.fish.name,
        bash: USERS.bash.name,
        zsh: USERS.zsh.name,
        dash: USERS.dash.name,
        needPassword: USERS.needPassword.name,
      },
      standins,
      root,
      conn: (user) => ({ host: "127.0.0.1", port, user, hostKey, privateKey: clientPrivateKey }),
      async stop() {
        if (stopped) return;
        stopped = true;
        const unitPid = standins.mainPid();
        if (unitPid) process.kill(unitPid, "SIGTERM");
        // Per-connection sshd processes are the listener's children; ending
        // them (by pid) ends sessions that a test left open.
        for (const pid of childPids(daemon.pid!)) {
          try {
            process.kill(pid, "SIGTERM");
          } catch {
            /* already gone */
          }
        }
        if (daemon.exitCode === null && daemon.signalCode === null) {
          const exited = new Promise((r) => daemon.once("exit", r));
          daemon.kill("SIGTERM");
          await Promise.race([exited, sleep(3000)]);
          if (daemon.exitCode === null && daemon.signalCode === null) daemon.kill("SIGKILL");
        }
        if (!opts.keepState) fs.rmSync(state, { recursive: true, force: true });
      },
    };
  } catch (e) {
    stopOnError();
    throw e;
  }
}

function childPids(ppid: number): number[] {
  const out: number[] = [];
  for (const d of fs.readdirSync("/proc")) {
    if (!/^\d+$/.test(d)) continue;
    try {
      // Field 4 of /proc/<pid>/stat, after the parenthesised comm (which may contain spaces).
      const stat = fs.readFileSync(`/proc/${d}/stat`, "utf8");
      const fields = stat.slice(stat.lastIndexOf(")") + 2).split(" ");
      if (Number(fields[1]) === ppid) out.push(Number(d));
    } catch {
      /* exited meanwhile */
    }
  }
  return out;
}

function fakeBuildOutput(name: StandinName, exitCode: number): string {
  const lines: string[] = [];
  for (let i = 1; i <= 99; i++) {
    lines.push(`building '/nix/store/${String(i).padStart(32, "0")}-fake-step-${i}.drv'... (${name} stand-in line ${i})`);
  }
  lines.push(`error: ${name} stand-in failed with exit code ${exitCode} (line 100)`);
  return lines.join("\n") + "\n";
}
