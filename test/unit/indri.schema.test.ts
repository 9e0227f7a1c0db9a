// indri: every Kubernetes object the stack registers, checked against the published schemas
// (ESO's external-secrets.io/v1 CRD models, Kubernetes' core models) plus a strict unknown-field
// check, and the behaviour issue 4 asks of the ExternalSecret and the DeploymentPatch.
//
// The objects come from the REAL program (index.ts) run under mocks with Pulumi.indri.yaml.
import { before, describe, it } from "node:test";
import assert from "node:assert/strict";
import { FAKE_KEY, isSecretValue, revealed, runStack, type Registered, type StackRun } from "../support/mockStack";
import { loadModels, modelErrors, schemaProblems, unknownFields } from "../support/k8sSchemas";
import { applyPatch, baseDeployment, fieldPaths } from "../support/argoDeployment";
import { parseDotenv, renderTemplate } from "../support/esoTemplate";

type Obj = Record<string, any>;

/** The Kubernetes objects (not providers) the run registered, by kind. */
function k8sObjects(run: StackRun): { es: Registered; patch: Registered; all: Registered[] } {
  assert.equal(run.error, undefined, String(run.error?.stack ?? run.error));
  // Kubernetes objects the stack writes (not the read of the live Deployment).
  const all = run.resources.filter((r) => r.type.startsWith("kubernetes:") && r.type !== "kubernetes:apps/v1:Deployment");
  const es = all.find((r) => r.type === "kubernetes:external-secrets.io/v1:ExternalSecret");
  // The Deployment is patched by two resources: the lists (named by their shape) and the digest
  // annotation (updated on each rotation). Together they are "the patch" the tests below examine.
  const wiring = all.find((r) => r.type === "kubernetes:apps/v1:DeploymentPatch" && /-deployment-patch-[0-9a-f]{8}$/.test(r.name));
  const rollout = all.find((r) => r.type === "kubernetes:apps/v1:DeploymentPatch" && r.name.endsWith("-rollout"));
  assert.ok(es && wiring && rollout, `have ${all.map((r) => `${r.type} ${r.name}`).join(", ")}`);
  const w = wiring.inputs as Obj;
  const template = { metadata: (rollout.inputs as Obj).spec.template.metadata, spec: w.spec.template.spec };
  const patch = { ...wiring, inputs: { ...w, spec: { template } } } as Registered;
  return { es, patch, all };
}

/** Inputs as the provider would send them; fails if anything in them is a Pulumi secret. */
function plainInputs(r: Registered): Obj {
  const walk = (v: unknown, at: string): void => {
    assert.ok(!isSecretValue(v), `${r.name}: ${at} is a secret (the key must not be in any object Pulumi writes)`);
    if (v !== null && typeof v === "object") for (const [k, x] of Object.entries(v)) walk(x, `${at}.${k}`);
  };
  walk(r.inputs, "inputs");
  return revealed(r.inputs) as Obj;
}

// --- the default indri run ------------------------------------------------------------------

let run: StackRun;
let es: Obj;
let patch: Obj;

before(async () => {
  await loadModels();
  run = await runStack("indri", {});
  const objs = k8sObjects(run);
  es = plainInputs(objs.es);
  patch = plainInputs(objs.patch);
});

describe("indri: what the stack registers", () => {
  it("registers exactly four Kubernetes objects (an ExternalSecret, a SecretPatch that waits for the sync, two DeploymentPatches)", () => {
    const { all } = k8sObjects(run);
    assert.deepEqual(all.map((r) => r.type).sort(), [
      "kubernetes:apps/v1:DeploymentPatch",
      "kubernetes:apps/v1:DeploymentPatch",
      "kubernetes:core/v1:SecretPatch",
      "kubernetes:external-secrets.io/v1:ExternalSecret",
    ]);
  });
});

