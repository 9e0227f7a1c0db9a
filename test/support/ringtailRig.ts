// Shared pieces of the ringtail-over-SSH tests: the stack config pointed at the test host, per-test
// paths under the host's temp root, fresh keys, and the leak checks every run goes through.
import assert from "node:assert/strict";
import { execFileSync } from "node:child_process";
import { randomBytes } from "node:crypto";
import * as fs from "node:fs";
import * as path from "node:path";

import type { Engine, UpOptions, UpResult } from "./engine";
import { DEFAULT_ENV_VAR } from "../../lib/config";
import { committedValue, parsedStackConfig, runStack, type StackRun } from "./mockStack";
import { watchProcesses } from "./procWatch";
import { startSshHost, type SshHost } from "./sshHost";

export const SETUP_SCRIPT = path.join(__dirname, "..", "setup", "ssh-host.sh");
export const FLAKE = committedValue("ringtail", "nixos.flake");
export const UNIT = committedValue("ringtail", "nixos.unit");
export const ENV_VAR = DEFAULT_ENV_VAR;
export const WRITER = "zot-ci-env-file";
export const REBUILD = "zot-ci-nixos-rebuild";
export const RESTART = "zot-ci-restart";

/** Installs what is missing (nothing, usually) and starts one sshd for a whole test file. */
export async function startHost(): Promise<SshHost> {
  execFileSync("bash", [SETUP_SCRIPT], { stdio: "inherit" });
  return startSshHost();
}

/** A key no other test uses, so a hit anywhere is attributable. */
export function freshKey(): string {
  return `zak_${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export interface Paths {
  dir: string;
  file: string;
  tmp: string;
}

/** Where case `name` keeps its env file: `<root>/<name>/etc/forgejo-runner/zot-api-key.env`. */
export function pathsFor(host: SshHost, name: string, fileName = "zot-api-key.env"): Paths {
  const dir = path.posix.join(host.root, name, "etc", "forgejo-runner");
  return { dir, file: path.posix.join(dir, fileName), tmp: path.posix.join(dir, `.${fileName}.runner-secrets-tmp`) };
}

export interface StackOptions {
  user?: string;
  key: string;
  /** Overrides of runner-secrets:nixos (merged over the test host's connection and paths). */
  nixos?: Record<string, unknown>;
  config?: Record<string, unknown>;
  /** Leave runner-secrets:sshPrivateKey unset (the program then relies on the SSH agent). */
  agent?: boolean;
}

/** One mock run of the real program with the ringtail stack pointed at the test host. */
export function ringtailStack(host: SshHost, paths: Paths, o: StackOptions): Promise<StackRun> {
  const config: Record<string, unknown> = {
    "runner-secrets:nixos": {
      host: host.host,
      port: host.port,
      user: o.user ?? host.users.fish,
      hostKey: host.hostKey,
      envFile: paths.file,
      ...(o.nixos ?? {}),
    },
    "runner-secrets:registryCheck": { enabled: false },
    ...(o.agent ? {} : { "runner-secrets:sshPrivateKey": host.clientPrivateKey }),
    ...(o.config ?? {}),
  };
  return runStack("ringtail", { config, key: o.key, secretKeys: o.agent ? [] : ["runner-secrets:sshPrivateKey"] });
}

/**
 * engine.up (or destroy) with the key watched on every process of the host, then the checks that
 * it leaked nowhere: no /proc cmdline/environ, no stand-in argument, no stdout/stderr, no error text.
 */
export async function watched(host: SshHost, key: string | string[], action: () => Promise<UpResult>): Promise<UpResult> {
  const keys = Array.isArray(key) ? key : [key];
  const watches = keys.map((k) => watchProcesses(k, 5));
  let result: UpResult;
  try {
    result = await action();
  } finally {
    const hits = (await Promise.all(watches.map((w) => w.stop()))).flat();
    assert.deepEqual(hits, [], "the key appeared in a process's command line or environment");
  }
  for (const k of keys) {
    for (const r of result.runs) {
      assert.ok(!r.result.stdout.includes(k), `the key is in the stdout of ${r.op} ${r.name}`);
      assert.ok(!r.result.stderr.includes(k), `the key is in the stderr of ${r.op} ${r.name}`);
      assert.ok(!r.command.includes(k), `the key is in the command text of ${r.name}`);
    }
    if (result.error) assert.ok(!result.error.message.includes(k), "the key is in the error text");
    for (const c of host.standins.calls()) assert.ok(!c.argv.some((a) => a.includes(k)), `the key is in the arguments of ${c.name}`);
  }
  return result;
}

/** Mock run + engine.up, watched for leaks; fails the test if the program itself failed. */
export async function up(host: SshHost, engine: Engine, paths: Paths, o: StackOptions, upOpts?: UpOptions): Promise<UpResult> {
  const run = await ringtailStack(host, paths, o);
  assert.equal(run.error, undefined, `the program failed: ${run.error?.message}`);
  return watched(host, o.key, () => engine.up(run, upOpts));
}

export function mode(p: string): string {
  return (fs.statSync(p).mode & 0o7777).toString(8).padStart(4, "0");
}

export function owner(p: string): string {
  const s = fs.statSync(p);
  return `${s.uid}:${s.gid}`;
}

/** Stand-in calls as "name argv…" strings, in call order. */
export function calls(host: SshHost): string[] {
  return host.standins.calls().map((c) => [c.name, ...c.argv].join(" "));
}

export const REBUILD_CALL = `nixos-rebuild switch --flake ${FLAKE}`;
export const RESTART_CALL = `systemctl restart ${UNIT}`;

/** Waits until `p` is gone (the remote side may still be cleaning up after a cut connection). */
export async function gone(p: string, ms = 5000): Promise<boolean> {
  const end = Date.now() + ms;
  while (Date.now() < end) {
    if (!fs.existsSync(p)) return true;
    await new Promise((r) => setTimeout(r, 20));
  }
  return !fs.existsSync(p);
}

/** The validated nixos settings of the ringtail stack pointed at the test host, as the program gets them. */
export function nixosConfig(host: SshHost, p: Paths) {
  const cfg = parsedStackConfig("ringtail", {
    "runner-secrets:nixos": { host: host.host, port: host.port, user: host.users.fish, hostKey: host.hostKey, envFile: p.file },
  });
  if (cfg.target !== "nixos") throw new Error("the ringtail stack file no longer targets nixos");
  return cfg.nixos;
}
