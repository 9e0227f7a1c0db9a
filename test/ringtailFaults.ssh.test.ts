// The ringtail stack against a real SSH host when things go wrong: a cut connection mid-write, a
// failing nixos-rebuild or restart, sudo that wants a password, a wrong host key, bad config; and
// the key's whereabouts (never in argv/environ, output or error text) throughout.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { parseConfig } from "../components/config";
import { envFileContent, writeScript } from "../components/nixos";
import { Engine, summary } from "./support/engine";
import { watchProcesses } from "./support/procWatch";
import { runStack, stackConfig } from "./support/mockStack";
import type { SshHost } from "./support/sshHost";
import { runRemote, type RemoteConn } from "./support/sshRun";
import {
  ENV_VAR,
  REBUILD,
  REBUILD_CALL,
  RESTART,
  RESTART_CALL,
  WRITER,
  calls,
  freshKey,
  gone,
  mode,
  owner,
  pathsFor,
  ringtailStack,
  startHost,
  up,
  watched,
  type Paths,
} from "./support/ringtailRig";

let host: SshHost;
before(async () => {
  host = await startHost();
});
after(async () => {
  await host?.stop();
});
beforeEach(() => host.standins.reset());

const conn = (user: string): RemoteConn => ({ host: host.host, port: host.port, user, hostKey: host.hostKey, privateKey: host.clientPrivateKey });

function assertHolds(p: Paths, key: string): void {
  assert.equal(fs.readFileSync(p.file, "utf8"), envFileContent(ENV_VAR, key));
  assert.equal(mode(p.file), "0600");
  assert.equal(owner(p.file), "0:0");
}

/** The validated nixos settings of the ringtail stack pointed at the test host, as the program gets them. */
function nixosConfig(p: Paths) {
  const raw = stackConfig("ringtail", {
    "runner-secrets:nixos": { host: host.host, port: host.port, user: host.users.fish, hostKey: host.hostKey, envFile: p.file },
  });
  return parseConfig(Object.fromEntries(Object.entries(raw).map(([k, v]) => [k, typeof v === "string" ? v : JSON.stringify(v)]))).nixos!;
}

/** Cut the writer's connection once this much of the new file went out: in the middle of the key. */
const midKey = (key: string) => envFileContent(ENV_VAR, key).indexOf(key) + Math.floor(key.length / 2);

describe("the connection dies in the middle of the write", () => {
  it("during a rotation: the old file is intact, the step fails, the next up installs the new key", async (t) => {
    const p = pathsFor(host, "cut-rotation");
    const engine = new Engine();
    const key1 = freshKey();
    const key2 = freshKey();
    assert.equal((await up(host, engine, p, { key: key1 })).error, undefined);
    host.standins.reset();

    const cut = await up(host, engine, p, { key: key2 }, {
      remoteOptions: (s) => (s.name === WRITER ? { abortAfterStdinBytes: midKey(key2) } : undefined),
    });
    assert.deepEqual(summary(cut), [`update ${WRITER} (failed)`]);
    assert.ok(cut.runs[0]!.result.aborted, "the connection was really cut");
    assert.match(cut.error!.message, /update of command:remote:Command zot-ci-env-file failed: ssh: connection lost/);
    assertHolds(p, key1);
    assert.deepEqual(calls(host), [], "nothing after the failed write ran");

    // What is left of the temp file: either nothing (the writer's EXIT trap ran) or a root-only
    // file in the root-only dir, which the next run removes. Which one it is, is printed.
    const trapCleaned = await gone(p.tmp, 1000);
    if (!trapCleaned) {
      assert.equal(mode(p.tmp), "0600");
      assert.equal(owner(p.tmp), "0:0");
      assert.equal(mode(p.dir), "0700");
    }
    t.diagnostic(`cut mid-write: temp file ${trapCleaned ? "removed by the writer's trap" : "left (0600 root) until the next run"}`);

    const retry = await up(host, engine, p, { key: key2 });
    assert.equal(retry.error, undefined, retry.error?.message);
    assert.deepEqual(summary(retry), [`update ${WRITER}`, `replace ${RESTART}`, `delete-replaced ${RESTART}`]);
    assertHolds(p, key2);
    assert.equal(fs.existsSync(p.tmp), false, "the next run leaves no temp file");
    assert.deepEqual(calls(host), [RESTART_CALL]);
  });

  it("during the first up: no env file appears, the next up creates everything", async () => {
    const p = pathsFor(host, "cut-first");
    const engine = new Engine();
    const key = freshKey();
    const cut = await up(host, engine, p, { key }, {
      remoteOptions: (s) => (s.name === WRITER ? { abortAfterStdinBytes: midKey(key) } : undefined),
    });
    assert.deepEqual(summary(cut), [`create ${WRITER} (failed)`]);
    assert.equal(fs.existsSync(p.file), false);
    assert.equal(engine.state().size, 0, "a failed create is not saved");

    const retry = await up(host, engine, p, { key });
    assert.equal(retry.error, undefined, retry.error?.message);
    assert.deepEqual(summary(retry), [`create ${WRITER}`, `create ${REBUILD}`, `create ${RESTART}`]);
    assertHolds(p, key);
    assert.deepEqual(fs.readdirSync(p.dir), ["zot-api-key.env"]);
    assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL]);
  });

  it("leaves no temp file behind by itself (the trap must survive SIGPIPE)", async () => {
    const p = pathsFor(host, "cut-no-tmp");
    const key = freshKey();
    const run = await ringtailStack(host, p, { key });
    const writer = run.resources.find((r) => r.name === WRITER)!;
    const r = await runRemote(conn(host.users.fish), writer.inputs.create as string, {
      stdin: envFileContent(ENV_VAR, key),
      abortAfterStdinBytes: midKey(key),
    });
    assert.ok(r.aborted);
    assert.ok(await gone(p.tmp, 1000), "the temp file is still there after the cut connection");
  });

  it("the proposed fix (trap \"\" PIPE in the writer) removes the temp file at once", async () => {
    const p = pathsFor(host, "cut-fixed");
    const key = freshKey();
    const script = writeScript(nixosConfig(p), ENV_VAR);
    const fixed = script.includes('trap "" PIPE') ? script : script.replace('trap "exit 129" HUP', 'trap "" PIPE\ntrap "exit 129" HUP');
    assert.ok(fixed.includes('trap "" PIPE'));
    const watch = watchProcesses(key, 5);
    const r = await runRemote(conn(host.users.fish), fixed, { stdin: envFileContent(ENV_VAR, key), abortAfterStdinBytes: midKey(key) });
    assert.deepEqual(await watch.stop(), []);
    assert.ok(r.aborted);
    assert.ok(await gone(p.tmp, 3000), "with SIGPIPE ignored the EXIT trap removes the temp file");
    assert.equal(fs.existsSync(p.file), false);
  });
});

