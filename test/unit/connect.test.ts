import { test } from "node:test";
import assert from "node:assert/strict";
import { startConnect, type ConnectStandIn } from "../e2e/support/connect";

const ID = /^[a-z0-9]{26}$/;

async function get(c: ConnectStandIn, path: string, token: string | null = c.token) {
  const res = await fetch(c.url + path, { headers: token === null ? {} : { Authorization: `Bearer ${token}` } });
  const text = await res.text();
  const type = res.headers.get("content-type") ?? "";
  return { status: res.status, type, body: type.startsWith("application/json") ? JSON.parse(text) : undefined, text };
}

// As connect-sdk-go builds it: url.QueryEscape(`title eq "<title>"`).
const titleFilter = (title: string) => `filter=${encodeURIComponent(`title eq "${title}"`).replace(/%20/g, "+")}`;

async function withConnect(fn: (c: ConnectStandIn) => Promise<void>, token?: string) {
  const c = await startConnect(token ? { token } : {});
  try {
    c.addVault("blumeops");
    c.putItem("blumeops", "zot-ci-apikey", [
      { label: "credential", value: "zak_one" },
      { label: "username", value: "zot-ci" },
      { label: "token", value: "zak_section", section: "registry", type: "CONCEALED" },
    ]);
    await fn(c);
  } finally {
    await c.close();
  }
}

test("auth: missing or wrong bearer token gets 401 {status, message}; health needs none", () =>
  withConnect(async (c) => {
    assert.equal(c.token, "s3cret-token");
    for (const token of [null, "wrong"]) {
      const r = await get(c, "/v1/vaults", token);
      assert.equal(r.status, 401);
      assert.match(r.type, /^application\/json/);
      assert.deepEqual(r.body, { status: 401, message: "Invalid bearer token" });
    }
    const res = await fetch(`${c.url}/v1/vaults`, { headers: { Authorization: c.token } }); // no "Bearer"
    assert.equal(res.status, 401);
    const beat = await get(c, "/heartbeat", null);
    assert.equal(beat.status, 200);
    assert.equal(beat.text, ".");
    const health = await get(c, "/health", null);
    assert.equal(health.status, 200);
    assert.equal(health.body.name, "1Password Connect API");
  }, "s3cret-token"));

test("vaults: list, filter by title (match and no match), get by id, 404 and 400 bodies", () =>
  withConnect(async (c) => {
    const other = c.addVault("other vault");
    assert.match(other, ID);
    assert.throws(() => c.addVault("other vault"), /exists/);

    const all = await get(c, "/v1/vaults");
    assert.equal(all.status, 200);
    assert.deepEqual(
      all.body.map((v: { name: string }) => v.name),
      ["blumeops", "other vault"],
    );

    const one = await get(c, `/v1/vaults?${titleFilter("other vault")}`);
    assert.equal(one.status, 200);
    assert.equal(one.body.length, 1);
    const v = one.body[0];
    assert.equal(v.id, other);
    assert.equal(v.name, "other vault");
    assert.equal(v.type, "USER_CREATED");
    assert.equal(v.items, 0);
    for (const k of ["attributeVersion", "contentVersion"]) assert.equal(typeof v[k], "number");
    for (const k of ["createdAt", "updatedAt"]) assert.ok(!Number.isNaN(Date.parse(v[k])), k);
    assert.equal((await get(c, "/v1/vaults?filter=name%20eq%20%22blumeops%22")).body[0].name, "blumeops");

    const none = await get(c, `/v1/vaults?${titleFilter("nope")}`);
    assert.equal(none.status, 200);
    assert.deepEqual(none.body, []);

    const byId = await get(c, `/v1/vaults/${other}`);
    assert.deepEqual(byId.body, v);

    const missing = "a".repeat(26);
    const nf = await get(c, `/v1/vaults/${missing}`);
    assert.equal(nf.status, 404);
    assert.match(nf.type, /^application\/json/);
    assert.deepEqual(nf.body, { status: 404, message: `vault ${missing} not found` });
    assert.equal((await get(c, "/v1/vaults/not-an-id")).status, 400);

    const bad = await get(c, `/v1/vaults?filter=${encodeURIComponent('title co "blu"')}`);
    assert.equal(bad.status, 400);
    assert.equal(bad.body.status, 400);
    assert.match(bad.body.message, /filter/);
    assert.equal((await fetch(`${c.url}/v1/vaults`, { method: "POST", headers: { Authorization: `Bearer ${c.token}` } })).status, 405);
  }));

