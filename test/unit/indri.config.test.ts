// indri: bad Kubernetes settings are refused by the real program before anything is registered,
// each naming its full config key.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import { runStack } from "../support/mockStack";

type Case = [key: string, value: unknown, message: RegExp];

async function refused(k8s: Record<string, unknown>): Promise<string> {
  const run = await runStack("indri", { config: { "runner-secrets:kubernetes": k8s } });
  assert.ok(run.error, `accepted ${JSON.stringify(k8s)}`);
  assert.equal(run.resources.length, 0, `registered ${run.resources.map((r) => r.name).join(", ")}`);
  return run.error.message;
}

describe("indri: Kubernetes names are validated as Kubernetes demands", () => {
  const label = /must be a DNS-1123 label/;
  const subdomain = /must be a DNS-1123 subdomain/;
  const cases: Case[] = [
    ["namespace", "Forgejo-Runner", label],
    ["namespace", "forgejo_runner", label],
    ["namespace", "forgejo.runner", label],
    ["namespace", "x".repeat(64), /at most 63|Too big|too_big|<=63/i],
    ["namespace", "-runner", label],
    ["deployment", "forgejo runner", subdomain],
    ["deployment", "Forgejo-Runner", subdomain],
    ["deployment", "runner-", subdomain],
    ["container", "Runner", label],
    ["container", "runner.main", label],
    ["secretName", "zot/ci", subdomain],
    ["secretName", "ZOT", subdomain],
    ["externalSecret", "zot ci", subdomain],
    ["volumeName", "zot.env", label],
    ["volumeName", "Zot", label],
    ["envFilePath", "run/secrets/zot-ci.env", /must be an absolute path/],
    ["envFilePath", "/run/secrets/../zot-ci.env", /must not contain \. or \.\. segments/],
    ["envFilePath", "/run/secrets/zot ci.env", /must be an absolute path/],
  ];
  for (const [key, value, message] of cases) {
    it(`kubernetes.${key} = ${JSON.stringify(value).slice(0, 40)} is refused`, async () => {
      const error = await refused({ [key]: value });
      assert.match(error, new RegExp(`runner-secrets:kubernetes\\.${key}: `));
      assert.match(error, message);
    });
  }

  it("every problem is reported at once, each with its full key", async () => {
    const error = await refused({ namespace: "A", container: "B", secretName: "c/d" });
    for (const k of ["namespace", "container", "secretName"]) assert.match(error, new RegExp(`runner-secrets:kubernetes\\.${k}: `));
  });
});

describe("indri: context and secret store", () => {
  it("an empty context is refused", async () => {
    const error = await refused({ context: "" });
    assert.match(error, /runner-secrets:kubernetes\.context: /);
  });

  it("a context with a control character is refused", async () => {
    const error = await refused({ context: "minikube\n" });
    assert.match(error, /runner-secrets:kubernetes\.context: /);
  });

  for (const kind of ["Secretstore", "ExternalSecret", "ClusterSecretstore", ""]) {
    it(`secretStore.kind ${JSON.stringify(kind)} is refused`, async () => {
      const error = await refused({ secretStore: { kind, name: "onepassword-blumeops" } });
      assert.match(error, /runner-secrets:kubernetes\.secretStore\.kind: must be "SecretStore" or "ClusterSecretStore"/);
    });
  }

  it("secretStore.name must be a Kubernetes name", async () => {
    const error = await refused({ secretStore: { kind: "ClusterSecretStore", name: "One Password" } });
    assert.match(error, /runner-secrets:kubernetes\.secretStore\.name: /);
  });

  for (const kind of ["SecretStore", "ClusterSecretStore"]) {
    it(`secretStore.kind ${kind} is accepted and used`, async () => {
      const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { secretStore: { kind, name: "op" } } } });
      assert.equal(run.error, undefined);
      const es = run.resources.find((r) => r.name === "zot-ci-external-secret")!;
      assert.deepEqual((es.inputs.spec as any).secretStoreRef, { kind, name: "op" });
    });
  }

  it("an unknown key under kubernetes is refused (a misspelt setting never falls back to a default)", async () => {
    const error = await refused({ refreshIntervall: "1h" });
    assert.match(error, /runner-secrets:kubernetes\.refreshIntervall: unknown key/);
  });
});

describe("indri: timing settings", () => {
  const cases: Case[] = [
    // Gone: ESO syncs only when up changes the ExternalSecret; an old stack file says so.
    ["refreshInterval", "1h", /no longer used: ESO re-syncs only when `pulumi up` changes the ExternalSecret/],
    ["readyTimeoutSeconds", "soon", /must be a number of seconds/],
    ["readyTimeoutSeconds", 5, /runner-secrets:kubernetes\.readyTimeoutSeconds: /],
    ["fieldManager", "runner secrets", /must be a field manager name/],
  ];
  for (const [key, value, message] of cases) {
    it(`kubernetes.${key} = ${JSON.stringify(value)} is refused`, async () => {
      const error = await refused({ [key]: value });
      assert.match(error, new RegExp(`runner-secrets:kubernetes\\.${key}: `));
      assert.match(error, message);
    });
  }
});
