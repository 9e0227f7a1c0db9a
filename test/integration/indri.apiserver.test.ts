// indri against a REAL kube-apiserver (etcd + kube-apiserver v1.33, ESO v0.16.2 CRDs; see
// setup.sh): the objects the stack registers are server-side applied as the provider applies them,
// next to a Deployment created the way ArgoCD creates it. Proves: strict schema acceptance, no
// conflict with ArgoCD's fields, an ArgoCD sync keeps both patches, rotation changes only the
// template guard and the rollout annotation, and relinquishing the field managers (what destroy
// does) restores ArgoCD's object.
//
// With kube-controller-manager (setup.sh builds it) also: each digest rolls a new ReplicaSet, and
// the Secret ESO would own is garbage-collected after the ExternalSecret is deleted. Not here (the
// e2e tier has them, test/e2e/indri.e2e.test.ts): ESO's controller (the test writes the Secret ESO
// would write), the engine and provider, a kubelet.
import { after, before, describe, it } from "node:test";
import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as path from "node:path";
import { parsedStackConfig, revealed, runStack, type StackRun } from "../support/mockStack";
import { applyPatch, baseDeployment, fieldPaths } from "../support/argoDeployment";
import { renderTemplate } from "../support/esoTemplate";
import { requireBinaries, startApiServer, type ApiServer } from "../support/apiServer";

type Obj = Record<string, any>;

const bin = requireBinaries();
const NS = "forgejo-runner";
const ES_PATH = `/apis/external-secrets.io/v1/namespaces/${NS}/externalsecrets`;
const DEP_PATH = `/apis/apps/v1/namespaces/${NS}/deployments`;
const ARGOCD = "argocd-controller";
// The ExternalSecret is applied under the provider's own (random) field manager; any name stands for it.
const ES_MANAGER = "pulumi-kubernetes-7d1e4b60";

/** managedFields' fieldsV1 as the paths fieldPaths() produces. */
function fieldsV1Paths(f: Obj, at = ""): string[] {
  const entries = Object.entries(f).filter(([k]) => k !== ".");
  if (entries.length === 0) return [at];
  return entries.flatMap(([k, v]) => fieldsV1Paths(v as Obj, `${at ? `${at}.` : ""}${k.startsWith("f:") ? k.slice(2) : k}`));
}

function managedBy(obj: Obj, manager: string): Obj[] {
  return (obj.metadata.managedFields as Obj[]).filter((m) => m.manager === manager);
}

/** Paths where `sent` is not contained in `stored` (stored may add defaults). */
function notContained(sent: unknown, stored: unknown, at = ""): string[] {
  if (Array.isArray(sent)) {
    if (!Array.isArray(stored) || stored.length !== sent.length) return [at];
    return sent.flatMap((x, i) => notContained(x, stored[i], `${at}[${i}]`));
  }
  if (sent !== null && typeof sent === "object") {
    if (stored === null || typeof stored !== "object") return [at];
    return Object.entries(sent).flatMap(([k, v]) => notContained(v, (stored as Obj)[k], `${at}.${k}`));
  }
  return Object.is(sent, stored) ? [] : [at];
}

