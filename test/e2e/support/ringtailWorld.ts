// Everything the ringtail stack meets on the real engine: the real sshd (fish login shell, sudo, the
// nixos-rebuild/systemctl stand-ins), the real registry with htpasswd (the registry check), and
// the 1Password Connect stand-in the onepassword plugin reads the key from. One world per test
// file; one project (its own state, stack file and env-file path) per scenario.
import assert from "node:assert/strict";
import { createHash, randomBytes } from "node:crypto";
import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";

import { envFileContent } from "../../../components/nixos";
import { keyDigest } from "../../../lib/registryKey";
import { committedValue } from "../../support/mockStack";
import { startRegistry, type TestRegistry } from "../../support/registry";
import { startSshHost, type SshHost, type StandinCall } from "../../support/sshHost";
import { startConnect, type ConnectStandIn } from "./connect";
import { newProject, ROOT, type Project } from "./realEngine";
import { redactionForms } from "../../../lib/redact";

// The homelab's facts, as the committed stack file (copied into each project) sets them.
export const VAULT = committedValue("ringtail", "onePassword.vault");
export const ITEM = committedValue("ringtail", "onePassword.item");
export const REGISTRY_USER = committedValue("ringtail", "registryCheck.user");
export const UNIT = committedValue("ringtail", "nixos.unit");
export const FLAKE = committedValue("ringtail", "nixos.flake");

export function freshKey(): string {
  return `zak_${randomBytes(18).toString("base64url").replace(/[-_]/g, "x")}`;
}

export const sha256 = (s: string) => createHash("sha256").update(s, "utf8").digest("hex");

export interface World {
  host: SshHost;
  connect: ConnectStandIn;
  registry: TestRegistry;
  /** The key in 1Password and in the registry now. */
  key: string;
  /** A rotation: the registry takes the new key, then 1Password gets it (the runbook's order). */
  rotate(): Promise<string>;
  stop(): Promise<void>;
}

export async function startWorld(): Promise<World> {
  execFileSync("bash", [path.join(ROOT, "test/setup/ssh-host.sh")], { stdio: "inherit" });
  const host = await startSshHost({ logLevel: "VERBOSE", secondPort: true });
  const connect = await startConnect();
  connect.addVault(VAULT);
  const key = freshKey();
  connect.putItem(VAULT, ITEM, [{ label: "credential", value: key }], "API_CREDENTIAL");
  const registry = await startRegistry({ auth: { user: REGISTRY_USER, key } });
  const world: World = {
    host,
    connect,
    registry,
    key,
    async rotate() {
      const next = freshKey();
      await registry.setKey(next);
      connect.setField(VAULT, ITEM, "credential", next);
      world.key = next;
      return next;
    },
    async stop() {
      await Promise.allSettled([host.stop(), connect.close(), registry.stop()]);
    },
  };
  return world;
}

export interface Ringtail {
  project: Project;
  /** The env file this scenario's stack writes (under the host's temp root). */
  envFile: string;
  /** Sessions sshd started (one per exec request) since the last call. */
  sessions(): number;
  /** Stand-in calls since the last call. */
  calls(): StandinCall[];
}

/**
 * A ringtail project configured the way an operator would (`pulumi config set`, secrets with
 * `--secret`), pointed at the test host, the Connect stand-in and the test registry.
 */
export async function ringtailProject(world: World, name: string, user?: string): Promise<Ringtail> {
  const { host } = world;
  const project = await newProject("ringtail");
  const envFile = path.posix.join(host.root, name, "etc", "forgejo-runner", "zot-api-key.env");
  const set = project.configSet.bind(project);
  set("nixos.host", host.host, { path: true });
  set("nixos.port", String(host.port), { path: true });
  set("nixos.user", user ?? host.users.fish, { path: true });
  set("nixos.hostKey", host.hostKey, { path: true });
  set("nixos.envFile", envFile, { path: true });
  set("sshPrivateKey", host.clientPrivateKey, { secret: true });
  set("onePassword.mode", "connect", { path: true });
  // The CLI takes any high-entropy value under a key whose name holds "pass" for a secret.
  set("onePassword.connectUrl", world.connect.url, { path: true, plaintext: true });
  set("onePasswordToken", world.connect.token, { secret: true });
  set("registryCheck.url", world.registry.url, { path: true });
  set("registryCheck.caFile", world.registry.caFile, { path: true });

  let logMark = fs.statSync(host.sshdLog).size;
  let callMark = host.standins.calls().length;
  return {
    project,
    envFile,
    sessions() {
      const text = fs.readFileSync(host.sshdLog, "utf8");
      const since = text.slice(logMark);
      logMark = text.length;
      return since.split("\n").filter((l) => /Starting session: command/.test(l)).length;
    },
    calls() {
      const all = host.standins.calls();
      const since = all.slice(callMark);
      callMark = all.length;
      return since;
    },
  };
}

/** Checks the env file holds exactly `key` under `envVar`, root-owned 0600. */
export function assertFileHolds(file: string, key: string, envVar = "ZOT_CI_API_KEY"): void {
  assert.ok(fs.existsSync(file), `${file} is missing`);
  assert.equal(fs.readFileSync(file, "utf8"), envFileContent(envVar, key));
  const st = fs.statSync(file);
  assert.equal((st.mode & 0o777).toString(8), "600");
  assert.equal(st.uid, 0);
  assert.equal(st.gid, 0);
}

/** The last restart saw the file holding `key`: the restarted unit reads the current key. */
export function assertRestartedWith(calls: StandinCall[], file: string, key: string, envVar = "ZOT_CI_API_KEY"): void {
  const restarts = calls.filter((c) => c.name === "systemctl" && c.argv[0] === "restart");
  assert.ok(restarts.length > 0, `no restart among ${JSON.stringify(calls.map((c) => c.argv.join(" ")))}`);
  const last = restarts[restarts.length - 1];
  assert.deepEqual(last.argv, ["restart", UNIT]);
  assert.equal(last.envFile, sha256(envFileContent(envVar, key)), "the last restart did not see the current key in the env file");
  assert.ok(last.time / 1e6 >= fs.statSync(file).mtimeMs - 1, "the unit was restarted before the file was written");
}

/** No plaintext key (nor its base64) in the state files, `stack export`, or the given outputs. */
export function assertNoLeak(p: Project, key: string, ...texts: string[]): void {
  const forms = redactionForms([key]);
  const where: [string, string][] = [
    ["state files", p.stateText()],
    ["pulumi stack export", p.exportText()],
    ...texts.map((t, i) => [`output ${i}`, t] as [string, string]),
  ];
  for (const [label, text] of where) {
    for (const f of forms) assert.ok(!text.includes(f), `the key appears in ${label}`);
  }
}

export const digestOf = keyDigest;
