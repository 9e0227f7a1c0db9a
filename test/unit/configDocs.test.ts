// The README's configuration table, the schema's defaults and the committed stack files agree:
// each default has one place (the schema for the program's choices, a stack file for the
// homelab's facts) and the table says which.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parse as parseYaml } from "yaml";
import { configKeys } from "../../lib/config";
import { committedConfig } from "../support/mockStack";

const ROOT = path.join(__dirname, "..", "..");

/** key → the README's default cell, from the table that starts "| key | default |". */
function readmeTable(): Map<string, string> {
  const lines = fs.readFileSync(path.join(ROOT, "README.md"), "utf8").split("\n");
  const start = lines.findIndex((l) => /^\| key \| default \|/.test(l));
  assert.ok(start >= 0, "the README has no configuration table");
  const rows = new Map<string, string>();
  for (const line of lines.slice(start + 2)) {
    if (!line.startsWith("|")) break;
    const m = /^\| `([A-Za-z.]+)`[^|]*\| ([^|]*)\|/.exec(line);
    assert.ok(m, `not a row of the configuration table: ${line}`);
    assert.ok(!rows.has(m[1]), `${m[1]} is in the table twice`);
    rows.set(m[1], m[2].trim());
  }
  return rows;
}

/** Every leaf key a committed stack file sets, as "group.key". */
function stackFileKeys(stack: string): string[] {
  const keys: string[] = [];
  const walk = (v: unknown, key: string) => {
    if (v !== null && typeof v === "object" && !Array.isArray(v)) for (const [k, x] of Object.entries(v)) walk(x, `${key}.${k}`);
    else keys.push(key);
  };
  for (const [k, v] of Object.entries(committedConfig(stack))) walk(v, k.replace(/^runner-secrets:/, ""));
  return keys;
}

const stacksOf = (key: string) =>
  key.startsWith("nixos.") ? ["ringtail"] : key.startsWith("kubernetes.") ? ["indri"] : ["indri", "ringtail"];

test("the README's table lists exactly the schema's keys", () => {
  const documented = [...readmeTable().keys()].sort();
  const schema = configKeys()
    .map((k) => k.key)
    .sort();
  assert.deepEqual(documented, schema);
});

test("each default in the README is the schema's; required keys and the stack files' facts are marked", () => {
  const table = readmeTable();
  for (const { key, required, default: dflt } of configKeys()) {
    const cell = table.get(key);
    if (dflt !== undefined) assert.equal(cell, `\`${String(dflt)}\``, key);
    else if (required) assert.ok(cell === "required" || cell === "stack file", `${key}: ${cell}`);
    else assert.ok(cell !== undefined && !cell.startsWith("`") && cell !== "required" && cell !== "stack file", `${key}: ${cell}`);
  }
});

test("a 'stack file' key is set in the stack file of each stack it applies to", () => {
  for (const [key, cell] of readmeTable()) {
    if (cell !== "stack file") continue;
    for (const stack of stacksOf(key)) assert.ok(stackFileKeys(stack).includes(key), `${key} is not set in Pulumi.${stack}.yaml`);
  }
});

test("the stack files hold only the homelab's facts, never a copy of a schema default", () => {
  const table = readmeTable();
  for (const stack of ["indri", "ringtail"]) {
    for (const key of stackFileKeys(stack)) {
      if (key === "target") continue;
      assert.equal(table.get(key), "stack file", `Pulumi.${stack}.yaml sets ${key}, which has a default in the schema`);
    }
  }
});

test("Pulumi.yaml declares without a default only keys the schema requires (the CLI requires those)", () => {
  const project = parseYaml(fs.readFileSync(path.join(ROOT, "Pulumi.yaml"), "utf8")) as { config: Record<string, { default?: unknown }> };
  const keys = configKeys();
  for (const [name, decl] of Object.entries(project.config)) {
    const own = keys.filter((k) => k.key === name || k.key.startsWith(`${name}.`));
    assert.ok(own.length > 0, `Pulumi.yaml declares ${name}, which the schema does not know`);
    if (decl.default === undefined) {
      assert.deepEqual(
        own.map((k) => [k.key, k.required]),
        [[name, true]],
        `${name} has no default in Pulumi.yaml, so the CLI requires it; the schema must too`,
      );
    }
  }
});