describe("indri: ExternalSecret against the external-secrets.io/v1 schema", () => {
  it("passes the ESO v1 model's validator", () => {
    assert.deepEqual(modelErrors("ExternalSecret", es), []);
  });

  it("has no field the ESO v1 model does not declare (strict check)", () => {
    assert.deepEqual(unknownFields("ExternalSecret", es), []);
  });

  it("fails when a field is misspelt: remoteRef.propery, secretStoreRef.knd", () => {
    const misspelt = structuredClone(es);
    misspelt.spec.data[0].remoteRef.propery = misspelt.spec.data[0].remoteRef.property;
    delete misspelt.spec.data[0].remoteRef.property;
    misspelt.spec.secretStoreRef.knd = misspelt.spec.secretStoreRef.kind;
    delete misspelt.spec.secretStoreRef.kind;
    // The published validator alone accepts both (ESO would sync the field "password" and use the
    // default store kind): that is why the strict check exists.
    assert.deepEqual(modelErrors("ExternalSecret", misspelt), []);
    const problems = schemaProblems("ExternalSecret", misspelt);
    assert.deepEqual(problems.sort(), [
      'ExternalSecret.spec.data[0].remoteRef: unknown field "propery" (known: conversionStrategy, decodingStrategy, key, metadataPolicy, property, version)',
      'ExternalSecret.spec.secretStoreRef: unknown field "knd" (known: kind, name)',
    ]);
  });

  it("fails on wrong enum values and types the CRD constrains", () => {
    const cases: [string, (o: Obj) => void, RegExp][] = [
      [
        "creationPolicy Ownr",
        (o) => (o.spec.target.creationPolicy = "Ownr"),
        /\/spec\/target\/creationPolicy must be equal to one of the allowed values/,
      ],
      [
        "store kind Secretstore",
        (o) => (o.spec.secretStoreRef.kind = "Secretstore"),
        /\/spec\/secretStoreRef\/kind must be equal to one of the allowed values/,
      ],
      [
        "engineVersion v3",
        (o) => (o.spec.target.template.engineVersion = "v3"),
        /\/spec\/target\/template\/engineVersion must be equal to one of the allowed values/,
      ],
      ["data without secretKey", (o) => delete o.spec.data[0].secretKey, /\/spec\/data\/0 must have required property secretKey/],
      ["template data not a string", (o) => (o.spec.target.template.data.x = 1), /\/spec\/target\/template\/data\/x must be string/],
    ];
    for (const [what, mutate, expected] of cases) {
      const o = structuredClone(es);
      mutate(o);
      assert.match(schemaProblems("ExternalSecret", o).join("\n"), expected, what);
    }
  });
});

describe("indri: DeploymentPatch parts against the core schemas", () => {
  const tpl = () => patch.spec.template as Obj;
  const runner = () => (tpl().spec.containers as Obj[])[0];

  it("the env entry is a valid EnvVar", () => {
    assert.equal(runner().env.length, 1);
    assert.deepEqual(schemaProblems("EnvVar", runner().env[0]), []);
  });

  it("the volume is a valid Volume, the mount a valid VolumeMount", () => {
    assert.equal(tpl().spec.volumes.length, 1);
    assert.deepEqual(schemaProblems("Volume", tpl().spec.volumes[0]), []);
    assert.equal(runner().volumeMounts.length, 1);
    assert.deepEqual(schemaProblems("VolumeMount", runner().volumeMounts[0]), []);
  });

  it("the pod-template metadata is valid ObjectMeta; the container part and the template have no unknown fields", () => {
    assert.deepEqual(schemaProblems("ObjectMeta", tpl().metadata), []);
    assert.deepEqual(schemaProblems("Container", runner()), []);
    assert.deepEqual(schemaProblems("PodTemplateSpec", tpl()), []);
    // The whole patch is Deployment-shaped (partial: selector and image come from the live object).
    assert.deepEqual(unknownFields("Deployment", patch), []);
  });

  it("fails when a field is misspelt: volumeMounts[].readonly, secret.defaultmode, valueFrom.secretKeyref", () => {
    const m = structuredClone(patch);
    const c = m.spec.template.spec.containers[0];
    c.volumeMounts[0].readonly = c.volumeMounts[0].readOnly;
    delete c.volumeMounts[0].readOnly;
    const secret = m.spec.template.spec.volumes[0].secret;
    secret.defaultmode = secret.defaultMode;
    delete secret.defaultMode;
    c.env[0].valueFrom.secretKeyref = c.env[0].valueFrom.secretKeyRef;
    delete c.env[0].valueFrom.secretKeyRef;
    const problems = unknownFields("Deployment", m);
    assert.equal(problems.length, 3, problems.join("\n"));
    assert.match(problems.join("\n"), /env\[0\]\.valueFrom: unknown field "secretKeyref"/);
    assert.match(problems.join("\n"), /volumeMounts\[0\]: unknown field "readonly"/);
    assert.match(problems.join("\n"), /volumes\[0\]\.secret: unknown field "defaultmode"/);
    assert.match(schemaProblems("VolumeMount", c.volumeMounts[0]).join("\n"), /unknown field "readonly"/);
  });

  it("merged into a Deployment like ArgoCD's (runner + dind), the result is a valid Deployment", () => {
    const merged = applyPatch(baseDeployment(), patch) as Obj;
    assert.deepEqual(schemaProblems("Deployment", merged), []);
    assert.deepEqual(
      merged.spec.template.spec.containers.map((c: Obj) => c.name),
      ["runner", "dind"],
    );
    // And the merge really added the parts (so the validation above covered them).
    const runnerC = merged.spec.template.spec.containers[0];
    assert.ok(runnerC.env.some((e: Obj) => e.name === "ZOT_CI_API_KEY"));
    assert.ok(runnerC.volumeMounts.some((v: Obj) => v.mountPath === "/run/secrets/zot-ci"));
    assert.ok(merged.spec.template.spec.volumes.some((v: Obj) => v.name === "zot-ci-env"));
  });
});

