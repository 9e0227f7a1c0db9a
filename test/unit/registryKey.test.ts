import { test } from "node:test";
import assert from "node:assert/strict";
import { createHash } from "node:crypto";
import { envFileLine, keyDigest, unsafeKeyReason } from "../../lib/registryKey";

test("digest: 16 hex digits of SHA-256, stable, different per key, not the key", () => {
  const d = keyDigest("zak_abc");
  assert.equal(d, createHash("sha256").update("zak_abc").digest("hex").slice(0, 16));
  assert.match(d, /^[0-9a-f]{16}$/);
  assert.equal(keyDigest("zak_abc"), d);
  assert.notEqual(keyDigest("zak_abd"), d);
});

test("env file line: plain for ordinary keys, single-quoted (read literally) otherwise", () => {
  assert.equal(envFileLine("ZOT_CI_API_KEY", "zak_abc123"), "ZOT_CI_API_KEY=zak_abc123\n");
  assert.equal(envFileLine("K", "zak_a+b/c=d-e.f"), "K=zak_a+b/c=d-e.f\n");
  for (const odd of ["a$b", 'a"b', "a#b", "a b", "a\\b", "a`b"]) assert.equal(envFileLine("K", odd), `K='${odd}'\n`);
});

test("keys that cannot be written safely are refused, never mangled, and not echoed", () => {
  for (const [key, why] of [
    ["", /empty/],
    ["zak_a\nINJECTED=1", /control character/],
    ["zak_a\u0000b", /control character/],
    ["zak_a\rb", /control character/],
    ["zak_a\tb", /control character/],
    ["zak_a\u007fb", /control character/],
    ["zak_it's", /single quote/],
    [" zak_a", /whitespace/],
  ] as const) {
    assert.match(unsafeKeyReason(key) ?? "", why, JSON.stringify(key));
    assert.throws(
      () => envFileLine("ZOT_CI_API_KEY", key),
      (e: Error) => why.test(e.message) && (key.length < 3 || !e.message.includes(key)),
    );
  }
  assert.equal(unsafeKeyReason("zak_0123456789abcdefABCDEF"), undefined);
});
