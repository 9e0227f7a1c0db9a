// ringtail on the real Pulumi engine: the project's index.ts through the Automation API and the real
// CLI, against a real sshd whose test user logs in with fish, sudo, and the nixos-rebuild /
// systemctl stand-ins; the key comes from the 1Password Connect stand-in and is checked against a
// real registry. Plugins: the stand-ins of test/e2e/plugins, or real ones (RS_E2E_PROVIDERS).
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";

import { killEngine, providersUnderTest } from "./support/realEngine";
import {
  assertFileHolds,
  assertNoLeak,
  assertRestartedWith,
  digestOf,
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

const names = (r: Ringtail) => r.calls().map((c) => `${c.name} ${c.argv.join(" ")}`);
const REBUILD = `nixos-rebuild switch --flake ${FLAKE}`;
const RESTART = `systemctl restart ${UNIT}`;

async function upOk(r: Ringtail, opts?: Parameters<Ringtail["project"]["up"]>[0]) {
  const ran = await r.project.up(opts);
  assert.equal(ran.error, undefined, `up failed (${providersUnderTest} providers):\n${ran.output}`);
  return ran;
}

/** A first `up` of a fresh project, with its checks; the calls and sessions it made are consumed. */
async function firstUp(name: string): Promise<Ringtail> {
  const r = await ringtailProject(world, name);
  world.host.standins.watchEnvFile(r.envFile);
  await upOk(r);
  assertFileHolds(r.envFile, world.key);
  r.calls();
  r.sessions();
  return r;
}

describe(`ringtail on the real engine (${providersUnderTest} providers)`, () => {
  it("first up: the file, 0600 root, then rebuild, then restart; no-op opens no SSH session; no key anywhere", async () => {
    const r = await ringtailProject(world, "first");
    world.host.standins.watchEnvFile(r.envFile);
    const preview = await r.project.preview();
    assert.equal(preview.error, undefined, preview.output);
    // Each script's first line says what it does, where: what a reviewer sees in the preview.
    assert.match(
      preview.output,
      new RegExp(`create +: "/bin/sh -c '# runner-secrets: write ZOT_CI_API_KEY to ${r.envFile}\\\\n# \\(0600 root:root, from stdin`),
    );
    assert.match(
      preview.output,
      new RegExp(`delete +: "/bin/sh -c '# runner-secrets: on delete, remove ${r.envFile}\\\\n# then restart ${UNIT}`),
    );
    assert.match(
      preview.output,
      /create +: "\/bin\/sh -c '# runner-secrets: nixos-rebuild switch --flake \/etc\/blumeops\/nixos\/ringtail#ringtail\\n/,
    );
    assert.match(preview.output, new RegExp(`create +: "/bin/sh -c '# runner-secrets: restart ${UNIT}\\\\n# \\(so it reads ${r.envFile}`));
    assert.equal(r.sessions(), 0, "a preview must not touch the host");

    const up = await upOk(r);
    assertFileHolds(r.envFile, world.key);
    // The engine starts providers lazily: ringtail never starts the kubernetes plugin (the engine
    // names each plugin it takes from PATH).
    assert.match(up.output, /using pulumi-resource-command from \$PATH/);
    assert.doesNotMatch(up.output, /pulumi-resource-kubernetes/);
    const calls = r.calls();
    assert.deepEqual(
      calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
      [REBUILD, RESTART],
    );
    assert.ok(
      calls.every((c) => c.uid === 0),
      "the steps run as root (sudo)",
    );
    assertRestartedWith(calls, r.envFile, world.key);
    assert.equal(r.sessions(), 3, "write, rebuild, restart: one SSH session each");
    const outputs = await r.project.outputs();
    assert.equal(outputs.keyDigest.value, digestOf(world.key));
    assert.equal(outputs.location.value, `127.0.0.1:${r.envFile}`);
    assert.equal(outputs.targetKind.value, "nixos");

    const noop = await upOk(r);
    assert.equal(r.sessions(), 0, "a no-op up opened SSH sessions");
    assert.deepEqual(names(r), []);
    assert.deepEqual(noop.result?.summary.resourceChanges, { same: noop.result?.summary.resourceChanges?.same });
    const noopPreview = await r.project.preview();
    assert.equal(noopPreview.error, undefined);
    assert.deepEqual(Object.keys(noopPreview.result?.changeSummary ?? {}), ["same"]);
    assertNoLeak(r.project, world.key, preview.output, up.output, noop.output, noopPreview.output);
    await r.project.remove();
  });

  it("rotation: the file is updated in place and the unit restarted, no rebuild; then envVar renamed", async () => {
    const r = await firstUp("rotate");
    const before = fs.statSync(r.envFile).ino;
    const key = await world.rotate();
    const up = await upOk(r);
    assertFileHolds(r.envFile, key);
    assert.equal(fs.statSync(r.envFile).ino === before, false, "written through a temp file and renamed");
    assert.deepEqual(
      names(r),
      [RESTART].map((x) => x),
    );
    assert.equal(r.sessions(), 2, "a rotation is two SSH sessions: write and restart");
    assert.equal((await r.project.outputs()).keyDigest.value, digestOf(key));

    r.project.configSet("envVar", "ZOT_REGISTRY_KEY");
    const renamed = await upOk(r);
    assertFileHolds(r.envFile, key, "ZOT_REGISTRY_KEY");
    const calls = r.calls();
    assert.deepEqual(
      calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
      [RESTART],
    );
    assertRestartedWith(calls, r.envFile, key, "ZOT_REGISTRY_KEY");
    assertNoLeak(r.project, key, up.output, renamed.output);
    await r.project.remove();
  });

  for (const change of ["nixos.host", "nixos.port"] as const) {
    it(`${change} changed to another name of the same machine: the file holds the key, restarted after the write`, async () => {
      const r = await firstUp(change.replace(".", "-"));
      r.project.configSet(change, change === "nixos.host" ? "localhost" : String(world.host.secondPort), { path: true });
      const up = await upOk(r);
      assertFileHolds(r.envFile, world.key);
      assertRestartedWith(r.calls(), r.envFile, world.key);
      r.sessions();
      // …and it stays that way: the next up has nothing to do.
      await upOk(r);
      assert.equal(r.sessions(), 0, "not converged: the up after the move still did something");
      assertFileHolds(r.envFile, world.key);
      assertNoLeak(r.project, world.key, up.output);
      await r.project.remove();
    });
  }

  for (const resource of ["zot-ci-env-file", "zot-ci-nixos-rebuild", "zot-ci-restart", "zot-ci-registry-check"]) {
    it(`pulumi up --replace ${resource}: the file holds the key, restarted after the write`, async () => {
      const r = await firstUp(`replace-${resource}`);
      const urn = await r.project.urn(resource);
      await upOk(r, { replace: [urn] });
      assertFileHolds(r.envFile, world.key);
      const calls = r.calls();
      if (resource !== "zot-ci-registry-check") assertRestartedWith(calls, r.envFile, world.key);
      await r.project.remove();
    });
  }

  it("envFile moved: the new path is written, the old one removed, the unit restarted with the new one", async () => {
    const r = await firstUp("move-from");
    const old = r.envFile;
    const moved = path.posix.join(world.host.root, "move-to", "etc", "forgejo-runner", "zot-api-key.env");
    r.project.configSet("nixos.envFile", moved, { path: true });
    world.host.standins.watchEnvFile(moved);
    await upOk(r);
    assertFileHolds(moved, world.key);
    assert.equal(fs.existsSync(old), false, "the old env file is still there");
    const calls = r.calls();
    assert.ok(
      calls.some((c) => `${c.name} ${c.argv.join(" ")}` === REBUILD),
      "the flake must be applied for the new path",
    );
    assertRestartedWith(calls, moved, world.key);
    await r.project.remove();
  });

  it("destroy removes the file and restarts the unit; with keepOnDestroy the file stays", async () => {
    const r = await firstUp("destroy");
    const d = await r.project.destroy();
    assert.equal(d.error, undefined, d.output);
    assert.equal(fs.existsSync(r.envFile), false);
    const calls = r.calls();
    assert.deepEqual(
      calls.map((c) => `${c.name} ${c.argv.join(" ")}`),
      [RESTART],
    );
    assert.equal(calls[0].envFile, "missing", "the unit was restarted while the file was still there");
    await r.project.remove();

    const k = await firstUp("keep");
    k.project.configSet("nixos.keepOnDestroy", "true", { path: true });
    await upOk(k);
    const kd = await k.project.destroy();
    assert.equal(kd.error, undefined, kd.output);
    assertFileHolds(k.envFile, world.key);
    assert.ok(k.calls().some((c) => `${c.name} ${c.argv.join(" ")}` === RESTART));
    await k.project.remove();
  });

  it("an up killed mid-way (during nixos-rebuild), then re-run, converges", async () => {
    const r = await ringtailProject(world, "killed");
    world.host.standins.watchEnvFile(r.envFile);
    world.host.standins.setDelay("nixos-rebuild", 30);
    try {
      const running = r.project.up();
      for (let i = 0; i < 300 && !r.calls().some((c) => c.name === "nixos-rebuild"); i++) await new Promise((res) => setTimeout(res, 100));
      assert.ok(killEngine(r.project) > 0, "no engine process to kill");
      const killed = await running;
      assert.ok(killed.error, "the killed up reported success");
    } finally {
      world.host.standins.setDelay("nixos-rebuild", null);
    }
    // A crashed engine leaves its lock and pending operations behind, as for an operator.
    r.project.cli(["cancel", "--yes"]);
    const again = await r.project.up();
    if (again.error && /locked/.test(again.output)) {
      fs.rmSync(path.join(r.project.stateDir, ".pulumi", "locks"), { recursive: true, force: true });
      await upOk(r);
    } else {
      assert.equal(again.error, undefined, again.output);
    }
    assertFileHolds(r.envFile, world.key);
    const calls = r.calls();
    assert.ok(
      calls.some((c) => `${c.name} ${c.argv.join(" ")}` === REBUILD),
      "the rebuild was not re-run",
    );
    assertRestartedWith(calls, r.envFile, world.key);
    r.sessions();
    await upOk(r);
    assert.equal(r.sessions(), 0, "not converged");
    await r.project.remove();
  });

  it("a key the registry refuses stops the update before the host is touched; keyDigest keeps the deployed key", async () => {
    const r = await firstUp("refused");
    const deployed = world.key;
    world.connect.setField("blumeops", "zot-ci-apikey", "credential", "zak_refusedbytheregistry000");
    try {
      const up = await r.project.up();
      assert.ok(up.error, "up succeeded with a key the registry refuses");
      assert.match(up.output, /401|refuse|reject/i);
      assert.equal(r.sessions(), 0, "the host was touched");
      assertFileHolds(r.envFile, deployed);
      assert.equal((await r.project.outputs()).keyDigest.value, digestOf(deployed), "keyDigest claims a key that never reached the runner");
      assertNoLeak(r.project, "zak_refusedbytheregistry000", up.output);
    } finally {
      world.connect.setField("blumeops", "zot-ci-apikey", "credential", deployed);
    }
    await r.project.remove();
  });

  it("an envFile that is an existing directory is refused; nothing lands inside it", async () => {
    const r = await ringtailProject(world, "dir");
    fs.mkdirSync(r.envFile, { recursive: true, mode: 0o700 });
    const up = await r.project.up();
    assert.ok(up.error, "up accepted a directory as the env file");
    assert.match(up.output, /is a directory; set runner-secrets:nixos.envFile to a file path/);
    assert.doesNotMatch(up.output, /runner-secrets: wrote \//);
    assert.deepEqual(fs.readdirSync(r.envFile), []);
    assert.deepEqual(names(r), [], "rebuild or restart ran after the refused write");
    await r.project.remove();
  });

  for (const [key, value] of [
    ["registryCheck.url", "https://registry.example`id`"],
    ["registryCheck.url", "https://registry.example/$(id)"],
    ["registryCheck.url", "https://registry.ops.eblu.mea\nb"],
    ["nixos.flake", "/etc/blumeops#ringtail$(id)"],
  ] as const) {
    it(`bad input ${key}=${JSON.stringify(value)}: refused with the key named, nothing registered, no stack trace`, async () => {
      const r = await ringtailProject(world, "bad-input");
      r.project.configSet(key, value, { path: true });
      for (const run of [await r.project.preview(), await r.project.up()]) {
        assert.ok(run.error, "accepted");
        assert.match(run.output, new RegExp(`runner-secrets:${key.replace(".", "\\.")}: must be`));
        assert.doesNotMatch(run.output, /\n\s+at .*\.ts:\d+/, "a stack trace was printed");
      }
      const exported = JSON.parse(r.project.exportText()) as { deployment: { resources?: { type: string }[] } };
      assert.deepEqual(
        (exported.deployment.resources ?? []).filter((x) => x.type !== "pulumi:pulumi:Stack"),
        [],
      );
      assert.equal(r.sessions(), 0);
      await r.project.remove();
    });
  }
});
