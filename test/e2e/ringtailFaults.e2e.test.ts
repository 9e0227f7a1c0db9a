// ringtail on the real engine when things go wrong, and with other login shells and odd keys:
// failing steps, a sudo that asks for a password, a wrong host key, the SSH agent, a file mode
// change. (A connection cut in the middle of stdin needs control no real provider gives: that
// stays in test/integration/ringtailFaults.ssh.test.ts under test/support/engine.ts.)
import assert from "node:assert/strict";
import { execFileSync, spawn } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { parseSystemdEnvFile } from "../support/envFile";
import { providersUnderTest } from "./support/realEngine";
import {
  assertFileHolds,
  assertNoLeak,
  assertRestartedWith,
  FLAKE,
  ringtailProject,
  startWorld,
  UNIT,
  type Ringtail,
  type World,
} from "./support/ringtailWorld";

let world: World;
before(async () => {
  world = await startWorld();
});
after(async () => {
  await world?.stop();
});

const REBUILD = `nixos-rebuild switch --flake ${FLAKE}`;
const RESTART = `systemctl restart ${UNIT}`;
const callNames = (r: Ringtail) => r.calls().map((c) => `${c.name} ${c.argv.join(" ")}`);

async function upOk(r: Ringtail) {
  const ran = await r.project.up();
  assert.equal(ran.error, undefined, `up failed (${providersUnderTest} providers):\n${ran.output}`);
  return ran;
}

