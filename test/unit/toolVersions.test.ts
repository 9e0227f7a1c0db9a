// The Pulumi CLI an operator gets from `mise install` is the one the e2e tier builds and the PR
// preview installs: one version, stated three times, kept equal here.
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { test } from "node:test";
import { parse as parseYaml } from "yaml";

const ROOT = path.join(__dirname, "..", "..");
const read = (f: string) => fs.readFileSync(path.join(ROOT, f), "utf8");

test("mise, the e2e engine build and the PR preview pin the same Pulumi CLI", () => {
  const tools = /^\[tools\]\n((?:.+\n)*)/m.exec(read("mise.toml"));
  assert.ok(tools, "mise.toml has no [tools] table");
  const mise = /^pulumi\s*=\s*"([^"]+)"/m.exec(tools[1])?.[1];
  const engine = /^PULUMI_VERSION=(\S+)$/m.exec(read("test/setup/engine.sh"))?.[1];
  const workflow = (parseYaml(read(".forgejo/workflows/preview.yaml")) as { jobs: Record<string, { env?: Record<string, string> }> }).jobs
    .preview.env?.PULUMI_VERSION;
  assert.ok(mise, "mise.toml [tools] does not pin pulumi");
  assert.equal(engine, mise, "test/setup/engine.sh builds another CLI than mise installs");
  assert.equal(workflow, mise, "the PR preview installs another CLI than mise installs");
  // The SDK's own version is the CLI's (both come from pulumi/pulumi's release).
  assert.equal((JSON.parse(read("package.json")) as { dependencies: Record<string, string> }).dependencies["@pulumi/pulumi"], mise);
});
