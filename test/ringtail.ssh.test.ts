// The ringtail stack's remote commands, run for real: the program's registrations (mock run of
// index.ts) are applied by test/support/engine.ts over SSH to a real sshd whose users log in with
// fish, bash, zsh and dash, with sudo and stand-ins for nixos-rebuild and systemctl.
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";

import { envFileContent } from "../components/nixos";
import { Engine, summary } from "./support/engine";
import { parseSystemdEnvFile, systemdGeneratorParse, watchFile } from "./support/envFile";
import { isSecretValue, plainParts, revealed } from "./support/mockStack";
import type { SshHost } from "./support/sshHost";
import {
  ENV_VAR,
  REBUILD,
  REBUILD_CALL,
  RESTART,
  RESTART_CALL,
  WRITER,
  calls,
  freshKey,
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

/** The file holds exactly `key` for ENV_VAR as systemd reads it, root-only, in a root-only dir. */
function assertKeyFile(p: Paths, key: string): void {
  const text = fs.readFileSync(p.file, "utf8");
  assert.equal(text, envFileContent(ENV_VAR, key));
  const parsed = parseSystemdEnvFile(text);
  assert.deepEqual(parsed.vars, { [ENV_VAR]: key });
  assert.deepEqual(parsed.ignored, []);
  // The environment.d generator expands $VARS after parsing (EnvironmentFile= does not).
  if (!key.includes("$")) assert.deepEqual(systemdGeneratorParse(text), { [ENV_VAR]: key }, "systemd's own parser reads it differently");
  assert.equal(mode(p.file), "0600");
  assert.equal(owner(p.file), "0:0");
  assert.equal(mode(p.dir), "0700");
  assert.equal(owner(p.dir), "0:0");
  assert.deepEqual(fs.readdirSync(p.dir), ["zot-api-key.env"], "nothing but the env file in its directory (no temp file)");
}

describe("the systemd env-file reader", () => {
  it("follows systemd's rules for comments, quotes and escapes", () => {
    const r = parseSystemdEnvFile(
      "# c\n; c2\n  # c3 \\\nSTILL_COMMENT=1\nA='x $y \"z\" \\n'\nB = \"q\\\"\\$\\a\"\nC=plain  \nbad-name=1\nnoequals\nD=\nA=last\n",
    );
    assert.deepEqual(r.vars, { B: 'q"$\\a', C: "plain", D: "", A: "last" });
    assert.deepEqual(r.ignored, ["bad-name"]);
    assert.deepEqual(parseSystemdEnvFile("K='v'")  .vars, { K: "v" }, "no trailing newline");
  });

  it("agrees with systemd's own parser on the file the program writes", () => {
    const key = freshKey();
    const bySystemd = systemdGeneratorParse(envFileContent(ENV_VAR, key));
    assert.ok(bySystemd, "systemd's environment generator is not installed (test/setup/ssh-host.sh installs it)");
    assert.deepEqual(bySystemd, { [ENV_VAR]: key });
    assert.deepEqual(parseSystemdEnvFile(envFileContent(ENV_VAR, key)).vars, bySystemd);
  });
});

for (const shell of ["fish", "bash", "zsh", "dash"] as const) {
  describe(`login shell ${shell}: up, rotation, no-op, destroy`, () => {
    const engine = new Engine();
    let p: Paths;
    const key1 = freshKey();
    const key2 = freshKey();
    const user = () => host.users[shell];

    it("first up writes the file (systemd reads exactly the key; 0600 root:root; dir 0700), rebuilds, then restarts", async () => {
      p = pathsFor(host, `shell-${shell}`);
      const r = await up(host, engine, p, { user: user(), key: key1 });
      assert.equal(r.error, undefined, r.error?.message);
      assert.deepEqual(summary(r), [`create ${WRITER}`, `create ${REBUILD}`, `create ${RESTART}`]);
      assertKeyFile(p, key1);
      const c = host.standins.calls();
      assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL]);
      assert.ok(c[0]!.time < c[1]!.time, "nixos-rebuild ran before the restart");
      assert.ok(c.every((x) => x.uid === 0), "both ran as root (through sudo)");
      assert.ok(r.runs.every((x) => x.command.startsWith("/bin/sh -c '")));
      assert.match(r.runs[0]!.result.stdout, /runner-secrets: wrote /);
    });

    it("rotation: in-place update of the file (never missing or partial), restart again, no rebuild", async () => {
      const watch = watchFile(p.file, [envFileContent(ENV_VAR, key1), envFileContent(ENV_VAR, key2)]);
      const r = await up(host, engine, p, { user: user(), key: key2 }).finally(() => undefined);
      const report = await watch.stop();
      assert.equal(r.error, undefined, r.error?.message);
      assert.deepEqual(summary(r), [`update ${WRITER}`, `replace ${RESTART}`, `delete-replaced ${RESTART}`]);
      assert.equal(r.steps.find((s) => s.op === "delete-replaced")!.ran, null, "the old restart has no delete command");
      assert.equal(r.runs.find((x) => x.name === WRITER)!.property, "update");
      assertKeyFile(p, key2);
      assert.deepEqual(calls(host), [RESTART_CALL], "restarted once; nixos-rebuild not re-run");
      assert.equal(report.missing, 0, "the file was missing during the rotation");
      assert.equal(report.other, 0, `the file was partial or foreign during the rotation: ${report.otherExamples}`);
      assert.ok(report.matched[0]! > 0 && report.matched[1]! > 0, `saw old then new (${JSON.stringify(report)})`);
      assert.ok(report.samples > 50, `enough samples (${report.samples})`);
      assert.deepEqual(report.siblings.filter((n) => n !== ".zot-api-key.env.runner-secrets-tmp"), [], "only the temp file appears beside it");
    });

    it("no-op: the same key registers identical inputs and the engine runs nothing", async () => {
      const a = await ringtailStack(host, p, { user: user(), key: key2 });
      const b = await ringtailStack(host, p, { user: user(), key: key2 });
      assert.deepEqual(revealed(a.resources.map((x) => x.inputs)), revealed(b.resources.map((x) => x.inputs)));
      const r = await watched(host, key2, () => engine.up(b));
      assert.deepEqual(r.steps, []);
      assert.deepEqual(r.runs, []);
      assert.deepEqual(calls(host), []);
      assertKeyFile(p, key2);
    });

    it("destroy removes the file (and its temp), restarts the unit, empties the state", async () => {
      const r = await watched(host, key2, () => engine.destroy());
      assert.equal(r.error, undefined, r.error?.message);
      assert.deepEqual(summary(r), [`delete ${RESTART}`, `delete ${REBUILD}`, `delete ${WRITER}`]);
      assert.deepEqual(r.runs.map((x) => `${x.property} ${x.name}`), [`delete ${WRITER}`]);
      assert.equal(fs.existsSync(p.file), false);
      assert.equal(fs.existsSync(p.tmp), false);
      assert.deepEqual(calls(host), [RESTART_CALL]);
      assert.equal(engine.state().size, 0);
    });
  });
}

