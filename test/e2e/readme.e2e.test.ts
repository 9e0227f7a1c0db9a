// Every `pulumi config` command the README and docs give, run as written with the real CLI
// (v3.276.0: its "looks like a secret" refusal is what an operator meets), then the stack config
// they leave is validated by the program's own schema. `ssh-keyscan` is a stand-in here (there is
// no host named ringtail): it prints a freshly generated ed25519 public key in keyscan's format.
import assert from "node:assert/strict";
import { execFileSync, spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";
import { describe, it } from "node:test";

import { parseConfig } from "../../lib/config";
import { newProject, ROOT } from "./support/realEngine";

/** `pulumi config …` lines of the ```sh blocks of a markdown file (continuations joined). */
function configCommands(file: string): string[] {
  const text = fs.readFileSync(file, "utf8");
  const out: string[] = [];
  for (const block of text.matchAll(/^```sh\n([\s\S]*?)^```/gm)) {
    const lines = block[1].replace(/\\\n\s*/g, " ").split("\n");
    out.push(...lines.map((l) => l.trim()).filter((l) => l.startsWith("pulumi config ")));
  }
  return out;
}

function docs(): string[] {
  const dir = path.join(ROOT, "docs");
  return [
    path.join(ROOT, "README.md"),
    ...fs
      .readdirSync(dir)
      .filter((f) => f.endsWith(".md"))
      .map((f) => path.join(dir, f)),
  ];
}

const stackOf = (cmd: string): string => {
  const m = /(?:^|\s)(?:-s|--stack)[ =](\S+)/.exec(cmd);
  assert.ok(m, `a documented config command must name its stack (-s): ${cmd}`);
  return m[1];
};

/** A stand-in for ssh-keyscan: `<host> <type> <key>` of a real ed25519 key, once per call. */
function keyscanStandIn(): string {
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-keyscan-"));
  execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-f", path.join(dir, "host")]);
  const pub = fs.readFileSync(path.join(dir, "host.pub"), "utf8").split(" ").slice(0, 2).join(" ");
  fs.writeFileSync(path.join(dir, "ssh-keyscan"), `#!/bin/sh\nfor h; do :; done\necho "$h ${pub}"\n`, { mode: 0o755 });
  return dir;
}

describe("the README's config commands, on the real CLI", () => {
  const commands = docs().flatMap(configCommands);

  it("finds the documented commands (both stacks, the keys the CLI takes for secrets)", () => {
    assert.ok(commands.length >= 10, commands.join("\n"));
    assert.deepEqual([...new Set(commands.map(stackOf))].sort(), ["indri", "ringtail"]);
    for (const key of ["onePassword.item", "onePassword.connectUrl", "kubernetes.secretName", "kubernetes.externalSecret"]) {
      assert.ok(
        commands.some((c) => c.includes(` ${key} `)),
        `no documented command sets ${key}`,
      );
    }
  });

  for (const stackName of ["ringtail", "indri"] as const) {
    it(`${stackName}: every command succeeds as written and the stack config passes the program's validation`, async () => {
      const project = await newProject(stackName);
      try {
        const env = {
          ...process.env,
          ...project.env,
          PATH: `${keyscanStandIn()}:${project.env.PATH}`,
          OP_SERVICE_ACCOUNT_TOKEN: "ops_readme_test_token",
          OP_CONNECT_TOKEN: "connect-readme-test-token",
        };
        for (const cmd of commands.filter((c) => stackOf(c) === stackName)) {
          const r = spawnSync("bash", ["-c", cmd], { cwd: project.dir, env, encoding: "utf8", stdio: ["ignore", "pipe", "pipe"] });
          assert.equal(r.status, 0, `${cmd}\n${r.stderr}${r.stdout}`);
        }
        const all = await project.stack.getAllConfig();
        const raw = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, v.value]));
        const secretKeys = Object.entries(all)
          .filter(([, v]) => v.secret)
          .map(([k]) => k);
        assert.ok(secretKeys.includes("runner-secrets:onePasswordToken"), "the token was not stored as a secret");
        const cfg = parseConfig(raw, secretKeys);
        if (stackName === "ringtail") {
          assert.equal(cfg.nixos!.port, 2222);
          assert.equal(cfg.nixos!.keepOnDestroy, true);
          assert.match(cfg.nixos!.hostKey, /^ssh-ed25519 AAAA/);
          assert.equal(cfg.registryCheck.enabled, true, "docs/operating.md turns the check off, then on again");
        } else {
          assert.equal(cfg.onePassword.mode, "connect");
          assert.equal(cfg.kubernetes!.secretName, "zot-ci-apikey");
          assert.equal(cfg.kubernetes!.readyTimeoutSeconds, 120);
        }
      } finally {
        await project.remove();
      }
    });
  }
});
