// indri under mocks: key rotation touches only the two digest annotations (ExternalSecret first),
// the same key changes nothing, the key is in no Kubernetes object, and every object goes through
// the explicit provider with the configured context (never the kubeconfig's current-context).
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { DEFAULT_KUBECONFIG, isSecretValue, revealed, runStack, type Registered, type StackRun } from "../support/mockStack";
import { keyDigest } from "../../lib/registryKey";

type Obj = Record<string, any>;

const KEY_A = "zak_fake_rotation_a";
const KEY_B = "zak_fake_rotation_b";

const isK8s = (r: Registered) => r.type.startsWith("kubernetes:") || r.type === "pulumi:providers:kubernetes";

/** Every k8s registration by name, inputs revealed; the provider's kubeconfig path is the mock's temp file. */
function k8sInputs(run: StackRun): Record<string, Obj> {
  assert.equal(run.error, undefined, String(run.error?.stack ?? run.error));
  const out: Record<string, Obj> = {};
  for (const r of run.resources.filter(isK8s)) {
    const inputs = revealed(r.inputs) as Obj;
    if (r.type === "pulumi:providers:kubernetes") inputs.kubeconfig = "<mock $KUBECONFIG>";
    out[`${r.type}::${r.name}`] = { inputs, provider: r.provider, dependsOn: [...r.dependsOn].sort() };
  }
  return out;
}

/** Paths where two JSON values differ. */
function diffPaths(a: unknown, b: unknown, at = ""): string[] {
  if (a !== null && b !== null && typeof a === "object" && typeof b === "object") {
    const keys = new Set([...Object.keys(a as Obj), ...Object.keys(b as Obj)]);
    return [...keys].flatMap((k) => diffPaths((a as Obj)[k], (b as Obj)[k], at ? `${at}.${k}` : k));
  }
  return Object.is(a, b) ? [] : [at];
}

let runA: StackRun;
let runB: StackRun;
let runA2: StackRun;

before(async () => {
  runA = await runStack("indri", { key: KEY_A });
  runB = await runStack("indri", { key: KEY_B });
  runA2 = await runStack("indri", { key: KEY_A });
});

describe("indri: rotation under mocks", () => {
  it("a new key changes exactly the ExternalSecret's approved digest, the sync wait and the pod-template annotation", () => {
    const a = k8sInputs(runA);
    const b = k8sInputs(runB);
    assert.deepEqual(Object.keys(a).sort(), Object.keys(b).sort());
    const changed = Object.keys(a).flatMap((name) =>
      diffPaths(a[name], b[name]).map((p) => `${name.split("::")[1].replace(/-[0-9a-f]{8}$/, "-<shape>")}: ${p}`),
    );
    assert.deepEqual(changed.sort(), [
      "zot-ci-external-secret: inputs.spec.target.template.data.ZOT_CI_API_KEY",
      "zot-ci-external-secret: inputs.spec.target.template.data.key-digest",
      "zot-ci-external-secret: inputs.spec.target.template.data.zot-ci.env",
      "zot-ci-rollout: inputs.spec.template.metadata.annotations.runner-secrets/key-digest",
      "zot-ci-secret-synced: inputs.metadata.annotations.pulumi.com/waitFor",
      "zot-ci-secret-synced: inputs.metadata.annotations.runner-secrets/key-digest",
    ]);
    const es = b["kubernetes:external-secrets.io/v1:ExternalSecret::zot-ci-external-secret"].inputs;
    const patch = b["kubernetes:apps/v1:DeploymentPatch::zot-ci-rollout"].inputs;
    const synced = b["kubernetes:core/v1:SecretPatch::zot-ci-secret-synced"].inputs;
    // Digests, never the key.
    for (const t of Object.values(es.spec.target.template.data as Record<string, string>))
      assert.ok(t.includes(`"${keyDigest(KEY_B)}"`), t);
    assert.equal(synced.metadata.annotations["runner-secrets/key-digest"], keyDigest(KEY_B));
    assert.equal(
      synced.metadata.annotations["pulumi.com/waitFor"],
      `jsonpath={.data['key-digest']}=${Buffer.from(keyDigest(KEY_B)).toString("base64")}`,
    );
    assert.equal(patch.spec.template.metadata.annotations["runner-secrets/key-digest"], keyDigest(KEY_B));
    assert.notEqual(keyDigest(KEY_A), keyDigest(KEY_B));
    assert.equal(runB.outputs.keyDigest, keyDigest(KEY_B));
  });

  it("in that order: the ExternalSecret, the Secret's sync wait, the wiring patch, the rollout; all after the registry check", () => {
    for (const run of [runA, runB]) {
      const es = run.resources.find((r) => r.name === "zot-ci-external-secret")!;
      const synced = run.resources.find((r) => r.name === "zot-ci-secret-synced")!;
      const patch = run.resources.find((r) => r.name.startsWith("zot-ci-deployment-patch-"))!;
      assert.ok(patch.dependsOn.includes("zot-ci-secret-synced"), patch.dependsOn.join(", "));
      assert.ok(synced.dependsOn.includes("zot-ci-external-secret"), synced.dependsOn.join(", "));
      assert.ok(synced.dependsOn.includes("zot-ci-registry-check"), synced.dependsOn.join(", "));
      assert.ok(patch.dependsOn.includes("zot-ci-external-secret"), patch.dependsOn.join(", "));
      const rollout = run.resources.find((r) => r.name === "zot-ci-rollout")!;
      assert.ok(rollout.dependsOn.includes(patch.name) && rollout.dependsOn.includes("zot-ci-secret-synced"), rollout.dependsOn.join(", "));
      assert.ok(es.dependsOn.includes("zot-ci-registry-check"), es.dependsOn.join(", "));
      assert.ok(!es.dependsOn.some((d) => d.startsWith("zot-ci-deployment-patch")));
      assert.ok(run.resources.indexOf(es) < run.resources.indexOf(patch), "registered first");
    }
  });

  it("the same key twice: identical inputs for every Kubernetes registration", () => {
    assert.deepEqual(k8sInputs(runA2), k8sInputs(runA));
  });

  it("the key appears in no Kubernetes object's inputs, not even as a secret", () => {
    for (const [run, key] of [
      [runA, KEY_A],
      [runB, KEY_B],
    ] as const) {
      const forms = [key, Buffer.from(key).toString("base64"), key.slice(4)];
      for (const r of run.resources.filter(isK8s)) {
        const walk = (v: unknown, at: string): void => {
          assert.ok(!isSecretValue(v), `${r.name}: ${at} holds a secret value`);
          if (typeof v === "string") for (const f of forms) assert.ok(!v.includes(f), `${r.name}: ${at} contains the key`);
          if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
        };
        walk(r.inputs, "inputs");
      }
    }
  });
});

