import { test } from "node:test";
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import { mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";
import { shellCommand, sudoStep, UnsafeScriptError, shellWord } from "../../lib/remoteScript";

test("command text is /bin/sh -c with the script as one single-quoted word, its summary first", () => {
  const text = shellCommand("say hi to /tmp/x", 'echo "hi $USER"\necho two');
  assert.equal(text, "/bin/sh -c '# say hi to /tmp/x\necho \"hi $USER\"\necho two\n'");
});

test("scripts or summaries with a single quote or a backslash are refused (fish reads those differently)", () => {
  assert.throws(() => shellCommand("s", "echo 'x'"), UnsafeScriptError);
  assert.throws(() => shellCommand("s", "echo \\$x"), UnsafeScriptError);
  assert.throws(() => shellCommand("it's", "true"), UnsafeScriptError);
  assert.throws(() => shellCommand("two\nlines", "true"), UnsafeScriptError);
});

test("shellWord() double-quotes safe values and refuses anything a shell would parse", () => {
  assert.equal(shellWord("/etc/blumeops/nixos/ringtail#ringtail"), '"/etc/blumeops/nixos/ringtail#ringtail"');
  for (const bad of ["a b", "$(id)", "`id`", 'a"b', "a'b", "a\nb", "a\\b", "a;b", "a|b", "", "a$b"]) {
    assert.throws(() => shellWord(bad), UnsafeScriptError, JSON.stringify(bad));
  }
});

test("sudoStep: names the step and shows only the tail of its output when it fails (real sh)", () => {
  // `sudo` is a shell function here: the step's own behaviour is under test, not sudo's.
  const dir = mkdtempSync(join(tmpdir(), "rs-step-"));
  const failing = join(dir, "fail.sh");
  writeFileSync(failing, "for i in $(seq 1 50); do echo line $i; done\nexit 7\n");
  const script = (argv: string[]) =>
    ["set -eu", 'sudo() { shift; "$@"; }', 'log="$(mktemp)"', 'trap "rm -f $log" EXIT', sudoStep("demo", argv, 3)].join("\n");
  const ok = spawnSync("/bin/sh", ["-c", script(["/bin/true"])], { encoding: "utf8" });
  assert.equal(ok.status, 0);
  assert.match(ok.stdout, /runner-secrets: demo: sudo -n \/bin\/true/);
  const bad = spawnSync("/bin/sh", ["-c", script(["/bin/sh", failing])], { encoding: "utf8" });
  assert.equal(bad.status, 7);
  assert.match(bad.stderr, /runner-secrets: step demo failed \(exit 7\): sudo -n \/bin\/sh .*fail.sh; last 3 lines/);
  assert.match(bad.stderr, /line 48\nline 49\nline 50/);
  assert.doesNotMatch(bad.stderr, /line 47/);
  rmSync(dir, { recursive: true });
});