describe("what the engine stores", () => {
  it("stdin (the file content) and the connection are secrets; no plain input holds the key", async () => {
    const key = freshKey();
    const run = await ringtailStack(host, pathsFor(host, "stored"), { key });
    const writer = run.resources.find((r) => r.name === WRITER)!;
    assert.ok(isSecretValue(writer.inputs.stdin));
    assert.ok(isSecretValue(writer.inputs.connection), "the connection (with the private key) is secret");
    assert.ok(!JSON.stringify(run.resources.map((r) => plainParts(r.inputs))).includes(key));
    assert.ok(!JSON.stringify(run.resources.map((r) => plainParts(r.inputs))).includes("PRIVATE KEY"));
  });
});

describe("re-running a create is harmless", () => {
  it("a second up from empty state (a lost or interrupted update) runs every create again and ends the same", async () => {
    const p = pathsFor(host, "rerun");
    const key = freshKey();
    const first = await up(host, new Engine(), p, { key });
    assert.equal(first.error, undefined, first.error?.message);
    const inode = fs.statSync(p.file).ino;
    host.standins.reset();
    const again = await up(host, new Engine(), p, { key });
    assert.equal(again.error, undefined, again.error?.message);
    assert.deepEqual(summary(again), [`create ${WRITER}`, `create ${REBUILD}`, `create ${RESTART}`]);
    assertKeyFile(p, key);
    assert.notEqual(fs.statSync(p.file).ino, inode, "the file was replaced by rename, not rewritten in place");
    assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL]);
  });

  it("the writer's create over a stale temp file (left by a killed run) still installs the file", async () => {
    const p = pathsFor(host, "stale-tmp");
    fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(p.tmp, "ZOT_CI_API_KEY='zak_half", { mode: 0o644 });
    const key = freshKey();
    const r = await up(host, new Engine(), p, { key });
    assert.equal(r.error, undefined, r.error?.message);
    assertKeyFile(p, key);
  });
});

