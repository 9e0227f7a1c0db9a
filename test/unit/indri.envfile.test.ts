// indri: kubernetes.envFilePath values that used to be accepted and broke the runner (fixed in
// lib/config.ts, 56ac691). Its directory becomes the Secret volume's mount point and its
// file name a key of the Secret (beside the plain key and "key-digest"). Each test states the
// property that must hold, so it also holds for a fix made in kubernetes.ts instead of the config.
import { describe, it } from "node:test";
import assert from "node:assert/strict";
import * as path from "node:path";
import { FAKE_KEY, revealed, runStack } from "../support/mockStack";
import { renderTemplate } from "../support/esoTemplate";

type Obj = Record<string, any>;

/**
 * Either the config refuses `envFilePath` (naming the key, registering nothing), or the objects
 * work: a real mount point, valid Secret keys, the env var gets the plain key, the file the line.
 */
async function refusedOrWorks(envFilePath: string): Promise<void> {
  const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { envFilePath } } });
  if (run.error) {
    assert.match(run.error.message, /runner-secrets:kubernetes\.envFilePath: /);
    assert.equal(run.resources.length, 0);
    return;
  }
  const es = revealed(run.resources.find((r) => r.name === "zot-ci-external-secret")!.inputs) as Obj;
  const patch = revealed(run.resources.find((r) => r.name.startsWith("zot-ci-deployment-patch-"))!.inputs) as Obj;
  const data = es.spec.target.template.data as Record<string, string>;
  const spec = patch.spec.template.spec;
  const mount = spec.containers[0].volumeMounts[0];
  const item = spec.volumes[0].secret.items[0];
  assert.notEqual(mount.mountPath, "/", "the Secret volume would be mounted over the container's root");
  for (const k of Object.keys(data))
    assert.match(
      k,
      /^[-._a-zA-Z0-9]+$/,
      `"${k}" is not a valid Secret key: ESO cannot write the Secret, the ExternalSecret never gets Ready`,
    );
  const envKey = spec.containers[0].env[0].valueFrom.secretKeyRef.key;
  assert.equal(renderTemplate(data[envKey] ?? "", { apiKey: FAKE_KEY }), FAKE_KEY, "the daemon's env var must get the plain key");
  assert.equal(
    renderTemplate(data[item.key] ?? "", { apiKey: FAKE_KEY }),
    `ZOT_CI_API_KEY='${FAKE_KEY}'\n`,
    "the env file must get the dotenv line",
  );
  assert.equal(path.posix.join(mount.mountPath, item.path), envFilePath);
}

describe("indri: envFilePath values that must be refused or made to work", () => {
  it("the default works", () => refusedOrWorks("/run/secrets/zot-ci/zot-ci.env"));

  it("a file directly under / (the Secret volume would be mounted at /)", () => refusedOrWorks("/zot-ci.env"));

  it("a file directly in a directory the image needs (/etc, /run, /run/secrets, /usr/…): it would be hidden", async () => {
    for (const p of ["/etc/zot-ci.env", "/run/zot-ci.env", "/run/secrets/zot-ci.env", "/usr/local/zot-ci.env", "/config/../zot.env"]) {
      const run = await runStack("indri", { config: { "runner-secrets:kubernetes": { envFilePath: p } } });
      assert.match(String(run.error?.message), /runner-secrets:kubernetes\.envFilePath: /, p);
      assert.equal(run.resources.length, 0, p);
    }
  });

  it("a file name that is not a valid Secret key (zot+ci.env, a@b.env)", async () => {
    await refusedOrWorks("/run/secrets/zot-ci/zot+ci.env");
    await refusedOrWorks("/run/secrets/zot-ci/a@b.env");
  });

  it("a file named like the env var (its dotenv line would replace the plain key)", () =>
    refusedOrWorks("/run/secrets/zot-ci/ZOT_CI_API_KEY"));

  it('a file named "key-digest" (the digest would replace the dotenv line)', () => refusedOrWorks("/run/secrets/zot-ci/key-digest"));
});