describe("indri: the ExternalSecret does what issue 4 asks", () => {
  it("reads the configured 1Password item and field (remoteRef.property), through the configured store", () => {
    assert.deepEqual(es.spec.data, [{ secretKey: "apiKey", remoteRef: { key: "zot-ci-apikey", property: "credential" } }]);
    assert.deepEqual(es.spec.secretStoreRef, { kind: "ClusterSecretStore", name: "onepassword-blumeops" });
  });

  it("follows a different configured field and item (property is never left empty)", async () => {
    const r = await runStack("indri", {
      config: { "runner-secrets:onePassword": { item: "other-item", field: "api key" } },
      item: { sections: [{ id: "s", label: "s", fields: [{ id: "f", label: "api key", value: FAKE_KEY }] }] },
    });
    const o = plainInputs(k8sObjects(r).es);
    assert.deepEqual(o.spec.data[0].remoteRef, { key: "other-item", property: "api key" });
  });

  it("the Secret is owned by the ExternalSecret (creationPolicy Owner), named as configured", () => {
    assert.equal(es.spec.target.creationPolicy, "Owner");
    assert.equal(es.spec.target.name, "zot-ci-apikey");
    assert.deepEqual(es.metadata.name, "zot-ci-apikey");
    assert.deepEqual(es.metadata.namespace, "forgejo-runner");
  });

  it("syncs only when up changes it (refreshPolicy OnChange), never on a timer", () => {
    assert.equal(es.spec.refreshPolicy, "OnChange");
    assert.equal(es.spec.refreshInterval, undefined);
  });

  it("renders only the key up approved: any other key fails the template with a message saying so", () => {
    for (const [k, v] of Object.entries(es.spec.target.template.data as Record<string, string>)) {
      assert.throws(
        () => renderTemplate(v, { apiKey: "zak_someotherkey" }),
        /not the one pulumi up approved \(digest [0-9a-f]{16}\); run pulumi up/,
        k,
      );
      assert.doesNotThrow(() => renderTemplate(v, { apiKey: FAKE_KEY }), k);
    }
  });

  it("is awaited until Ready, with the timeout from config (default 300s)", async () => {
    assert.equal(es.metadata.annotations["pulumi.com/waitFor"], "condition=Ready");
    assert.equal(es.metadata.annotations["pulumi.com/timeoutSeconds"], "300");
    const r = await runStack("indri", { config: { "runner-secrets:kubernetes": { readyTimeoutSeconds: 90 } } });
    assert.equal(plainInputs(k8sObjects(r).es).metadata.annotations["pulumi.com/timeoutSeconds"], "90");
  });

  /** The Secret key the volume projects as the env file (whatever the program names it). */
  const envFileKey = () => {
    const items = patch.spec.template.spec.volumes[0].secret.items as Obj[];
    assert.equal(items.length, 1, "the volume carries only the env file");
    return items[0].key as string;
  };

  it("template engine v2 renders the plain key, the dotenv line ZOT_CI_API_KEY='…' and the digest", () => {
    const t = es.spec.target.template;
    assert.equal(t.engineVersion, "v2");
    assert.equal(t.type, "Opaque");
    assert.deepEqual(Object.keys(t.data).sort(), ["ZOT_CI_API_KEY", "key-digest", envFileKey()].sort());
    // Secret data keys must match Kubernetes' config-key pattern.
    for (const k of Object.keys(t.data)) assert.match(k, /^[-._a-zA-Z0-9]{1,253}$/, k);
    const rendered = Object.fromEntries(
      Object.entries(t.data as Record<string, string>).map(([k, v]) => [k, renderTemplate(v, { apiKey: FAKE_KEY })]),
    );
    assert.deepEqual(rendered, {
      ZOT_CI_API_KEY: FAKE_KEY,
      [envFileKey()]: `ZOT_CI_API_KEY='${FAKE_KEY}'\n`,
      "key-digest": run.outputs.keyDigest,
    });
  });

  it('the dotenv entry parses (godotenv semantics) to exactly the key, even with $, #, \\ and " in it', () => {
    const t = es.spec.target.template.data[envFileKey()] as string;
    const keys = [FAKE_KEY, "zak_" + "A1b2-C3d4_E5f6G7h8I9j0K1l2M3n4O5p6Q7r8S9t0U1v", 'zak_a$HOME${PATH}b#c d\\e"f`g'];
    // The body after the approved-key guard (tested above), rendered with each key.
    const body = t.replace(/^\{\{ if ne .*?\{\{ end \}\}/, "");
    assert.notEqual(body, t, "no guard found");
    for (const key of keys) {
      const parsed = parseDotenv(renderTemplate(body, { apiKey: key }), { HOME: "/root", PATH: "/bin" });
      assert.deepEqual(parsed, { ZOT_CI_API_KEY: key }, key);
    }
    // The parser is not a rubber stamp: without the single quotes, $ would be expanded.
    assert.deepEqual(parseDotenv("ZOT_CI_API_KEY=zak_a$HOME\n", { HOME: "/root" }), { ZOT_CI_API_KEY: "zak_a/root" });
  });

  it("the Secret keys the patch reads are the ones the template writes", () => {
    const t = es.spec.target.template.data as Obj;
    const spec = patch.spec.template.spec;
    const ref = spec.containers[0].env[0].valueFrom.secretKeyRef;
    assert.equal(ref.name, es.spec.target.name);
    assert.ok(ref.key in t, ref.key);
    assert.equal(renderTemplate(t[ref.key], { apiKey: FAKE_KEY }), FAKE_KEY, "the env var gets the plain key");
    const vol = spec.volumes[0].secret;
    assert.equal(vol.secretName, es.spec.target.name);
    assert.ok(envFileKey() in t, envFileKey());
    assert.notEqual(envFileKey(), ref.key);
    assert.equal(renderTemplate(t[envFileKey()], { apiKey: FAKE_KEY }), `ZOT_CI_API_KEY='${FAKE_KEY}'\n`, "the file gets the dotenv line");
    assert.equal(vol.items[0].path, "zot-ci.env", "named as envFilePath's file name");
  });
});

describe("indri: the DeploymentPatch sets only its own fields", () => {
  it("sets exactly: the env entry, the read-only Secret volume and its mount in `runner`, the pod-template annotation", () => {
    const owned = fieldPaths({ spec: patch.spec });
    const c = 'spec.template.spec.containers.k:{"name":"runner"}';
    const v = 'spec.template.spec.volumes.k:{"name":"zot-ci-env"}';
    assert.deepEqual(
      owned.sort(),
      [
        `${c}.env.k:{"name":"ZOT_CI_API_KEY"}.name`,
        `${c}.env.k:{"name":"ZOT_CI_API_KEY"}.valueFrom.secretKeyRef`,
        `${c}.name`,
        `${c}.volumeMounts.k:{"mountPath":"/run/secrets/zot-ci"}.mountPath`,
        `${c}.volumeMounts.k:{"mountPath":"/run/secrets/zot-ci"}.name`,
        `${c}.volumeMounts.k:{"mountPath":"/run/secrets/zot-ci"}.readOnly`,
        "spec.template.metadata.annotations.runner-secrets/key-digest",
        `${v}.name`,
        `${v}.secret.defaultMode`,
        `${v}.secret.items`,
        `${v}.secret.secretName`,
      ].sort(),
    );
    assert.deepEqual(Object.keys(patch.metadata).sort(), ["annotations", "name", "namespace"]);
    assert.equal(patch.metadata.name, "forgejo-runner");
    assert.equal(patch.metadata.namespace, "forgejo-runner");
  });

  it("touches nothing ArgoCD owns: no replicas, selector, strategy, image, labels or other containers", () => {
    assert.deepEqual(Object.keys(patch.spec), ["template"]);
    assert.deepEqual(Object.keys(patch.spec.template.metadata), ["annotations"]);
    const containers = patch.spec.template.spec.containers as Obj[];
    assert.deepEqual(
      containers.map((c) => c.name),
      ["runner"],
    );
    assert.deepEqual(Object.keys(containers[0]).sort(), ["env", "name", "volumeMounts"]);
    assert.deepEqual(Object.keys(patch.spec.template.spec).sort(), ["containers", "volumes"]);
    // Shared with ArgoCD's fields: only the list-map key naming the container.
    const base = new Set(fieldPaths(baseDeployment()));
    const shared = fieldPaths({ spec: patch.spec }).filter((p) => base.has(p));
    assert.deepEqual(shared, ['spec.template.spec.containers.k:{"name":"runner"}.name']);
  });

  it("the volume is the Secret, read-only, mode 0400 or stricter; the mount is read-only and shadows no existing mount", () => {
    const vol = patch.spec.template.spec.volumes[0].secret;
    const modes = [vol.defaultMode, ...vol.items.map((i: Obj) => i.mode ?? vol.defaultMode)];
    for (const m of modes) {
      assert.equal(typeof m, "number");
      assert.equal(m & ~0o400, 0, `mode ${m.toString(8)} grants more than owner-read`);
    }
    const mount = patch.spec.template.spec.containers[0].volumeMounts[0];
    assert.equal(mount.readOnly, true);
    assert.equal(mount.subPath, undefined, "no subPath: a subPath mount would never see a re-synced Secret");
    assert.equal(`${mount.mountPath}/${vol.items[0].path}`, "/run/secrets/zot-ci/zot-ci.env", "the file runner.env_file names");
    const existing = (baseDeployment() as Obj).spec.template.spec.containers[0].volumeMounts.map((m: Obj) => m.mountPath) as string[];
    for (const p of existing) {
      assert.ok(!(mount.mountPath + "/").startsWith(p + "/") && !(p + "/").startsWith(mount.mountPath + "/"), `${mount.mountPath} vs ${p}`);
    }
  });

  it("goes to the configured container; the field manager is the configured prefix plus the patch's shape", async () => {
    assert.match(patch.metadata.annotations["pulumi.com/patchFieldManager"], /^runner-secrets-[0-9a-f]{8}$/);
    const name = k8sObjects(run).patch.name;
    assert.ok(name.endsWith(patch.metadata.annotations["pulumi.com/patchFieldManager"].slice("runner-secrets-".length)), name);
    // Forces only over the previous shape's manager: the fields are disjoint from ArgoCD's (above).
    assert.equal(patch.metadata.annotations["pulumi.com/patchForce"], "true");
    const r = await runStack("indri", {
      config: {
        "runner-secrets:kubernetes": { container: "daemon", fieldManager: "zot-key-sync", deployment: "runner-x", namespace: "ci" },
      },
    });
    const { patch: p, es: e } = k8sObjects(r);
    const pi = plainInputs(p);
    assert.match(pi.metadata.annotations["pulumi.com/patchFieldManager"], /^zot-key-sync-[0-9a-f]{8}$/);
    assert.deepEqual(
      pi.spec.template.spec.containers.map((c: Obj) => c.name),
      ["daemon"],
    );
    assert.equal(pi.metadata.name, "runner-x");
    assert.equal(pi.metadata.namespace, "ci");
    assert.equal(plainInputs(e).metadata.namespace, "ci");
  });

  it("destroy: relinquishing the manager's fields leaves exactly ArgoCD's Deployment (nothing co-owned but the container key)", () => {
    const base = baseDeployment();
    const merged = applyPatch(base, { spec: patch.spec });
    const baseFields = new Set(fieldPaths(base));
    const exclusive = fieldPaths({ spec: patch.spec }).filter((p) => !baseFields.has(p));
    // Server-side apply removes a relinquished field only when no other manager owns it: these go.
    const after = fieldPaths(merged).filter((p) => !exclusive.includes(p));
    assert.deepEqual(after.sort(), [...baseFields].sort());
    assert.ok(exclusive.includes("spec.template.metadata.annotations.runner-secrets/key-digest"), "the annotation goes too: the pod rolls");
  });
});