describe(`ringtail faults on the real engine (${providersUnderTest} providers)`, () => {
  it("nixos-rebuild fails: the error names the step and shows the tail; the next up retries rebuild and restart", async () => {
    const r = await ringtailProject(world, "rebuild-fails");
    world.host.standins.watchEnvFile(r.envFile);
    world.host.standins.setFailure("nixos-rebuild", { exitCode: 1 }); // 100 lines, "error:" last
    try {
      const failed = await r.project.up();
      assert.ok(failed.error, "up succeeded with a failing nixos-rebuild");
      assert.match(failed.output, /runner-secrets: step nixos-rebuild failed \(exit 1\): sudo -n nixos-rebuild switch --flake/);
      assert.match(failed.output, /error: nixos-rebuild stand-in failed with exit code 1 \(line 100\)/);
      assert.doesNotMatch(failed.output, /stand-in line 60\)/, "only the tail (last 40 lines) is shown");
      assertFileHolds(r.envFile, world.key);
      assert.deepEqual(callNames(r), [REBUILD], "the restart ran after a failed rebuild");
    } finally {
      world.host.standins.setFailure("nixos-rebuild", null);
    }
    await upOk(r);
    const calls = r.calls();
    assert.deepEqual(
      calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
      [REBUILD, RESTART],
    );
    assertRestartedWith(calls, r.envFile, world.key);
    await r.project.remove();
  });

  it("a failing restart during a rotation: the new key is on disk, keyDigest still the old one, the next up retries the restart", async () => {
    const r = await ringtailProject(world, "restart-fails");
    world.host.standins.watchEnvFile(r.envFile);
    await upOk(r);
    const oldDigest = (await r.project.outputs()).keyDigest.value;
    r.calls();
    const key = await world.rotate();
    world.host.standins.setFailure("systemctl", { exitCode: 5, output: "Failed to restart unit: Unit not found.\n" });
    try {
      const failed = await r.project.up();
      assert.ok(failed.error);
      assert.match(failed.output, /step restart failed \(exit 5\)/);
      assert.match(failed.output, /Failed to restart unit: Unit not found/);
      assertFileHolds(r.envFile, key);
      assert.equal((await r.project.outputs()).keyDigest.value, oldDigest, "keyDigest claims a key the runner was not restarted with");
    } finally {
      world.host.standins.setFailure("systemctl", null);
    }
    r.calls();
    await upOk(r);
    const calls = r.calls();
    assert.deepEqual(
      calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
      [RESTART],
    );
    assertRestartedWith(calls, r.envFile, key);
    await r.project.remove();
  });

  it("nixos-rebuild fails after envFile moved: the next up converges on the new path", async () => {
    const r = await ringtailProject(world, "move-fails-from");
    await upOk(r);
    const moved = path.posix.join(world.host.root, "move-fails-to", "etc", "forgejo-runner", "zot-api-key.env");
    r.project.configSet("nixos.envFile", moved, { path: true });
    world.host.standins.watchEnvFile(moved);
    world.host.standins.setFailure("nixos-rebuild", { exitCode: 1 });
    try {
      assert.ok((await r.project.up()).error);
    } finally {
      world.host.standins.setFailure("nixos-rebuild", null);
    }
    r.calls();
    await upOk(r);
    assertFileHolds(moved, world.key);
    assert.equal(fs.existsSync(r.envFile), false, "the old env file is still there");
    const calls = r.calls();
    assert.ok(calls.some((c) => `${c.name} ${c.argv.join(" ")}` === REBUILD));
    assertRestartedWith(calls, moved, world.key);
    await r.project.remove();
  });

  it("sudo asks for a password: the first step fails saying so, before anything is written", async () => {
    const r = await ringtailProject(world, "needpw", world.host.users.needPassword);
    const failed = await r.project.up();
    assert.ok(failed.error);
    assert.match(
      failed.output,
      /runner-secrets: passwordless sudo is required: sudo -n failed for user rs-needpw on \S+; give it a NOPASSWD sudoers rule/,
    );
    assert.equal(fs.existsSync(path.dirname(r.envFile)), false, "something was created on the host");
    assert.deepEqual(callNames(r), []);
    await r.project.remove();
  });

  it("a wrong pinned host key: the connection is refused, nothing runs on the host", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-otherkey-"));
    execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path.join(dir, "k")]);
    const other = fs.readFileSync(path.join(dir, "k.pub"), "utf8").trim();
    fs.rmSync(dir, { recursive: true, force: true });
    const r = await ringtailProject(world, "wrong-hostkey");
    r.project.configSet("nixos.hostKey", other, { path: true });
    r.project.configSet("nixos.host", "localhost", { path: true });
    const failed = await r.project.up();
    assert.ok(failed.error, "up succeeded against a host with another key");
    assert.match(failed.output, /host key|handshake/i);
    assert.equal(r.sessions(), 0, "a session was opened on a host with the wrong key");
    assert.equal(fs.existsSync(path.dirname(r.envFile)), false);
    await r.project.remove();
  });

  it("without sshPrivateKey the provider logs in with the SSH agent at nixos.agentSocketPath", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-agent-"));
    const sock = path.join(dir, "agent.sock");
    const agent = spawn("ssh-agent", ["-D", "-a", sock], { stdio: "ignore" });
    try {
      for (let i = 0; i < 50 && !fs.existsSync(sock); i++) await new Promise((res) => setTimeout(res, 50));
      execFileSync("ssh-add", [world.host.clientKeyPath], { env: { ...process.env, SSH_AUTH_SOCK: sock }, stdio: "ignore" });
      const r = await ringtailProject(world, "agent");
      r.project.cli(["config", "rm", "sshPrivateKey"]);
      r.project.configSet("nixos.agentSocketPath", sock, { path: true });
      await upOk(r);
      assertFileHolds(r.envFile, world.key);
      await r.project.remove();
    } finally {
      agent.kill();
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("nixos.fileMode 0600 → 0640 is an in-place rewrite of the file only (no rebuild)", async () => {
    const r = await ringtailProject(world, "filemode");
    await upOk(r);
    r.calls();
    r.project.configSet("nixos.fileMode", "0640", { path: true });
    await upOk(r);
    assert.equal((fs.statSync(r.envFile).mode & 0o777).toString(8), "640");
    assert.ok(!callNames(r).includes(REBUILD));
    await r.project.remove();
  });

  for (const user of ["bash", "zsh", "dash"] as const) {
    it(`login shell ${user}: first up, rotation, no-op and destroy behave as under fish`, async () => {
      const r = await ringtailProject(world, `shell-${user}`, world.host.users[user]);
      world.host.standins.watchEnvFile(r.envFile);
      await upOk(r);
      assertFileHolds(r.envFile, world.key);
      assert.deepEqual(callNames(r), [REBUILD, RESTART]);
      const key = await world.rotate();
      await upOk(r);
      assertFileHolds(r.envFile, key);
      const calls = r.calls();
      assert.deepEqual(
        calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
        [RESTART],
      );
      assertRestartedWith(calls, r.envFile, key);
      r.sessions();
      await upOk(r);
      assert.equal(r.sessions(), 0);
      const d = await r.project.destroy();
      assert.equal(d.error, undefined, d.output);
      assert.equal(fs.existsSync(r.envFile), false);
      await r.project.remove();
    });
  }

  it("keys with characters a shell or an env-file reader would interpret are written quoted and read back exactly", async () => {
    for (const [i, odd] of [`zak_${"$"}HOME"x#y z`, "zak_back`tick`\\slash;|&<>*?"].entries()) {
      await world.registry.setKey(odd);
      world.connect.setField("blumeops", "zot-ci-apikey", "credential", odd);
      world.key = odd;
      const r = await ringtailProject(world, `odd-key-${i}`);
      const up = await upOk(r);
      assertFileHolds(r.envFile, odd);
      // As the unit's EnvironmentFile= reads it (the port of systemd's rules; its environment.d
      // generator would expand $HOME, which EnvironmentFile= does not).
      assert.equal(parseSystemdEnvFile(fs.readFileSync(r.envFile, "utf8")).vars.ZOT_CI_API_KEY, odd);
      assertNoLeak(r.project, odd, up.output);
      await r.project.remove();
    }
    await world.rotate();
  });
});
