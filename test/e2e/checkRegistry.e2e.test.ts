// `mise run check-registry` (tools/checkRegistry.ts) with a stack configured as an operator does:
// the key is read from 1Password (the Connect stand-in) the way the stack reads it, and checked
// against the real registry with the stack's own registryCheck settings. The key is never printed.
import assert from "node:assert/strict";
import { after, before, describe, it } from "node:test";

import { runTool } from "./support/realEngine";
import { freshKey, ITEM, ringtailProject, startWorld, VAULT, type Ringtail, type World } from "./support/ringtailWorld";

let world: World;
let r: Ringtail;
before(async () => {
  world = await startWorld();
  r = await ringtailProject(world, "check-registry");
});
after(async () => {
  await r?.project.remove();
  await world?.stop();
});

function assertNoKey(out: string, key: string) {
  assert.ok(!out.includes(key), "the key was printed");
  assert.ok(!out.includes(Buffer.from(key).toString("base64")), "the key's base64 was printed");
}

describe("check-registry with the stack's own settings", () => {
  it("passes for the key 1Password holds, which the registry accepts", async () => {
    const c = await runTool(r.project, "tools/checkRegistry.ts", ["--stack", "ringtail"]);
    assert.equal(c.code, 0, c.out);
    assert.match(c.out, new RegExp(`^ringtail: registry check passed: ${world.registry.url} accepts zot-ci's key`));
    assertNoKey(c.out, world.key);
  });

  it("fails naming the login check when 1Password holds a key the registry does not know", async () => {
    const unknown = freshKey();
    world.connect.setField(VAULT, ITEM, "credential", unknown);
    try {
      const c = await runTool(r.project, "tools/checkRegistry.ts", ["--stack", "ringtail"]);
      assert.equal(c.code, 1, c.out);
      assert.match(c.out, /^ringtail: FAILED: check 1 \(login\): GET \S+\/v2\/ returned HTTP 401/);
      assertNoKey(c.out, unknown);
    } finally {
      world.connect.setField(VAULT, ITEM, "credential", world.key);
    }
  });

  it("exits 2 on bad usage", async () => {
    const c = await runTool(r.project, "tools/checkRegistry.ts", ["--stakc", "ringtail"]);
    assert.equal(c.code, 2, c.out);
    assert.match(c.out, /usage: check-registry/);
  });
});