describe("nixos-rebuild fails", () => {
  it("the error names the step and shows the tail of its output; the file was written; the next up retries rebuild and restart", async () => {
    const p = pathsFor(host, "rebuild-fails");
    const engine = new Engine();
    const key = freshKey();
    host.standins.setFailure("nixos-rebuild", { exitCode: 1 }); // 100 lines of output, "error:" last
    const r = await up(host, engine, p, { key });
    assert.deepEqual(summary(r), [`create ${WRITER}`, `create ${REBUILD} (failed)`]);
    const msg = r.error!.message;
    assert.match(msg, /create of command:remote:Command zot-ci-nixos-rebuild failed: Process exited with status 1/);
    assert.match(msg, /runner-secrets: step nixos-rebuild failed \(exit 1\): sudo -n nixos-rebuild switch --flake \/etc\/blumeops\/nixos\/ringtail#ringtail/);
    assert.match(msg, /error: nixos-rebuild stand-in failed with exit code 1 \(line 100\)/);
    assert.match(msg, /stand-in line 61\)/);
    assert.doesNotMatch(msg, /stand-in line 60\)/, "only the tail (last 40 lines) is shown");
    assertHolds(p, key);
    assert.deepEqual(calls(host), [REBUILD_CALL], "the restart did not run");
    assert.deepEqual([...engine.state().keys()], [WRITER]);

    host.standins.reset();
    const retry = await up(host, engine, p, { key });
    assert.equal(retry.error, undefined, retry.error?.message);
    assert.deepEqual(summary(retry), [`create ${REBUILD}`, `create ${RESTART}`]);
    assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL]);
  });

  it("a failing restart during a rotation: the new key is on disk, the next up retries only the restart", async () => {
    const p = pathsFor(host, "restart-fails");
    const engine = new Engine();
    const key1 = freshKey();
    const key2 = freshKey();
    assert.equal((await up(host, engine, p, { key: key1 })).error, undefined);
    host.standins.reset();
    host.standins.setFailure("systemctl", { exitCode: 5, output: "Failed to restart unit: Unit not found.\n" });
    const r = await up(host, engine, p, { key: key2 });
    assert.deepEqual(summary(r), [`update ${WRITER}`, `replace ${RESTART} (failed)`]);
    assert.match(r.error!.message, /step restart failed \(exit 5\)[^\n]*\n.*Failed to restart unit: Unit not found/s);
    assertHolds(p, key2);
    host.standins.reset();
    const retry = await up(host, engine, p, { key: key2 });
    assert.equal(retry.error, undefined, retry.error?.message);
    assert.deepEqual(summary(retry), [`replace ${RESTART}`, `delete-replaced ${RESTART}`]);
    assert.deepEqual(calls(host), [RESTART_CALL]);
  });
});

