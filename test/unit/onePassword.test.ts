import { test } from "node:test";
import assert from "node:assert/strict";
import type { GetItemResult } from "@1password/pulumi-onepassword";
import { providerArgs, selectField } from "../../components/onePassword";

const item = (over: Partial<GetItemResult> = {}): GetItemResult =>
  ({
    id: "vaults/v/items/i",
    uuid: "i",
    title: "zot-ci-apikey",
    vault: "v",
    category: "api_credential",
    credential: "zak_cred",
    password: "",
    sections: [
      { id: "s1", label: "registry", fields: [{ id: "f1", label: "token", value: "zak_section", purpose: "", type: "CONCEALED" }] },
      { id: "s2", label: "old", fields: [{ id: "f2", label: "dup", value: "a", purpose: "", type: "STRING" }] },
      { id: "s3", label: "older", fields: [{ id: "f3", label: "dup", value: "b", purpose: "", type: "STRING" }] },
    ],
    ...over,
  }) as GetItemResult;
const ref = { vault: "blumeops", item: "zot-ci-apikey", field: "credential" };

test("credential, password, a labelled field, a field of a named section", () => {
  assert.equal(selectField(item(), ref), "zak_cred");
  assert.equal(selectField(item({ password: "zak_pw" }), { ...ref, field: "password" }), "zak_pw");
  assert.equal(selectField(item(), { ...ref, field: "token" }), "zak_section");
  assert.equal(selectField(item(), { ...ref, field: "token", section: "registry" }), "zak_section");
});

test("missing, empty, ambiguous and unsafe values name vault, item and field", () => {
  assert.throws(() => selectField(item(), { ...ref, field: "nope" }), /no field "nope" of item "zot-ci-apikey" in vault "blumeops"/);
  assert.throws(
    () => selectField(item(), { ...ref, field: "password" }),
    /field "password" of item "zot-ci-apikey" in vault "blumeops" is empty/,
  );
  assert.throws(
    () => selectField(item(), { ...ref, field: "token", section: "nope" }),
    /no section "nope" in item "zot-ci-apikey" \(vault "blumeops"\); its sections: "registry", "old", "older"/,
  );
  assert.throws(() => selectField(item(), { ...ref, field: "dup" }), /ambiguous/);
  assert.throws(
    () => selectField(item({ credential: "zak_x\nEVIL=1" }), ref),
    (e: Error) => /control character/.test(e.message) && !e.message.includes("zak_x"),
  );
});

test("provider arguments per mode", () => {
  const base = { vault: "v", item: "i", field: "credential" };
  assert.deepEqual(providerArgs({ ...base, mode: "serviceAccount" }), {});
  assert.deepEqual(Object.keys(providerArgs({ ...base, mode: "connect", connectUrl: "http://c:8080" })), ["url"]);
  assert.deepEqual(providerArgs({ ...base, mode: "desktop", account: "my.1password.com", opCliPath: "/usr/bin/op" }), {
    opCliPath: "/usr/bin/op",
    account: "my.1password.com",
  });
});