describe("keys with characters a shell or an env-file reader would interpret", () => {
  it("are written quoted and read back exactly, by the fish user", async () => {
    for (const [i, key] of [`zak_${"$"}HOME"x#y z`, "zak_back`tick`\\slash;|&<>*?"].entries()) {
      const p = pathsFor(host, `odd-key-${i}`);
      const r = await up(host, new Engine(), p, { key, user: host.users.fish });
      assert.equal(r.error, undefined, r.error?.message);
      assertKeyFile(p, key);
    }
  });
});

describe("destroy with nixos.keepOnDestroy", () => {
  it("keeps the file and still restarts the unit", async () => {
    const p = pathsFor(host, "keep");
    const key = freshKey();
    const engine = new Engine();
    assert.equal((await up(host, engine, p, { key, nixos: { keepOnDestroy: true } })).error, undefined);
    host.standins.reset();
    const r = await watched(host, key, () => engine.destroy());
    assert.equal(r.error, undefined, r.error?.message);
    assertKeyFile(p, key);
    assert.match(r.runs[0]!.result.stdout, /keeping .*keepOnDestroy/);
    assert.deepEqual(calls(host), [RESTART_CALL]);
  });
});

describe("moving the env file (a trigger of the writer)", () => {
  it("replaces create-before-delete: new file first, rebuild and restart again, then the old file is removed", async () => {
    const old = pathsFor(host, "move");
    const moved = pathsFor(host, "move", "zot-moved.env");
    const key = freshKey();
    const engine = new Engine();
    assert.equal((await up(host, engine, old, { key })).error, undefined);
    host.standins.reset();
    const r = await up(host, engine, moved, { key });
    assert.equal(r.error, undefined, r.error?.message);
    assert.deepEqual(summary(r), [
      `replace ${WRITER}`,
      `replace ${REBUILD}`,
      `replace ${RESTART}`,
      `delete-replaced ${RESTART}`,
      `delete-replaced ${REBUILD}`,
      `delete-replaced ${WRITER}`,
    ]);
    assert.equal(fs.existsSync(old.file), false, "the old file is removed by the old writer's delete");
    assert.equal(fs.readFileSync(moved.file, "utf8"), envFileContent(ENV_VAR, key));
    assert.equal(mode(moved.file), "0600");
    assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL, RESTART_CALL], "rebuild, restart, then the old delete's restart");
  });

  it("when nixos-rebuild fails after the move, the old file stays (pending delete) until the next update's delete phase", async () => {
    const old = pathsFor(host, "move-fail");
    const moved = pathsFor(host, "move-fail", "zot-moved.env");
    const key = freshKey();
    const engine = new Engine();
    assert.equal((await up(host, engine, old, { key })).error, undefined);
    host.standins.reset();
    host.standins.setFailure("nixos-rebuild", { exitCode: 2, output: "error: flake has no attribute\n" });
    const failed = await up(host, engine, moved, { key });
    assert.deepEqual(summary(failed), [`replace ${WRITER}`, `replace ${REBUILD} (failed)`]);
    assert.deepEqual(engine.pendingDeletes(), [WRITER]);
    assert.equal(fs.readFileSync(old.file, "utf8"), envFileContent(ENV_VAR, key), "the old file is still in place");
    assert.equal(fs.readFileSync(moved.file, "utf8"), envFileContent(ENV_VAR, key));

    host.standins.reset();
    const r = await up(host, engine, moved, { key });
    assert.equal(r.error, undefined, r.error?.message);
    assert.deepEqual(summary(r), [
      `replace ${REBUILD}`,
      `replace ${RESTART}`,
      `delete-replaced ${RESTART}`,
      `delete-replaced ${REBUILD}`,
      `delete-replaced ${WRITER}`,
    ]);
    assert.deepEqual(engine.pendingDeletes(), []);
    assert.equal(fs.existsSync(old.file), false);
    assert.deepEqual(calls(host), [REBUILD_CALL, RESTART_CALL, RESTART_CALL]);
  });
});

describe("a change that is not a trigger", () => {
  it("nixos.fileMode 0600 → 0640 is an in-place update of the writer only (no rebuild, no restart)", async () => {
    const p = pathsFor(host, "mode-change");
    const key = freshKey();
    const engine = new Engine();
    assert.equal((await up(host, engine, p, { key })).error, undefined);
    host.standins.reset();
    const r = await up(host, engine, p, { key, nixos: { fileMode: "0640" } });
    assert.equal(r.error, undefined, r.error?.message);
    assert.deepEqual(summary(r), [`update ${WRITER}`]);
    assert.equal(mode(p.file), "0640");
    assert.equal(fs.readFileSync(p.file, "utf8"), envFileContent(ENV_VAR, key));
    assert.deepEqual(calls(host), []);
  });
});