describe("sudo needs a password", () => {
  it("fails the first step with an error saying so, before touching anything", async () => {
    const p = pathsFor(host, "needpw");
    const engine = new Engine();
    const key = freshKey();
    const r = await up(host, engine, p, { user: host.users.needPassword, key });
    assert.deepEqual(summary(r), [`create ${WRITER} (failed)`]);
    assert.match(r.error!.message, /Process exited with status 3/);
    assert.match(r.error!.message, /runner-secrets: passwordless sudo is required: sudo -n failed for user rs-needpw on \S+; give it a NOPASSWD sudoers rule/);
    assert.equal(fs.existsSync(path.dirname(path.dirname(p.dir))), false, "nothing was created on the host");
    assert.deepEqual(calls(host), []);
    assert.equal(engine.state().size, 0);
  });
});

describe("host key", () => {
  it("a wrong pinned host key (valid format, another key) makes the connection fail; nothing runs", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-otherkey-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path.join(dir, "k")]);
    const other = fs.readFileSync(path.join(dir, "k.pub"), "utf8").trim();
    fs.rmSync(dir, { recursive: true, force: true });
    const p = pathsFor(host, "wrong-hostkey");
    const engine = new Engine();
    const key = freshKey();
    const r = await up(host, engine, p, { key, nixos: { hostKey: other } });
    assert.deepEqual(summary(r), [`create ${WRITER} (failed)`]);
    assert.match(r.error!.message, /ssh: connection failed \(exit 255\)/);
    assert.match(r.error!.message, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    assert.equal(fs.existsSync(path.dirname(path.dirname(p.dir))), false);
    assert.deepEqual(calls(host), []);
  });

  it("the config demands a pinned host key (without it the provider would accept any)", async () => {
    const run = await runStack("ringtail", {
      config: { "runner-secrets:nixos": { hostKey: undefined }, "runner-secrets:registryCheck": { enabled: false } },
    });
    assert.match(run.error?.message ?? "", /runner-secrets:nixos\.hostKey: is required/);
    assert.equal(run.resources.length, 0);
  });

  it("without sshPrivateKey the connection carries no key (the provider then uses the SSH agent)", async () => {
    const p = pathsFor(host, "agent");
    const key = freshKey();
    const run = await ringtailStack(host, p, { key, agent: true });
    assert.equal(run.error, undefined);
    const noAgent = await new Engine().up(run);
    assert.match(noAgent.error!.message, /no privateKey and no SSH agent key/);
    const r = await watched(host, key, () => new Engine({ agentPrivateKey: host.clientPrivateKey }).up(run));
    assert.equal(r.error, undefined, r.error?.message);
    assertHolds(p, key);
  });
});

describe("leak checks are able to see a leak", () => {
  it("procWatch reports a key that is on a remote process's command line", async () => {
    const key = freshKey();
    const w = watchProcesses(key, 5);
    const r = await runRemote(conn(host.users.fish), `/bin/sh -c 'sleep 0.5' ${key}`);
    const hits = await w.stop();
    assert.equal(r.code, 0);
    assert.ok(hits.some((h) => h.includes("cmdline") && h.includes(key)), `no hit: ${hits}`);
  });
});

