// Self-tests of the SSH test host, the provider-like runner and procWatch.
// Each assertion checks something that would be false on a misconfigured
// host (wrong shell, env accepted, host key not enforced, stand-ins missed).

import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

import { startSshHost, type SshHost } from "../support/sshHost";
import { runRemote, type RemoteConn } from "../support/sshRun";
import { watchProcesses } from "../support/procWatch";

let host: SshHost;
const conn = (user: string): RemoteConn => host.conn(user);
const sleep = (ms: number) => new Promise((r) => setTimeout(r, ms));

before(async () => {
  // Installs nothing when everything is present; CI runs it anyway from .ci/run.
  execFileSync("bash", [path.join(__dirname, "..", "setup", "ssh-host.sh")], { stdio: "inherit" });
  host = await startSshHost();
});
after(async () => {
  await host?.stop();
});

describe("login shells parse the command text", () => {
  it("rs-fish runs fish: fish-only syntax works and the shell process is fish", async () => {
    const r = await runRemote(conn(host.users.fish), "set -l x fish-ok; echo $x; ps -o comm= -p $fish_pid; echo $FISH_VERSION");
    assert.equal(r.code, 0, r.stderr);
    const [x, comm, version] = r.stdout.trim().split("\n");
    assert.equal(x, "fish-ok");
    assert.equal(comm, "fish");
    assert.match(version ?? "", /^\d+\.\d+/);
  });

  it("the same fish-only text is not understood by bash", async () => {
    const r = await runRemote(conn(host.users.bash), "set -l x fish-ok; echo $x");
    assert.doesNotMatch(r.stdout, /fish-ok/);
  });

  for (const [key, comm, probe] of [
    ["bash", "bash", 'echo "$BASH_VERSION"'],
    ["zsh", "zsh", 'echo "$ZSH_VERSION"'],
    ["dash", "dash", 'echo "${BASH_VERSION:-none}${ZSH_VERSION:-}"'],
  ] as const) {
    it(`rs-${key} runs ${comm}`, async () => {
      const r = await runRemote(conn(host.users[key]), `ps -o comm= -p $$; ${probe}`);
      assert.equal(r.code, 0, r.stderr);
      const [got, version] = r.stdout.trim().split("\n");
      assert.equal(got, comm);
      if (key === "dash") assert.equal(version, "none");
      else assert.match(version ?? "", /^\d+\.\d+/);
    });
  }

  it("the text is one verbatim exec request (no local shell, no word re-joining)", async () => {
    const r = await runRemote(conn(host.users.bash), `printf '[%s]\\n' "a  b" '$HOME' -- "x;y"`);
    assert.equal(r.stdout, "[a  b]\n[$HOME]\n[--]\n[x;y]\n");
  });

  it("the remote exit status comes back", async () => {
    const r = await runRemote(conn(host.users.fish), "false");
    assert.equal(r.code, 1);
  });
});

