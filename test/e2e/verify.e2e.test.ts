// `mise run verify` (tools/verify.ts) against the e2e tier's real hosts, after real `pulumi up`s:
// ringtail is the real sshd host (fish login shell, sudo) whose systemctl stand-in plays systemd
// for one unit (a main process started with the unit's EnvironmentFile= variables; see
// test/support/sshHost.ts). Verdicts for the current key, a tampered file, a daemon that kept the
// old key, a unit without the EnvironmentFile line, a key changed in 1Password without `up`, and a
// host that cannot be reached. The key is never in verify's output.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import { after, before, describe, it } from "node:test";

import { envFileLine } from "../../lib/registryKey";
import { providersUnderTest, runVerify as verify } from "./support/realEngine";
import { freshKey, ringtailProject, startWorld, type Ringtail, type World } from "./support/ringtailWorld";

let world: World;
before(async () => {
  world = await startWorld();
});
after(async () => {
  await world?.stop();
});

function assertNoKey(out: string, ...keys: string[]) {
  for (const k of keys) {
    assert.ok(!out.includes(k), "verify printed a key");
    assert.ok(!out.includes(Buffer.from(k).toString("base64")), "verify printed a key's base64");
  }
}

describe(`verify on ringtail, after the real engine's up (${providersUnderTest} providers)`, () => {
  let r: Ringtail;
  before(async () => {
    r = await ringtailProject(world, "verify");
    world.host.standins.defineUnit([r.envFile]);
    const u = await r.project.up();
    assert.equal(u.error, undefined, u.output);
    assert.ok(world.host.standins.mainPid() > 0, "the unit's restart started no main process");
  });
  after(async () => {
    world.host.standins.reset();
    await r?.project.remove();
  });

  it("current: file, unit and daemon hold the key 1Password holds and the stack deployed", async () => {
    const t0 = Date.now();
    const v = await verify(r.project, "ringtail");
    console.log(`verify wall time (ringtail, current): ${Date.now() - t0} ms`);
    assert.equal(v.code, 0, v.out);
    assert.match(
      v.out,
      /^ringtail: CURRENT: 1Password ([0-9a-f]{16}), deployed \1; file .* ok, unit .* loads it, daemon \(pid \d+\) ok\n$/,
    );
    assertNoKey(v.out, world.key);
  });

  it("stale: the env file was changed on the host", async () => {
    const good = fs.readFileSync(r.envFile, "utf8");
    try {
      fs.writeFileSync(r.envFile, envFileLine("ZOT_CI_API_KEY", freshKey()));
      const v = await verify(r.project, "ringtail");
      assert.equal(v.code, 1, v.out);
      assert.match(
        v.out,
        /^ringtail: STALE: .*file \S+ DIFFERS.*To do: the file was changed on the host: re-write it with pulumi up -s ringtail --replace/m,
      );
    } finally {
      fs.writeFileSync(r.envFile, good);
    }
  });

  it("stale: the daemon kept running with the key from before the rotation", async () => {
    world.host.standins.ignoreRestarts(true);
    const pid = world.host.standins.mainPid();
    try {
      const old = world.key;
      const next = await world.rotate();
      const u = await r.project.up();
      assert.equal(u.error, undefined, u.output);
      assert.equal(world.host.standins.mainPid(), pid, "the stand-in restarted the daemon after all");
      const v = await verify(r.project, "ringtail");
      assert.equal(v.code, 1, v.out);
      assert.match(
        v.out,
        /^ringtail: STALE: .*file \S+ ok, .*daemon \(pid \d+\) DIFFERS\. To do: restart gitea-runner-nix_container_builder\.service/m,
      );
      assertNoKey(v.out, old, next);
    } finally {
      world.host.standins.ignoreRestarts(false);
    }
  });

  it("missing: the unit does not load the env file (no EnvironmentFile= line in the flake)", async () => {
    world.host.standins.defineUnit([]);
    try {
      const v = await verify(r.project, "ringtail");
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, /^ringtail: MISSING: .*does NOT load it.*To do: add EnvironmentFile=/m);
    } finally {
      world.host.standins.defineUnit([r.envFile]);
    }
  });

  it("stale: a key changed in 1Password that up has not deployed", async () => {
    const deployed = world.key;
    world.connect.setField("blumeops", "zot-ci-apikey", "credential", freshKey());
    try {
      const v = await verify(r.project, "ringtail");
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, /^ringtail: STALE: 1Password ([0-9a-f]{16}), deployed (?!\1)[0-9a-f]{16}; .*To do: run pulumi up -s ringtail/m);
    } finally {
      world.connect.setField("blumeops", "zot-ci-apikey", "credential", deployed);
    }
  });

  it("unreachable: the host does not answer on the configured port", async () => {
    r.project.configSet("nixos.port", "1", { path: true });
    try {
      const v = await verify(r.project, "ringtail");
      assert.equal(v.code, 1, v.out);
      assert.match(v.out, /^ringtail: UNREACHABLE: .*ssh .*:1: .*To do: check SSH/m);
    } finally {
      r.project.configSet("nixos.port", String(world.host.port), { path: true });
    }
  });
});
