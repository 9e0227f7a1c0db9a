// Faults that need exact control of the connection, which no real provider gives: the writer's
// connection cut in the middle of the key (test/support/engine.ts applies the program's commands
// over OpenSSH and can abort after N bytes of stdin). Plus the writer script's directory handling
// and bad config under mocks. Failing steps, sudo, host keys and the agent run on the real engine
// in test/e2e/ringtailFaults.e2e.test.ts.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";

import { envFileContent, writeScript } from "../../components/nixos";
import { Engine, summary } from "../support/engine";
import { watchProcesses } from "../support/procWatch";
import { runStack } from "../support/mockStack";
import type { SshHost } from "../support/sshHost";
import { runRemote, type RemoteConn } from "../support/sshRun";
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
  nixosConfig as rigNixosConfig,
  owner,
  pathsFor,
  ringtailStack,
  startHost,
  up,
  type Paths,
} from "../support/ringtailRig";

let host: SshHost;
before(async () => {
  host = await startHost();
});
after(async () => {
  await host?.stop();
});
beforeEach(() => host.standins.reset());

const conn = (user: string): RemoteConn => ({
  host: host.host,
  port: host.port,
  user,
  hostKey: host.hostKey,
  privateKey: host.clientPrivateKey,
});

function assertHolds(p: Paths, key: string): void {
  assert.equal(fs.readFileSync(p.file, "utf8"), envFileContent(ENV_VAR, key));
  assert.equal(mode(p.file), "0600");
  assert.equal(owner(p.file), "0:0");
}

const nixosConfig = (p: Paths) => rigNixosConfig(host, p);

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

    const cut = await up(
      host,
      engine,
      p,
      { key: key2 },
      {
        remoteOptions: (s) => (s.name === WRITER ? { abortAfterStdinBytes: midKey(key2) } : undefined),
      },
    );
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
    const cut = await up(
      host,
      engine,
      p,
      { key },
      {
        remoteOptions: (s) => (s.name === WRITER ? { abortAfterStdinBytes: midKey(key) } : undefined),
      },
    );
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

  it('the proposed fix (trap "" PIPE in the writer) removes the temp file at once', async () => {
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

describe("host key", () => {
  it("the config demands a pinned host key (without it the provider would accept any)", async () => {
    const run = await runStack("ringtail", {
      config: { "runner-secrets:nixos": { hostKey: undefined }, "runner-secrets:registryCheck": { enabled: false } },
    });
    assert.match(run.error?.message ?? "", /runner-secrets:nixos\.hostKey: is required/);
    assert.equal(run.resources.length, 0);
  });
});

describe("leak checks are able to see a leak", () => {
  it("procWatch reports a key that is on a remote process's command line", async () => {
    const key = freshKey();
    const w = watchProcesses(key, 5);
    const r = await runRemote(conn(host.users.fish), `/bin/sh -c 'sleep 0.5' ${key}`);
    const hits = await w.stop();
    assert.equal(r.code, 0);
    assert.ok(
      hits.some((h) => h.includes("cmdline") && h.includes(key)),
      `no hit: ${hits}`,
    );
  });
});

describe("bad input is refused before anything runs", () => {
  const nasty = (ok: string) => [`${ok} x`, `${ok}$(id)`, `${ok}\`id\``, `${ok}'x`, `${ok}"x`, `${ok}\nx`, `${ok};id`];
  const cases: [string, string, string[]][] = [
    ["runner-secrets:nixos", "host", [...nasty("ringtail"), "-oProxyCommand=id", ""]],
    ["runner-secrets:nixos", "user", [...nasty("eblume"), "-eblume"]],
    [
      "runner-secrets:nixos",
      "envFile",
      [...nasty("/etc/forgejo-runner/zot.env"), "etc/zot.env", "/etc/../zot.env", "/etc/forgejo runner/zot.env"],
    ],
    ["runner-secrets:nixos", "unit", [...nasty("gitea-runner.service").map((v) => `${v}.service`), "a b.service", "gitea-runner"]],
    [
      "runner-secrets:nixos",
      "flake",
      [...nasty("/etc/blumeops/nixos/ringtail#ringtail"), "/etc/$(id)#ringtail", "/etc/`id`#ringtail", "/etc/a b#ringtail"],
    ],
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
  it("keeps an existing directory as it is and makes a missing one 0700 root:root", async () => {
    const key = freshKey();
    const shared = path.posix.join(host.root, "shared-etc-fixed");
    fs.mkdirSync(shared, { mode: 0o755 });
    fs.chmodSync(shared, 0o755);
    const inShared: Paths = {
      dir: shared,
      file: path.posix.join(shared, "zot.env"),
      tmp: path.posix.join(shared, ".zot.env.runner-secrets-tmp"),
    };
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
