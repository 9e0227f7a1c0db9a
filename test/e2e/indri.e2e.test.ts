import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { indriProject, startIndriWorld, type IndriWorld } from "./support/indriWorld";
import { providersUnderTest } from "./support/realEngine";

let world: IndriWorld;
before(async () => {
  world = await startIndriWorld();
});
after(async () => world?.stop());

describe(`indri on the real engine (${providersUnderTest} providers, kubernetes v4.25.0, ESO v0.16.2)`, () => {
  it("explore", async () => {
    const r = await indriProject(world, "explore");
    const up = await r.project.up();
    console.log(up.output.slice(-3000));
    console.log(JSON.stringify(world.starts(r.namespace)));
    const mark = world.auditMark();
    const pv = await r.project.preview();
    console.log(pv.output.slice(-2000));
    const up2 = await r.project.up();
    console.log(up2.output.slice(-1500));
    console.log(JSON.stringify(world.mutations(mark)));
    assert.ok(true);
  });
});