async function eventually<T>(what: string, probe: () => Promise<T | undefined>, ms = 30_000): Promise<T> {
  const deadline = Date.now() + ms;
  for (;;) {
    const v = await probe();
    if (v !== undefined) return v;
    assert.ok(Date.now() < deadline, `timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, 200));
  }
}

/** Waits until the Deployment's newest ReplicaSet (highest revision) has the pod-template digest `digest`. */
async function rolledTo(api: ApiServer, digest: string | undefined): Promise<Obj> {
  return eventually(`a ReplicaSet with digest ${digest ?? "(none)"} as the newest revision`, async () => {
    const list = (await api.request("GET", `/apis/apps/v1/namespaces/${NS}/replicasets`)).body as Obj;
    const rev = (rs: Obj) => Number(rs.metadata.annotations?.["deployment.kubernetes.io/revision"] ?? 0);
    const newest = (list.items as Obj[]).sort((a, b) => rev(b) - rev(a))[0];
    return newest && digestOf(newest.spec.template) === digest ? newest : undefined;
  });
}

const digestOf = (template: Obj): string | undefined => template.metadata?.annotations?.["runner-secrets/key-digest"];

/** The k8s objects of one mock run of the real program, as the provider sends them. */
type Objects = { es: Obj; synced: Obj; wiring: Obj; rollout: Obj; wiringManager: string };
function objects(run: StackRun): Objects {
  assert.equal(run.error, undefined, String(run.error));
  const inputs = (match: (name: string) => boolean) => revealed(run.resources.find((r) => match(r.name))!.inputs) as Obj;
  const rollout = inputs((n) => n === "zot-ci-rollout");
  // Under mocks the live Deployment has no uid, so the rollout's only annotation is absent.
  if (Object.keys(rollout.metadata.annotations ?? {}).length === 0) delete rollout.metadata.annotations;
  const wiring = inputs((n) => n.startsWith("zot-ci-deployment-patch-"));
  return {
    es: inputs((n) => n === "zot-ci-external-secret"),
    synced: inputs((n) => n === "zot-ci-secret-synced"),
    wiring,
    rollout,
    wiringManager: wiring.metadata.annotations["pulumi.com/patchFieldManager"],
  };
}

// The rollout patch names no field manager: the provider makes up one per resource (random), any
// name stands for it here.
const ROLLOUT_MANAGER = "pulumi-kubernetes-0f3a9c2e";

/** A Patch resource applied as the provider applies it: its own field manager, forced when it says so. */
function applyPatchResource(api: ApiServer, at: string, patch: Obj, manager: string) {
  return api.apply(at, patch, manager, { force: patch.metadata.annotations?.["pulumi.com/patchForce"] === "true" });
}

/** The fields a Patch resource's manager comes to own: everything it sends but the object's identity. */
function ownedBy(patch: Obj): string[] {
  const { name: _n, namespace: _ns, ...meta } = patch.metadata;
  const sent: Obj = {};
  if (Object.keys(meta).length) sent.metadata = meta;
  if (patch.spec) sent.spec = patch.spec;
  return fieldPaths(sent).sort();
}

const templateDigest = (o: Objects): string => o.rollout.spec.template.metadata.annotations["runner-secrets/key-digest"];

describe("indri against a real kube-apiserver", () => {
  let api: ApiServer;
  let one: Objects;
  let two: Objects;

  before(async () => {
    one = objects(await runStack("indri", { key: "zak_fake_apiserver_one" }));
    two = objects(await runStack("indri", { key: "zak_fake_apiserver_two" }));
    api = await startApiServer(bin);
    const ns = await api.request("POST", "/api/v1/namespaces", { apiVersion: "v1", kind: "Namespace", metadata: { name: NS } });
    assert.equal(ns.status, 201, JSON.stringify(ns.body));
  });
  after(async () => {
    await api?.stop();
  });

  it("ESO v0.16.2's CRDs install and external-secrets.io/v1 ExternalSecret is served", async () => {
    for (const crd of ["externalsecrets", "secretstores", "clustersecretstores"]) {
      const text = fs.readFileSync(path.join(bin.esoCrds, `external-secrets.io_${crd}.yaml`), "utf8");
      const r = await api.apply(`/apis/apiextensions.k8s.io/v1/customresourcedefinitions/${crd}.external-secrets.io`, text, "test-setup");
      assert.equal(r.status, 201, JSON.stringify(r.body).slice(0, 500));
    }
    const deadline = Date.now() + 30_000;
    for (;;) {
      const r = await api.request("GET", "/apis/external-secrets.io/v1");
      if (r.status === 200 && (r.body.resources as Obj[]).some((x) => x.kind === "ExternalSecret")) break;
      assert.ok(Date.now() < deadline, "external-secrets.io/v1 not served");
      await new Promise((res) => setTimeout(res, 200));
    }
    if (api.controllers) await api.startControllers();
  });

  it("the ExternalSecret is accepted with strict field validation; stored as sent plus the CRD's defaults", async () => {
    const r = await api.apply(`${ES_PATH}/${one.es.metadata.name}`, one.es, ES_MANAGER);
    assert.equal(r.status, 201, JSON.stringify(r.body));
    const stored = r.body as Obj;
    // Everything sent is there, unchanged (nothing pruned or rewritten).
    assert.deepEqual(notContained(one.es, stored), []);
    assert.equal(stored.spec.data[0].remoteRef.property, "credential");
    assert.equal(stored.spec.target.creationPolicy, "Owner");
    // The defaults ESO's CRD adds (what ESO will act on).
    assert.equal(stored.spec.target.deletionPolicy, "Retain");
    assert.equal(stored.spec.target.template.mergePolicy, "Replace");
    assert.equal(stored.spec.data[0].remoteRef.conversionStrategy, "Default");
  });

  it("the Secret ESO would write from the template (owned by the ExternalSecret) is a valid Secret", async () => {
    const es = (await api.request("GET", `${ES_PATH}/${one.es.metadata.name}`)).body as Obj;
    const key = "zak_fake_apiserver_one";
    const data = Object.fromEntries(
      Object.entries(es.spec.target.template.data as Record<string, string>).map(([k, v]) => [
        k,
        Buffer.from(renderTemplate(v, { apiKey: key })).toString("base64"),
      ]),
    );
    const secret = {
      apiVersion: "v1",
      kind: "Secret",
      type: es.spec.target.template.type,
      metadata: {
        name: es.spec.target.name,
        namespace: NS,
        // What creationPolicy Owner makes ESO set: deleting the ExternalSecret garbage-collects this.
        ownerReferences: [
          {
            apiVersion: "external-secrets.io/v1",
            kind: "ExternalSecret",
            name: es.metadata.name,
            uid: es.metadata.uid,
            controller: true,
            blockOwnerDeletion: true,
          },
        ],
      },
      data,
    };
    const r = await api.request("POST", `/api/v1/namespaces/${NS}/secrets?fieldValidation=Strict`, secret);
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });

  it("a misspelt field (remoteRef.propery) is refused by server-side apply; a plain create would silently drop it", async () => {
    const bad = structuredClone(one.es);
    bad.metadata.name = "misspelt";
    bad.spec.data[0].remoteRef.propery = "credential";
    delete bad.spec.data[0].remoteRef.property;
    const r = await api.apply(`${ES_PATH}/misspelt`, bad, ES_MANAGER);
    assert.ok(r.status >= 400, `status ${r.status}`);
    assert.match(r.body.message, /\.spec\.data\[0\]\.remoteRef\.propery: field not declared in schema/);
    // Why the provider must use server-side apply (it does: enableServerSideApply): a create
    // without it is accepted with a warning, and ESO would then read the field "password".
    const created = await api.request("POST", `${ES_PATH}?fieldValidation=Warn`, bad);
    assert.equal(created.status, 201);
    assert.match(String(created.headers.warning), /unknown field \\"spec\.data\[0\]\.remoteRef\.propery\\"/);
    assert.equal(created.body.spec.data[0].remoteRef.property, undefined);
    await api.request("DELETE", `${ES_PATH}/misspelt`);
  });

  it("wrong enum values are refused: creationPolicy Ownr, secretStoreRef.kind Secretstore", async () => {
    const bad = structuredClone(one.es);
    bad.metadata.name = "bad-enum";
    bad.spec.target.creationPolicy = "Ownr";
    bad.spec.secretStoreRef.kind = "Secretstore";
    const r = await api.apply(`${ES_PATH}/bad-enum`, bad, ES_MANAGER);
    assert.equal(r.status, 422, JSON.stringify(r.body));
    assert.match(r.body.message, /spec\.target\.creationPolicy: Unsupported value: "Ownr"/);
    assert.match(r.body.message, /spec\.secretStoreRef\.kind: Unsupported value: "Secretstore"/);
  });

  it("ArgoCD's Deployment (runner + dind) is created and valid", async () => {
    const r = await api.request("POST", `${DEP_PATH}?fieldManager=${ARGOCD}&fieldValidation=Strict`, baseDeployment());
    assert.equal(r.status, 201, JSON.stringify(r.body));
  });

  it("the SecretPatch (up's wait for the synced key) claims only its annotations, next to the Secret's writer", async () => {
    const at = `/api/v1/namespaces/${NS}/secrets/${one.synced.metadata.name}`;
    const before = (await api.request("GET", at)).body as Obj;
    const r = await applyPatchResource(api, at, one.synced, one.synced.metadata.annotations["pulumi.com/patchFieldManager"]);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const live = r.body as Obj;
    assert.deepEqual(live.data, before.data, "the Secret's data stays the writer's");
    assert.deepEqual(
      fieldsV1Paths(managedBy(live, one.synced.metadata.annotations["pulumi.com/patchFieldManager"])[0].fieldsV1).sort(),
      ownedBy(one.synced),
    );
    // What the provider's waitFor jsonpath compares: the digest ESO rendered from the approved key.
    assert.equal(Buffer.from(live.data["key-digest"], "base64").toString(), templateDigest(one));
  });

  it("the two DeploymentPatches apply without conflict; the server owns for each exactly the fields it sets", async () => {
    const at = `${DEP_PATH}/forgejo-runner`;
    const before = (await api.request("GET", at)).body as Obj;
    const w = await applyPatchResource(api, at, one.wiring, one.wiringManager);
    assert.equal(w.status, 200, JSON.stringify(w.body));
    const r = await applyPatchResource(api, at, one.rollout, ROLLOUT_MANAGER);
    assert.equal(r.status, 200, JSON.stringify(r.body));
    const live = r.body as Obj;
    assert.equal(live.metadata.generation, before.metadata.generation + 2, "each changes the pod template");
    for (const [manager, patch] of [
      [one.wiringManager, one.wiring],
      [ROLLOUT_MANAGER, one.rollout],
    ] as const) {
      const mine = managedBy(live, manager);
      assert.equal(mine.length, 1, manager);
      assert.equal(mine[0].operation, "Apply");
      assert.deepEqual(fieldsV1Paths(mine[0].fieldsV1).sort(), ownedBy(patch), manager);
    }
    // ArgoCD's fields are untouched, the merge is what the offline model predicts.
    const expected = applyPatch(applyPatch(before, { spec: one.wiring.spec }), { spec: one.rollout.spec }) as Obj;
    assert.deepEqual(live.spec, { ...expected.spec, template: { ...expected.spec.template } });
    assert.equal(live.spec.replicas, 1);
    assert.deepEqual(
      live.spec.template.spec.containers.map((c: Obj) => [c.name, c.image]),
      [
        ["runner", "code.forgejo.org/forgejo/runner:12.0.0"],
        ["dind", "docker:28-dind"],
      ],
    );
    assert.equal(live.spec.template.spec.volumes.find((v: Obj) => v.name === "zot-ci-env").secret.defaultMode, 0o400);
    if (api.controllers) await rolledTo(api, templateDigest(one));
  });

  it("a patch that touched an ArgoCD field would conflict unforced (why the forced wiring sets only its own list items)", async () => {
    const greedy = structuredClone(one.wiring);
    greedy.spec.template.spec.containers[0].image = "example.invalid/other:1";
    const r = await api.apply(`${DEP_PATH}/forgejo-runner`, greedy, one.wiringManager);
    assert.equal(r.status, 409, JSON.stringify(r.body));
    assert.match(r.body.message, new RegExp(`conflict with "${ARGOCD}"`));
  });

  it("an ArgoCD sync (client-side strategic merge, or server-side apply with force) keeps both patches' fields", async () => {
    const smp = await api.request(
      "PATCH",
      `${DEP_PATH}/forgejo-runner?fieldManager=${ARGOCD}`,
      baseDeployment(),
      "application/strategic-merge-patch+json",
    );
    assert.equal(smp.status, 200, JSON.stringify(smp.body));
    const ssa = await api.apply(`${DEP_PATH}/forgejo-runner`, baseDeployment(), ARGOCD, { force: true });
    assert.equal(ssa.status, 200, JSON.stringify(ssa.body));
    const live = ssa.body as Obj;
    const runner = live.spec.template.spec.containers.find((c: Obj) => c.name === "runner");
    assert.ok(runner.env.some((e: Obj) => e.name === "ZOT_CI_API_KEY"));
    assert.ok(runner.volumeMounts.some((m: Obj) => m.name === "zot-ci-env"));
    assert.equal(digestOf(live.spec.template), templateDigest(one));
    assert.deepEqual(fieldsV1Paths(managedBy(live, one.wiringManager)[0].fieldsV1).sort(), ownedBy(one.wiring));
    assert.deepEqual(fieldsV1Paths(managedBy(live, ROLLOUT_MANAGER)[0].fieldsV1).sort(), ownedBy(one.rollout));
  });

  it("rotation: the ExternalSecret's template guard and the rollout's annotation change, nothing else; the same key is a no-op", async () => {
    const esBefore = (await api.request("GET", `${ES_PATH}/${one.es.metadata.name}`)).body as Obj;
    const esAfter = (await api.apply(`${ES_PATH}/${two.es.metadata.name}`, two.es, ES_MANAGER)).body as Obj;
    // A spec change: what makes ESO (refreshPolicy OnChange) sync again, with the new approved digest.
    assert.equal(esAfter.metadata.generation, esBefore.metadata.generation + 1);
    const withoutData = (o: Obj) => ({ ...o.spec, target: { ...o.spec.target, template: { ...o.spec.target.template, data: {} } } });
    assert.deepEqual(withoutData(esAfter), withoutData(esBefore));
    for (const v of Object.values(esAfter.spec.target.template.data as Record<string, string>))
      assert.ok(v.includes(`"${templateDigest(two)}"`), v);

    const at = `${DEP_PATH}/forgejo-runner`;
    const depBefore = (await api.request("GET", at)).body as Obj;
    // The wiring is unchanged by a rotation (same inputs: the engine sends nothing); only the rollout updates.
    assert.deepEqual(two.wiring, one.wiring);
    const depAfter = (await applyPatchResource(api, at, two.rollout, ROLLOUT_MANAGER)).body as Obj;
    assert.equal(depAfter.metadata.generation, depBefore.metadata.generation + 1);
    assert.equal(digestOf(depAfter.spec.template), templateDigest(two));
    const strip = (o: Obj) => ({ ...o.spec, template: { ...o.spec.template, metadata: { ...o.spec.template.metadata, annotations: {} } } });
    assert.deepEqual(strip(depAfter), strip(depBefore));

    const again = (await applyPatchResource(api, at, two.rollout, ROLLOUT_MANAGER)).body as Obj;
    // (resourceVersion may move: the Deployment controller writes status)
    assert.equal(again.metadata.generation, depAfter.metadata.generation, "same key: no new pod template");
    assert.deepEqual(again.spec, depAfter.spec);
    const esAgain = (await api.apply(`${ES_PATH}/${two.es.metadata.name}`, two.es, ES_MANAGER)).body as Obj;
    assert.equal(esAgain.metadata.resourceVersion, esAfter.metadata.resourceVersion);
  });

  it("each digest rolls a new ReplicaSet (kube-controller-manager's Deployment controller)", async () => {
    assert.ok(api.controllers, "kube-controller-manager is not running");
    const rs = await rolledTo(api, templateDigest(two));
    const runner = (rs.spec.template.spec.containers as Obj[]).find((c) => c.name === "runner")!;
    assert.deepEqual(runner.env.find((e: Obj) => e.name === "ZOT_CI_API_KEY").valueFrom.secretKeyRef, {
      name: "zot-ci-apikey",
      key: "ZOT_CI_API_KEY",
    });
    const list = (await api.request("GET", `/apis/apps/v1/namespaces/${NS}/replicasets`)).body as Obj;
    const digests = new Set((list.items as Obj[]).map((x) => digestOf(x.spec.template) ?? "none"));
    // ArgoCD's original (and the wiring before its first digest, if the controller saw it), the first key, the rotated key.
    assert.deepEqual([...digests].sort(), [templateDigest(one), templateDigest(two), "none"].sort());
  });

  it("destroy: relinquishing both field managers removes exactly the patches' fields; ArgoCD's Deployment is as before", async () => {
    const created = baseDeployment() as Obj;
    // What the provider's delete of a Patch resource sends: the object's identity, nothing else.
    // The rollout goes first (it depends on the wiring).
    const identity = { apiVersion: "apps/v1", kind: "Deployment", metadata: { name: "forgejo-runner", namespace: NS } };
    let live: Obj = {};
    for (const manager of [ROLLOUT_MANAGER, one.wiringManager]) {
      const r = await api.apply(`${DEP_PATH}/forgejo-runner`, identity, manager);
      assert.equal(r.status, 200, JSON.stringify(r.body));
      live = r.body as Obj;
      assert.equal(managedBy(live, manager).length, 0, `${manager} owns nothing any more`);
    }
    const runner = live.spec.template.spec.containers.find((c: Obj) => c.name === "runner");
    assert.deepEqual(runner.env, created.spec.template.spec.containers[0].env);
    assert.deepEqual(
      runner.volumeMounts.map((m: Obj) => m.mountPath),
      ["/config", "/data", "/certs"],
    );
    assert.deepEqual(
      live.spec.template.spec.volumes.map((v: Obj) => v.name),
      ["config", "data", "docker-certs"],
    );
    assert.equal(digestOf(live.spec.template), undefined);
    for (const k of Object.keys(live.metadata.annotations ?? {}))
      assert.ok(!k.startsWith("pulumi.com/patch") && !k.startsWith("runner-secrets/"), k);
    // Then the ExternalSecret goes (the patches depend on it, so destroy deletes it last).
    const del = await api.request("DELETE", `${ES_PATH}/${one.es.metadata.name}`);
    assert.equal(del.status, 200, JSON.stringify(del.body));
  });

  it("after destroy: the Deployment rolls back to ArgoCD's pod template, and the owned Secret is garbage-collected", async (t) => {
    assert.ok(api.controllers, "kube-controller-manager is not running");
    const rs = await rolledTo(api, undefined);
    const runner = (rs.spec.template.spec.containers as Obj[]).find((c) => c.name === "runner")!;
    assert.ok(!(runner.env as Obj[]).some((e) => e.name === "ZOT_CI_API_KEY"));
    await eventually("the Secret to be garbage-collected", async () => {
      const r = await api.request("GET", `/api/v1/namespaces/${NS}/secrets/zot-ci-apikey`);
      return r.status === 404 ? true : undefined;
    });
  });

  it("the config's Kubernetes name rules never accept a name the API server refuses", async () => {
    const accepted = (key: string, value: string) => {
      try {
        parsedStackConfig("indri", { "runner-secrets:kubernetes": { [key]: value } });
        return true;
      } catch {
        return false;
      }
    };
    const dep = (mutate: (d: Obj) => void) => {
      const d = baseDeployment() as Obj;
      d.metadata.name = "name-check";
      mutate(d);
      return api.request("POST", `${DEP_PATH}?dryRun=All`, d);
    };
    const serverAccepts: Record<string, (v: string) => Promise<{ status: number }>> = {
      namespace: (v) =>
        api.request("POST", "/api/v1/namespaces?dryRun=All", { apiVersion: "v1", kind: "Namespace", metadata: { name: v } }),
      deployment: (v) => dep((d) => (d.metadata.name = v)),
      container: (v) => dep((d) => (d.spec.template.spec.containers[0].name = v)),
      volumeName: (v) =>
        dep((d) => {
          d.spec.template.spec.volumes[0].name = v;
          d.spec.template.spec.containers[0].volumeMounts[0].name = v;
        }),
      secretName: (v) =>
        api.request("POST", `/api/v1/namespaces/${NS}/secrets?dryRun=All`, { apiVersion: "v1", kind: "Secret", metadata: { name: v } }),
      externalSecret: (v) => api.request("POST", `${ES_PATH}?dryRun=All`, { ...one.es, metadata: { name: v, namespace: NS } }),
    };
    const names = [
      "forgejo-runner",
      "runner",
      "a",
      "zot-ci.env",
      "Runner",
      "runner_1",
      "-runner",
      "runner-",
      "a/b",
      "",
      "x".repeat(63),
      "x".repeat(64),
      "a..b",
      "ä",
    ];
    for (const [key, check] of Object.entries(serverAccepts)) {
      for (const name of names) {
        const ok = accepted(key, name);
        const status = (await check(name)).status;
        // 409: valid, but exists already (validation runs first).
        if (ok)
          assert.ok(
            status < 300 || status === 409,
            `config accepts kubernetes.${key} = ${JSON.stringify(name)}, the server answers ${status}`,
          );
        if (["Runner", "a/b", "", "x".repeat(254), "-runner"].includes(name))
          assert.ok(!ok, `config must refuse kubernetes.${key} = ${JSON.stringify(name)}`);
      }
    }
  });
});
