// The ringtail env file, read as systemd reads it, and the writer script run over a real sshd as
// the fish user (the whole stack on the real engine is in test/e2e/ringtail*.e2e.test.ts).
import { after, before, beforeEach, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";

import { envFileContent, writeScript } from "../../components/nixos";
import { parseSystemdEnvFile, systemdGeneratorParse } from "../support/envFile";
import type { SshHost } from "../support/sshHost";
import { runRemote } from "../support/sshRun";
import { ENV_VAR, freshKey, mode, nixosConfig, owner, pathsFor, startHost, type Paths } from "../support/ringtailRig";

let host: SshHost;
before(async () => {
  host = await startHost();
});
after(async () => {
  await host?.stop();
});
beforeEach(() => host.standins.reset());

/** The file holds exactly `key` for ENV_VAR as systemd reads it, root-only, in a root-only dir. */
function assertKeyFile(p: Paths, key: string): void {
  const text = fs.readFileSync(p.file, "utf8");
  assert.equal(text, envFileContent(ENV_VAR, key));
  const parsed = parseSystemdEnvFile(text);
  assert.deepEqual(parsed.vars, { [ENV_VAR]: key });
  assert.deepEqual(parsed.ignored, []);
  // The environment.d generator expands $VARS after parsing (EnvironmentFile= does not).
  if (!key.includes("$")) assert.deepEqual(systemdGeneratorParse(text), { [ENV_VAR]: key }, "systemd's own parser reads it differently");
  assert.equal(mode(p.file), "0600");
  assert.equal(owner(p.file), "0:0");
  assert.equal(mode(p.dir), "0700");
  assert.equal(owner(p.dir), "0:0");
  assert.deepEqual(fs.readdirSync(p.dir), ["zot-api-key.env"], "nothing but the env file in its directory (no temp file)");
}

describe("the systemd env-file reader", () => {
  it("follows systemd's rules for comments, quotes and escapes", () => {
    const r = parseSystemdEnvFile(
      '# c\n; c2\n  # c3 \\\nSTILL_COMMENT=1\nA=\'x $y "z" \\n\'\nB = "q\\"\\$\\a"\nC=plain  \nbad-name=1\nnoequals\nD=\nA=last\n',
    );
    assert.deepEqual(r.vars, { B: 'q"$\\a', C: "plain", D: "", A: "last" });
    assert.deepEqual(r.ignored, ["bad-name"]);
    assert.deepEqual(parseSystemdEnvFile("K='v'").vars, { K: "v" }, "no trailing newline");
  });

  it("agrees with systemd's own parser on the file the program writes", () => {
    const key = freshKey();
    const bySystemd = systemdGeneratorParse(envFileContent(ENV_VAR, key));
    assert.ok(bySystemd, "systemd's environment generator is not installed (test/setup/ssh-host.sh installs it)");
    assert.deepEqual(bySystemd, { [ENV_VAR]: key });
    assert.deepEqual(parseSystemdEnvFile(envFileContent(ENV_VAR, key)).vars, bySystemd);
  });
});

describe("the writer script over SSH", () => {
  it("installs the file over a stale temp file left by a killed run", async () => {
    const p = pathsFor(host, "stale-tmp");
    fs.mkdirSync(p.dir, { recursive: true, mode: 0o700 });
    fs.writeFileSync(p.tmp, "ZOT_CI_API_KEY='zak_half", { mode: 0o644 });
    const key = freshKey();
    const r = await runRemote(host.conn(host.users.fish), writeScript(nixosConfig(host, p), ENV_VAR), {
      stdin: envFileContent(ENV_VAR, key),
    });
    assert.equal(r.code, 0, r.stderr);
    assertKeyFile(p, key);
  });

  it("refuses an env-file path that is a directory, and never moves the key into it", async () => {
    const p = pathsFor(host, "is-a-dir");
    fs.mkdirSync(p.file, { recursive: true, mode: 0o700 });
    const r = await runRemote(host.conn(host.users.fish), writeScript(nixosConfig(host, p), ENV_VAR), {
      stdin: envFileContent(ENV_VAR, freshKey()),
    });
    assert.equal(r.code, 5);
    assert.match(r.stderr, /is a directory; set runner-secrets:nixos.envFile to a file path/);
    assert.deepEqual(fs.readdirSync(p.file), []);
    assert.deepEqual(fs.readdirSync(p.dir), ["zot-api-key.env"], "a temp file was left beside it");
  });
});