test("items: summaries without fields, title filter, full item with fields and sections, 404s", () =>
  withConnect(async (c) => {
    const vault = c.addVault("second");
    c.putItem("blumeops", "pw", [{ label: "password", value: "hunter2", purpose: "PASSWORD" }], "PASSWORD");
    const [vaultId] = (await get(c, `/v1/vaults?${titleFilter("blumeops")}`)).body.map((v: { id: string }) => v.id);
    const id = c.itemId("blumeops", "zot-ci-apikey");
    assert.match(id, ID);
    assert.equal(c.itemId(vaultId, "zot-ci-apikey"), id, "vault arguments accept an id too");

    const list = await get(c, `/v1/vaults/${vaultId}/items`);
    assert.equal(list.status, 200);
    assert.equal(list.body.length, 2);
    const filtered = await get(c, `/v1/vaults/${vaultId}/items?${titleFilter("zot-ci-apikey")}`);
    assert.equal(filtered.body.length, 1);
    const s = filtered.body[0];
    assert.equal(s.id, id);
    assert.equal(s.title, "zot-ci-apikey");
    assert.deepEqual(s.vault, { id: vaultId });
    assert.equal(s.category, "API_CREDENTIAL");
    assert.equal(s.version, 1);
    assert.equal(s.fields, undefined);
    assert.equal(s.sections, undefined);
    assert.ok(!filtered.text.includes("zak_"), "no values in a list");
    assert.deepEqual((await get(c, `/v1/vaults/${vaultId}/items?${titleFilter("nope")}`)).body, []);
    assert.deepEqual((await get(c, `/v1/vaults/${vault}/items`)).body, []);
    assert.equal((await get(c, `/v1/vaults/${vaultId}/items?filter=${encodeURIComponent('name eq "x"')}`)).status, 400);

    const full = (await get(c, `/v1/vaults/${vaultId}/items/${id}`)).body;
    assert.equal(full.id, id);
    assert.deepEqual(full.vault, { id: vaultId });
    assert.equal(full.version, 1);
    assert.equal(full.sections.length, 1);
    const [section] = full.sections;
    assert.match(section.id, ID);
    assert.equal(section.label, "registry");
    assert.deepEqual(full.fields, [
      { id: "credential", type: "CONCEALED", label: "credential", value: "zak_one" },
      { id: "username", type: "STRING", label: "username", value: "zot-ci" },
      { id: full.fields[2].id, section: { id: section.id }, type: "CONCEALED", label: "token", value: "zak_section" },
    ]);
    assert.match(full.fields[2].id, ID);

    const pw = (await get(c, `/v1/vaults/${vaultId}/items/${c.itemId("blumeops", "pw")}`)).body;
    assert.equal(pw.category, "PASSWORD");
    assert.deepEqual(pw.fields, [{ id: "password", type: "CONCEALED", purpose: "PASSWORD", label: "password", value: "hunter2" }]);
    assert.deepEqual(pw.sections, []);

    const missing = "b".repeat(26);
    assert.deepEqual(await get(c, `/v1/vaults/${vaultId}/items/${missing}`).then((r) => [r.status, r.body]), [
      404,
      { status: 404, message: `item ${missing} not found` },
    ]);
    assert.equal((await get(c, `/v1/vaults/${vault}/items/${id}`)).status, 404, "item of another vault");
    assert.equal((await get(c, `/v1/vaults/${missing}/items/${id}`)).body.message, `vault ${missing} not found`);

    c.removeItem("blumeops", "pw");
    assert.equal((await get(c, `/v1/vaults/${vaultId}/items`)).body.length, 1);
    assert.throws(() => c.itemId("blumeops", "pw"), /no item/);
  }));

test("rotation: setField and putItem change the value, bump version and updatedAt, keep ids", () =>
  withConnect(async (c) => {
    const vaultId = (await get(c, `/v1/vaults?${titleFilter("blumeops")}`)).body[0].id;
    const id = c.itemId("blumeops", "zot-ci-apikey");
    const read = async () => (await get(c, `/v1/vaults/${vaultId}/items/${id}`)).body;
    const before = await read();
    const vaultBefore = (await get(c, `/v1/vaults/${vaultId}`)).body;

    c.setField("blumeops", "zot-ci-apikey", "credential", "zak_two");
    const after = await read();
    assert.equal(after.version, before.version + 1);
    assert.notEqual(after.updatedAt, before.updatedAt);
    assert.ok(Date.parse(after.updatedAt) > Date.parse(before.updatedAt));
    assert.equal(after.createdAt, before.createdAt);
    assert.equal(after.fields[0].value, "zak_two");
    assert.equal((await get(c, `/v1/vaults/${vaultId}`)).body.contentVersion, vaultBefore.contentVersion + 1);
    assert.throws(() => c.setField("blumeops", "zot-ci-apikey", "nope", "x"), /0 fields/);

    assert.equal(
      c.putItem("blumeops", "zot-ci-apikey", [
        { label: "credential", value: "zak_three" },
        { label: "token", value: "t", section: "registry" },
      ]),
      id,
    );
    const replaced = await read();
    assert.equal(replaced.version, after.version + 1);
    assert.equal(replaced.fields[0].value, "zak_three");
    assert.equal(replaced.sections[0].id, before.sections[0].id, "section id stable");
    assert.equal(replaced.fields[1].id, before.fields[2].id, "field id stable");
  }));

test("requests log never holds the token; delay and down", () =>
  withConnect(async (c) => {
    await get(c, `/v1/vaults?${titleFilter("blumeops")}`);
    await get(c, "/v1/vaults", "wrong");
    const log = c.requests();
    assert.equal(log.length, 2);
    assert.equal(log[0].method, "GET");
    assert.equal(log[0].path, "/v1/vaults");
    assert.equal(log[0].query, titleFilter("blumeops"));
    assert.equal(log[0].status, 200);
    assert.equal(log[1].status, 401);
    assert.ok(Math.abs(log[0].time - Date.now()) < 5000);
    assert.ok(!JSON.stringify(log).includes(c.token));

    c.delayMs = 150;
    const t0 = Date.now();
    assert.equal((await get(c, "/v1/vaults")).status, 200);
    assert.ok(Date.now() - t0 >= 140, `delayed ${Date.now() - t0} ms`);
    c.delayMs = 0;

    c.down = true;
    const down = await get(c, "/v1/vaults");
    assert.equal(down.status, 503);
    assert.match(down.type, /^application\/json/);
    assert.equal(down.body.status, 503);
    assert.equal(typeof down.body.message, "string");
    c.down = false;
    assert.equal((await get(c, "/v1/vaults")).status, 200);
    assert.deepEqual(
      c
        .requests()
        .slice(-3)
        .map((r) => r.status),
      [200, 503, 200],
    );
  }, "tok-" + "x".repeat(20)));