describe("bad input is refused before anything runs", () => {
  const nasty = (ok: string) => [`${ok} x`, `${ok}$(id)`, `${ok}\`id\``, `${ok}'x`, `${ok}"x`, `${ok}\nx`, `${ok};id`];
  const cases: [string, string, string[]][] = [
    ["runner-secrets:nixos", "host", [...nasty("ringtail"), "-oProxyCommand=id", ""]],
    ["runner-secrets:nixos", "user", [...nasty("eblume"), "-eblume"]],
    ["runner-secrets:nixos", "envFile", [...nasty("/etc/forgejo-runner/zot.env"), "etc/zot.env", "/etc/../zot.env", "/etc/forgejo runner/zot.env"]],
    ["runner-secrets:nixos", "unit", [...nasty("gitea-runner.service").map((v) => `${v}.service`), "a b.service", "gitea-runner"]],
    ["runner-secrets:nixos", "flake", [...nasty("/etc/blumeops/nixos/ringtail#ringtail"), "/etc/$(id)#ringtail", "/etc/`id`#ringtail", "/etc/a b#ringtail"]],
    ["runner-secrets:nixos", "owner", nasty("root")],
    ["runner-secrets:nixos", "group", nasty("root")],
    ["runner-secrets:nixos", "fileMode", ["0600;id", "0600 ", "$(id)"]],
    ["runner-secrets:nixos", "dirMode", ["0700`id`", "07 00"]],
    ["runner-secrets:nixos", "agentSocketPath", nasty("/run/user/1000/agent.sock")],
    ["runner-secrets:envVar", "", [...nasty("ZOT_CI_API_KEY"), "1ZOT", "ZOT-CI"]],
  ];
  const validBlob = "AAAAC3NzaC1lZDI1NTE5AAAAIKNsaWVudC10ZXN0LWhvc3Qta2V5LW5vdC1yZWFsISE";
  const badHostKeys = [
    "",
    "ssh-ed25519",
    "AAAAC3NzaC1lZDI1NTE5AAAAIKNsaWVudC10ZXN0LWhvc3Qta2V5LW5vdC1yZWFsISE",
    `ssh-ed25519 ${validBlob.slice(0, 12)}`,
    `ssh-rsa ${validBlob}`,
    `ssh-dss ${validBlob}`,
    `ssh-ed25519 AAAA$(id)`,
    `ssh-ed25519 ${validBlob}\nssh-ed25519 ${validBlob}`,
    `ringtail ssh-ed25519 ${validBlob}`,
  ];

  async function refused(config: Record<string, unknown>, fullKey: string, label: string): Promise<void> {
    const run = await runStack("ringtail", { config: { "runner-secrets:registryCheck": { enabled: false }, ...config }, key: freshKey() });
    assert.ok(run.error, `${label}: accepted`);
    assert.ok(run.error.message.includes(`${fullKey}:`), `${label}: the error does not name ${fullKey}: ${run.error.message}`);
    assert.equal(run.resources.length, 0, `${label}: resources were registered`);
    const r = await new Engine().up(run);
    assert.deepEqual(r.runs, [], `${label}: something ran`);
    assert.match(r.error?.message ?? "", /the program failed/);
  }

  for (const [ns, field, values] of cases) {
    const fullKey = field ? `${ns}.${field}` : ns;
    it(`${fullKey}: ${values.length} values with quotes, $( ), backticks, newlines, spaces, …`, async () => {
      for (const v of values) {
        const config = field ? { [ns]: { [field]: v } } : { [ns]: v };
        await refused(config, fullKey, `${fullKey}=${JSON.stringify(v)}`);
      }
    });
  }

  it(`runner-secrets:nixos.hostKey: ${badHostKeys.length} malformed host keys`, async () => {
    for (const v of badHostKeys) {
      await refused({ "runner-secrets:nixos": { hostKey: v } }, "runner-secrets:nixos.hostKey", `hostKey=${JSON.stringify(v)}`);
    }
  });
});

describe("the writer and its directory", () => {
  it(
    "does not chmod/chown a directory that already existed (an envFile directly in /etc would make /etc 0700)",
    async () => {
      const shared = path.posix.join(host.root, "shared-etc");
      fs.mkdirSync(shared, { mode: 0o755 });
      fs.chmodSync(shared, 0o755);
      fs.writeFileSync(path.join(shared, "passwd"), "x\n", { mode: 0o644 });
      const p: Paths = { dir: shared, file: path.posix.join(shared, "zot.env"), tmp: path.posix.join(shared, ".zot.env.runner-secrets-tmp") };
      const key = freshKey();
      const r = await up(host, new Engine(), p, { key });
      assert.equal(r.error, undefined, r.error?.message);
      assertHolds(p, key);
      assert.equal(mode(shared), "0755", "the existing directory's mode was changed");
    },
  );

  it("keeps an existing directory as it is and makes a missing one 0700 root:root", async () => {
    const key = freshKey();
    const shared = path.posix.join(host.root, "shared-etc-fixed");
    fs.mkdirSync(shared, { mode: 0o755 });
    fs.chmodSync(shared, 0o755);
    const inShared: Paths = { dir: shared, file: path.posix.join(shared, "zot.env"), tmp: path.posix.join(shared, ".zot.env.runner-secrets-tmp") };
    const fresh = pathsFor(host, "fresh-dir-fixed");
    for (const p of [inShared, fresh]) {
      const r = await runRemote(conn(host.users.fish), writeScript(nixosConfig(p), ENV_VAR), { stdin: envFileContent(ENV_VAR, key) });
      assert.equal(r.code, 0, r.stderr);
      assertHolds(p, key);
    }
    assert.equal(mode(shared), "0755");
    assert.equal(mode(fresh.dir), "0700");
    assert.equal(owner(fresh.dir), "0:0");
  });
});
