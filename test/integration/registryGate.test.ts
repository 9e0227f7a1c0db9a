// The registry check exactly as the stacks register it: the command text and stdin of the
// local.Command from a mock run, executed for real against a real registry.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { after, before, test } from "node:test";
import { byName, revealed, ROOT, runStack } from "../support/mockStack";
import { randomKey, startRegistry, type TestRegistry } from "../support/registry";

const GOOD = randomKey();
let reg: TestRegistry;

before(async () => {
  reg = await startRegistry({ auth: { user: "zot-ci", key: GOOD } });
});
after(async () => reg?.stop());

/** Runs the registered check the way the command provider runs a local command: `sh -c` in the project dir. */
async function registeredCheck(stack: string, key: string) {
  const run = await runStack(stack, {
    key,
    config: { "runner-secrets:registryCheck": { url: reg.url, caFile: reg.caFile, timeoutSeconds: 10 } },
  });
  assert.equal(run.error, undefined, run.error?.stack);
  const check = byName(run, "registry-check");
  assert.equal(check.type, "command:local:Command");
  const stdin = String(revealed(check.inputs.stdin));
  const r = spawnSync("/bin/sh", ["-c", String(check.inputs.create)], { cwd: ROOT, input: stdin, encoding: "utf8" });
  return { ...r, text: String(check.inputs.create) };
}

for (const stack of ["indri", "ringtail"]) {
  test(`${stack}: the registered check passes with the key the registry accepts`, async () => {
    const r = await registeredCheck(stack, GOOD);
    assert.equal(r.status, 0, r.stderr);
    assert.ok(!r.text.includes(GOOD), "the key is in the command text");
    assert.ok(!(r.stdout + r.stderr).includes(GOOD));
    assert.deepEqual(reg.openUploads("runner-secrets/probe"), []);
  });
}

test("a key the registry rejects fails the check (so nothing that depends on it runs), naming the 401", async () => {
  const wrong = randomKey();
  const r = await registeredCheck("ringtail", wrong);
  assert.notEqual(r.status, 0);
  assert.match(r.stderr, /401/);
  assert.ok(!(r.stdout + r.stderr).includes(wrong), "the rejected key was printed");
});