describe("indri: the explicit provider", () => {
  it("uses the configured context, not the kubeconfig's current-context (other-cluster)", () => {
    assert.match(DEFAULT_KUBECONFIG, /current-context: other-cluster/);
    const providers = runA.resources.filter((r) => r.type === "pulumi:providers:kubernetes");
    assert.equal(providers.length, 1);
    assert.equal((revealed(providers[0].inputs) as Obj).context, "minikube");
  });

  it("applies server-side (a misspelt field is then refused, not silently pruned: see test/integration/indri.apiserver.test.ts)", () => {
    const p = runA.resources.find((r) => r.type === "pulumi:providers:kubernetes")!;
    assert.ok([true, "true"].includes((revealed(p.inputs) as Obj).enableServerSideApply));
  });

  it("every Kubernetes object is registered with that provider", () => {
    // The ExternalSecret, the sync wait, the two patches, and the read of the live Deployment.
    const objects = runA.resources.filter((r) => r.type.startsWith("kubernetes:"));
    assert.equal(objects.length, 5);
    for (const r of objects) assert.match(r.provider ?? "", /[$:]pulumi:providers:kubernetes::zot-ci-k8s::zot-ci-k8s-id$/, r.name);
  });

  it("follows a configured context", async () => {
    const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { context: "other-cluster" } } });
    assert.equal(run.error, undefined);
    const p = run.resources.find((r) => r.type === "pulumi:providers:kubernetes")!;
    assert.equal((revealed(p.inputs) as Obj).context, "other-cluster");
  });

  it("a context the kubeconfig does not define: refused before any resource, naming the key (no fallback)", async () => {
    const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { context: "minikube-typo" } } });
    assert.match(String(run.error?.message), /runner-secrets:kubernetes\.context: kube context "minikube-typo" not found/);
    assert.match(String(run.error?.message), /never falls back to the current context/);
    assert.equal(run.resources.length, 0);
  });

  it("no kubeconfig at all: refused the same way", async () => {
    const run = await runStack("indri", { kubeconfig: null });
    assert.match(String(run.error?.message), /runner-secrets:kubernetes\.context: kube context "minikube" not found .*no such file/);
    assert.equal(run.resources.length, 0);
  });
});