describe("stdin, host key, environment", () => {
  it("stdin arrives byte for byte and is closed (cat ends)", async () => {
    const input = "line one\nZOT_CI_API_KEY=zak_\u00e9x\n\n";
    const r = await runRemote(conn(host.users.fish), "cat", { stdin: input });
    assert.equal(r.code, 0);
    assert.equal(r.stdout, input);
  });

  it("without stdin the remote command sees EOF at once", async () => {
    const r = await runRemote(conn(host.users.fish), "cat; echo eof", { timeoutMs: 10_000 });
    assert.equal(r.stdout, "eof\n");
  });

  it("a host key with a trailing comment is accepted (authorized_keys format)", async () => {
    const r = await runRemote({ ...conn(host.users.bash), hostKey: `${host.hostKey} root@ringtail` }, "echo ok");
    assert.equal(r.stdout, "ok\n");
  });

  it("a wrong pinned host key is refused", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-otherkey-"));
    try {
      execFileSync("ssh-keygen", ["-q", "-t", "ed25519", "-N", "", "-C", "", "-f", path.join(dir, "k")]);
      const other = fs.readFileSync(path.join(dir, "k.pub"), "utf8").trim();
      assert.notEqual(other, host.hostKey);
      const r = await runRemote({ ...conn(host.users.fish), hostKey: other }, "echo should-not-run");
      assert.equal(r.code, 255);
      assert.equal(r.stdout, "");
      assert.match(r.stderr, /Host key verification failed|REMOTE HOST IDENTIFICATION HAS CHANGED/);
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });

  it("environment sent by the client is dropped by sshd (no AcceptEnv)", async () => {
    const r = await runRemote(conn(host.users.bash), 'echo "FOO=[${FOO-unset}] LANG=[${LANG-unset}]"', {
      extraSshArgs: ["-o", "SetEnv=FOO=bar LANG=C.UTF-8"],
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "FOO=[unset] LANG=[unset]\n");
  });

  it("abortAfterStdinBytes kills the connection mid-stdin; the remote side got only that much", async () => {
    const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-abort-"));
    fs.chmodSync(dir, 0o777);
    try {
      const target = path.join(dir, "partial");
      const r = await runRemote(conn(host.users.bash), `cat > ${target}; echo finished > ${target}.done`, {
        stdin: "x".repeat(100_000),
        abortAfterStdinBytes: 1000,
      });
      assert.equal(r.aborted, true);
      assert.equal(r.code, null);
      // The remote cat sees the channel close; give it a moment to exit.
      for (let i = 0; i < 50 && !fs.existsSync(`${target}.done`); i++) await sleep(50);
      assert.equal(fs.statSync(target).size, 1000);
      const after = await runRemote(conn(host.users.bash), "echo still-up");
      assert.equal(after.stdout, "still-up\n");
    } finally {
      fs.rmSync(dir, { recursive: true, force: true });
    }
  });
});

describe("sudo and the stand-ins", () => {
  it("rs-fish has passwordless sudo to root", async () => {
    const r = await runRemote(conn(host.users.fish), "sudo -n id -u");
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout, "0\n");
  });

  it("rs-needpw's sudo needs a password, so sudo -n fails", async () => {
    const r = await runRemote(conn(host.users.needPassword), "sudo -n true");
    assert.equal(r.code, 1);
    assert.match(r.stderr, /a password is required/);
  });

  it("sudo -n nixos-rebuild (sent through fish) hits the stand-in and records argv as root", async () => {
    host.standins.reset();
    const r = await runRemote(
      conn(host.users.fish),
      "sudo -n nixos-rebuild switch --flake '/etc/blumeops/nixos/ringtail#ringtail'; echo rc=$status",
    );
    assert.equal(r.stdout, "rc=0\n", r.stderr);
    const calls = host.standins.calls();
    assert.equal(calls.length, 1);
    assert.equal(calls[0]!.name, "nixos-rebuild");
    assert.deepEqual(calls[0]!.argv, ["switch", "--flake", "/etc/blumeops/nixos/ringtail#ringtail"]);
    assert.equal(calls[0]!.uid, 0);
    assert.ok(Math.abs(calls[0]!.time / 1e6 - Date.now()) < 60_000, "time is wall-clock ns");
  });

  it("a plain (non-sudo) systemctl also hits the stand-in, as the user", async () => {
    host.standins.reset();
    const uid = Number(execFileSync("id", ["-u", host.users.fish], { encoding: "utf8" }).trim());
    const r = await runRemote(conn(host.users.fish), "systemctl is-active 'gitea-runner-nix_container_builder.service'");
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(
      host.standins.calls().map((c) => [c.name, c.argv, c.uid]),
      [["systemctl", ["is-active", "gitea-runner-nix_container_builder.service"], uid]],
    );
  });

  it("setFailure makes the stand-in exit with the code and print the output; null and reset undo it", async () => {
    host.standins.reset();
    host.standins.setFailure("nixos-rebuild", { exitCode: 3 });
    let r = await runRemote(conn(host.users.fish), "sudo -n nixos-rebuild switch; echo rc=$status");
    assert.equal(r.stdout, "rc=3\n");
    const lines = r.stderr.trimEnd().split("\n");
    assert.equal(lines.length, 100);
    assert.match(lines[99]!, /^error: .*exit code 3/);

    host.standins.setFailure("systemctl", { exitCode: 4, output: "unit not found\n" });
    r = await runRemote(conn(host.users.bash), "sudo -n systemctl restart x");
    assert.equal(r.code, 4);
    assert.equal(r.stderr, "unit not found\n");

    host.standins.setFailure("nixos-rebuild", null);
    r = await runRemote(conn(host.users.fish), "sudo -n nixos-rebuild switch");
    assert.equal(r.code, 0);
    host.standins.reset();
    r = await runRemote(conn(host.users.bash), "sudo -n systemctl restart x");
    assert.equal(r.code, 0);
    assert.equal(host.standins.calls().length, 1, "reset cleared the earlier calls");
  });
});

describe("procWatch", () => {
  it("sees a needle in a remote process's argv and environment, by pid and exe", async () => {
    const needle = `needle-${randomBytes(6).toString("hex")}`;
    const [a, b] = [needle.slice(0, 4), needle.slice(4)]; // the command text never holds the whole needle
    const watch = watchProcesses(needle);
    await runRemote(conn(host.users.bash), `exec -a "${a}""${b}" sleep 0.3 & N="${a}""${b}" sleep 0.3; wait`);
    const hits = await watch.stop();
    assert.ok(
      hits.some((h) => /exe \/usr\/bin\/sleep cmdline: needle-/.test(h)),
      hits.join("\n"),
    );
    assert.ok(
      hits.some((h) => /exe \/usr\/bin\/sleep environ: N=needle-/.test(h)),
      hits.join("\n"),
    );
    assert.ok(
      hits.every((h) => !h.includes("/usr/bin/ssh ")),
      "the needle was never in the local ssh argv",
    );
  });

  it("reports nothing when the needle is absent", async () => {
    const needle = `absent-${randomBytes(6).toString("hex")}`;
    const watch = watchProcesses(needle);
    await runRemote(conn(host.users.bash), "sleep 0.2");
    assert.deepEqual(await watch.stop(), []);
  });
});
