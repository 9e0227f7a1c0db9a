// One schema for the registry check's options: the stack's registryCheck.*, the checker CLI's flags
// and checkRegistry itself refuse the same values with the same message.
import { test } from "node:test";
import assert from "node:assert/strict";
import { checkRegistry, RegistryCheckError } from "../../checker/registryCheck";
import { ConfigError, parseConfig } from "../../lib/config";
import { parseRegistryOptions } from "../../lib/registryOptions";
import { engineConfig, stackConfig } from "../support/mockStack";

const good = { url: "https://registry.example.org", user: "zot-ci", probeRepository: "runner-secrets/probe", timeoutSeconds: 5 };

const bad: [string, string | number][] = [
  ["url", "registry.example.org"],
  ["url", "ftp://registry.example.org"],
  ["url", "https://u:p@registry.example.org"],
  ["url", "https://registry.example.org/v2/"],
  ["url", "https://registry.example.org/?a=b"],
  ["url", "https://registry.example.org/$(id)"],
  ["user", "a:b"],
  ["user", "a b"],
  ["probeRepository", "Runner/Probe"],
  ["probeRepository", "a//b"],
  ["timeoutSeconds", 0],
  ["timeoutSeconds", 601],
  ["caFile", "relative/ca.pem"],
];

function configProblem(key: string, value: string | number): string {
  const raw = stackConfig("indri", { "runner-secrets:registryCheck": { [key]: value } });
  try {
    parseConfig(engineConfig(raw));
  } catch (e) {
    assert.ok(e instanceof ConfigError);
    const mine = e.problems.filter((p) => p.startsWith(`runner-secrets:registryCheck.${key}: `));
    assert.equal(mine.length, 1, e.problems.join("\n"));
    return mine[0];
  }
  assert.fail(`the stack config took registryCheck.${key} = ${JSON.stringify(value)}`);
}

for (const [key, value] of bad) {
  test(`registryCheck.${key} = ${JSON.stringify(value)}: refused alike by the stack config, the schema and the checker`, async () => {
    const parsed = parseRegistryOptions({ ...good, [key]: value });
    assert.ok(!parsed.ok, "the schema took it");
    const [[name, message]] = parsed.problems;
    assert.equal(name, key);
    assert.ok(configProblem(key, value).startsWith(`runner-secrets:registryCheck.${key}: ${message}`));
    await assert.rejects(checkRegistry({ ...good, [key]: value } as typeof good, "zak_x"), (e: unknown) => {
      assert.ok(e instanceof RegistryCheckError);
      assert.equal(e.step, "options");
      assert.ok(e.message.startsWith(`registry check: ${key} ${message}`), e.message);
      return true;
    });
  });
}

test("the good options pass, with the defaults filled in", () => {
  const parsed = parseRegistryOptions({ url: good.url, user: good.user });
  assert.deepEqual(parsed, {
    ok: true,
    options: { url: good.url, user: good.user, probeRepository: "runner-secrets/probe", timeoutSeconds: 30 },
  });
});
