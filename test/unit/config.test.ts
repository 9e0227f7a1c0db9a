import { test } from "node:test";
import assert from "node:assert/strict";
import { ConfigError, hostKeyProblem, parseConfig } from "../../lib/config";
import { committedConfig, TEST_HOST_KEY } from "../support/mockStack";

// The homelab's facts (vault, host, unit, registry, …) live only in the stack files: a config of a
// test starts from the committed file of its target, unless it says `site: false`.
function siteFacts(target: unknown): Record<string, unknown> {
  const stack = target === "kubernetes" ? "indri" : target === "nixos" ? "ringtail" : undefined;
  if (stack === undefined) return {};
  const { "runner-secrets:target": _target, ...rest } = committedConfig(stack);
  return Object.fromEntries(Object.entries(rest).map(([k, v]) => [k.replace(/^runner-secrets:/, ""), v]));
}

function withSite(o: Record<string, unknown>): Record<string, unknown> {
  const merged: Record<string, unknown> = { ...siteFacts(o.target) };
  for (const [k, v] of Object.entries(o)) {
    const cur = merged[k];
    merged[k] = v !== null && typeof v === "object" && cur !== null && typeof cur === "object" ? { ...cur, ...v } : v;
  }
  return merged;
}

const ns = (o: Record<string, unknown>, opts: { site?: boolean } = {}) =>
  Object.fromEntries(
    Object.entries(opts.site === false ? o : withSite(o)).map(([k, v]) => [
      `runner-secrets:${k}`,
      typeof v === "string" ? v : JSON.stringify(v),
    ]),
  );

function problems(raw: Record<string, unknown>, secretKeys: string[] = [], opts: { site?: boolean } = {}): string[] {
  try {
    parseConfig(ns(raw, opts), secretKeys);
  } catch (e) {
    assert.ok(e instanceof ConfigError, String(e));
    return e.problems;
  }
  assert.fail("expected a ConfigError");
}

const nixos = { hostKey: TEST_HOST_KEY };

test("the indri stack file and the program's defaults give the hosts.md values", () => {
  const c = parseConfig(ns({ target: "kubernetes" }));
  assert.equal(c.envVar, "ZOT_CI_API_KEY");
  assert.deepEqual(c.onePassword, { vault: "blumeops", item: "zot-ci-apikey", field: "credential", mode: "serviceAccount" });
  assert.equal(c.kubernetes?.context, "minikube");
  assert.equal(c.kubernetes?.namespace, "forgejo-runner");
  assert.deepEqual(c.kubernetes?.secretStore, { kind: "ClusterSecretStore", name: "onepassword-blumeops" });
  assert.equal(c.nixos, undefined);
  assert.equal(c.registryCheck.url, "https://registry.ops.eblu.me");
});

test("the ringtail stack file and the program's defaults give the hosts.md values, modes normalised", () => {
  const c = parseConfig(ns({ target: "nixos", nixos: { ...nixos, fileMode: "600", port: "2222" } }));
  assert.equal(c.nixos?.host, "ringtail");
  assert.equal(c.nixos?.user, "eblume");
  assert.equal(c.nixos?.port, 2222);
  assert.equal(c.nixos?.fileMode, "0600");
  assert.equal(c.nixos?.dirMode, "0700");
  assert.equal(c.nixos?.envFile, "/etc/forgejo-runner/zot-api-key.env");
  assert.equal(c.nixos?.unit, "gitea-runner-nix_container_builder.service");
  assert.equal(c.nixos?.flake, "/etc/blumeops/nixos/ringtail#ringtail");
  assert.equal(c.kubernetes, undefined);
});

test("the empty default of the other target (Pulumi.yaml) does not count as set", () => {
  const c = parseConfig(ns({ target: "nixos", nixos, kubernetes: {} }));
  assert.equal(c.target, "nixos");
});

test("every problem is reported at once, each with its full key", () => {
  const p = problems({
    target: "nixos",
    nixos: { host: "ringtail; rm -rf /", envFile: "relative/path", unit: "x", bogus: 1 },
    kubernetes: { namespace: "x" },
    colour: "blue",
  });
  const keys = p.map((x) => x.split(": ")[0]);
  for (const k of [
    "runner-secrets:nixos.host",
    "runner-secrets:nixos.envFile",
    "runner-secrets:nixos.unit",
    "runner-secrets:nixos.bogus",
    "runner-secrets:nixos.hostKey",
    "runner-secrets:kubernetes",
    "runner-secrets:colour",
  ]) {
    assert.ok(keys.includes(k), `${k} missing from ${JSON.stringify(p, null, 1)}`);
  }
});

test("target: neither, unknown, or both", () => {
  assert.match(problems({})[0], /^runner-secrets:target: is required/);
  assert.match(problems({ target: "docker" })[0], /^runner-secrets:target: must be "kubernetes" or "nixos"/);
  assert.ok(problems({ target: "kubernetes", nixos }).some((p) => /^runner-secrets:nixos: is set, but .*target is "kubernetes"/.test(p)));
  assert.ok(problems({ target: "nixos" }, [], { site: false }).some((p) => p.startsWith("runner-secrets:nixos:")));
});

test("the homelab's facts have no default: a stack without them is refused, each key named", () => {
  const nixosKeys = problems({ target: "nixos", nixos }, [], { site: false }).map((p) => p.split(": ")[0]);
  for (const k of ["nixos.host", "nixos.user", "nixos.envFile", "nixos.flake", "nixos.unit"]) {
    assert.ok(nixosKeys.includes(`runner-secrets:${k}`), `${k} missing from ${nixosKeys.join(", ")}`);
  }
  const k8sKeys = problems({ target: "kubernetes" }, [], { site: false }).map((p) => p.split(": ")[0]);
  assert.ok(k8sKeys.includes("runner-secrets:kubernetes"), k8sKeys.join(", "));
  const k8sPartKeys = problems({ target: "kubernetes", kubernetes: { context: "minikube" } }, [], { site: false }).map(
    (p) => p.split(": ")[0],
  );
  for (const k of [
    "kubernetes.namespace",
    "kubernetes.deployment",
    "kubernetes.container",
    "kubernetes.secretStore.name",
    "onePassword.vault",
    "onePassword.item",
    "registryCheck.url",
    "registryCheck.user",
  ]) {
    assert.ok(k8sPartKeys.includes(`runner-secrets:${k}`), `${k} missing from ${k8sPartKeys.join(", ")}`);
  }
  assert.ok(!k8sPartKeys.includes("runner-secrets:kubernetes.context"));
});

test("wrong types are refused", () => {
  assert.ok(problems({ target: "nixos", nixos: { ...nixos, port: "ssh" } }).some((p) => p.startsWith("runner-secrets:nixos.port:")));
  assert.ok(
    problems({ target: "nixos", nixos: { ...nixos, keepOnDestroy: "yes" } }).some((p) =>
      p.startsWith("runner-secrets:nixos.keepOnDestroy:"),
    ),
  );
  assert.ok(problems({ target: "kubernetes", kubernetes: "minikube" }).some((p) => p.startsWith("runner-secrets:kubernetes:")));
  assert.ok(
    problems({ target: "kubernetes", registryCheck: { timeoutSeconds: -1 } }).some((p) =>
      p.startsWith("runner-secrets:registryCheck.timeoutSeconds:"),
    ),
  );
});

// Values that would change the meaning of a shell command, path or unit if they were let through.
const hostile = ["a'b", 'a"b', "$(id)", "`id`", "a\nb", "a b", "a;b", "a\\b"];

for (const [key, base] of [
  ["host", "ringtail"],
  ["user", "eblume"],
  ["envFile", "/etc/forgejo-runner/zot-api-key.env"],
  ["agentSocketPath", "/run/user/1000/ssh-agent"],
  ["unit", "gitea-runner.service"],
  ["flake", "/etc/blumeops/nixos/ringtail#ringtail"],
  ["owner", "root"],
  ["group", "root"],
] as const) {
  test(`nixos.${key} refuses quotes, $( ), backticks, newlines, spaces and ;`, () => {
    for (const bad of hostile) {
      const value = key === "envFile" || key === "agentSocketPath" || key === "flake" ? `${base}${bad}` : `${base.slice(0, 3)}${bad}`;
      const p = problems({ target: "nixos", nixos: { ...nixos, [key]: value } });
      assert.ok(
        p.some((x) => x.startsWith(`runner-secrets:nixos.${key}:`)),
        `${JSON.stringify(value)} accepted for ${key}`,
      );
    }
  });
}

// Every registryCheck value reaches the checker's command line; connectUrl goes to the provider.
for (const [key, base] of [
  ["registryCheck.url", "https://registry.ops.eblu.me"],
  ["registryCheck.user", "zot-ci"],
  ["registryCheck.probeRepository", "runner-secrets/probe"],
  ["registryCheck.caFile", "/etc/ssl/ca.pem"],
  ["onePassword.connectUrl", "http://127.0.0.1:8080"],
] as const) {
  test(`${key} refuses quotes, $( ), backticks, newlines, spaces and ; (before anything registers)`, () => {
    const [group, field] = key.split(".");
    for (const bad of [...hostile, "$HOME", "a\rb", "a#b"]) {
      for (const value of [`${base}${bad}`, `${base.slice(0, 12)}${bad}${base.slice(12)}`]) {
        const extra = group === "onePassword" ? { mode: "connect" } : {};
        const p = problems({ target: "nixos", nixos, [group]: { ...extra, [field]: value } });
        assert.ok(
          p.some((x) => x.startsWith(`runner-secrets:${key}:`)),
          `${JSON.stringify(value)} accepted for ${key}`,
        );
      }
    }
  });
}

test("registryCheck.url is kept exactly as typed (a newline never joins two host names)", () => {
  const p = problems({ target: "nixos", nixos, registryCheck: { url: "https://registry.ops.eblu.mea\nb" } });
  assert.ok(
    p.some((x) => x.startsWith("runner-secrets:registryCheck.url:")),
    p.join("; "),
  );
  for (const url of ["https://registry.ops.eblu.me", "http://127.0.0.1:5000", "https://zot.example:8443/v2-mirror"]) {
    assert.equal(parseConfig(ns({ target: "nixos", nixos, registryCheck: { url } })).registryCheck.url, url);
  }
});

test("envVar must be an environment variable name", () => {
  for (const bad of [...hostile.map((h) => `ZOT${h}`), "1ABC", "A-B", ""]) {
    assert.ok(
      problems({ target: "kubernetes", envVar: bad }).some((p) => p.startsWith("runner-secrets:envVar:")),
      JSON.stringify(bad),
    );
  }
  assert.equal(parseConfig(ns({ target: "kubernetes", envVar: "REGISTRY_KEY_2" })).envVar, "REGISTRY_KEY_2");
});

test("paths must be absolute and plain", () => {
  for (const bad of ["etc/x", "/etc/../shadow", "/etc/./x", "/etc/x/", "/etc//x", "/"]) {
    assert.ok(
      problems({ target: "nixos", nixos: { ...nixos, envFile: bad } }).some((p) => p.startsWith("runner-secrets:nixos.envFile:")),
      bad,
    );
  }
});

test("host keys: required, right format, data matching the type", () => {
  assert.equal(hostKeyProblem(TEST_HOST_KEY), undefined);
  assert.equal(hostKeyProblem(`${TEST_HOST_KEY} root@ringtail`), undefined);
  assert.match(hostKeyProblem("AAAAC3NzaC1lZDI1NTE5AAAA")!, /public host key line/);
  assert.match(hostKeyProblem("ssh-dss AAAAB3NzaC1kc3MAAACBAP")!, /not one of/);
  // An ed25519 blob labelled as RSA, and a truncated blob.
  assert.match(hostKeyProblem(TEST_HOST_KEY.replace("ssh-ed25519", "ssh-rsa"))!, /does not decode to a ssh-rsa key/);
  assert.match(hostKeyProblem("ssh-ed25519 AAAA")!, /does not decode/);
  assert.match(hostKeyProblem(`ssh-ed25519 ${TEST_HOST_KEY.split(" ")[1]}\nextra`)!, /public host key line/);
  assert.ok(
    problems({ target: "nixos", nixos: { host: "ringtail" } }).some((p) => /^runner-secrets:nixos.hostKey: is required: pin/.test(p)),
  );
  assert.ok(
    problems({ target: "nixos", nixos: { hostKey: "ssh-ed25519 not-base64!" } }).some((p) => p.startsWith("runner-secrets:nixos.hostKey:")),
  );
});

test("kubernetes names follow Kubernetes' rules", () => {
  for (const [key, bad] of [
    ["namespace", "Forgejo"],
    ["namespace", "a.b"],
    ["namespace", "x".repeat(64)],
    ["deployment", "forgejo_runner"],
    ["container", "Runner"],
    ["secretName", "-zot"],
    ["externalSecret", "zot ci"],
    ["volumeName", "zot.env"],
    ["envFilePath", "/run/secrets/zot ci/env"],
    ["context", ""],
    ["refreshInterval", "1h"],
    ["fieldManager", "runner secrets"],
  ] as const) {
    assert.ok(
      problems({ target: "kubernetes", kubernetes: { [key]: bad } }).some((p) => p.startsWith(`runner-secrets:kubernetes.${key}:`)),
      `${key}=${JSON.stringify(bad)} accepted`,
    );
  }
  assert.ok(
    problems({ target: "kubernetes", kubernetes: { secretStore: { kind: "VaultStore" } } }).some((p) =>
      p.startsWith('runner-secrets:kubernetes.secretStore.kind: must be "SecretStore" or "ClusterSecretStore"'),
    ),
  );
  const ok = parseConfig(ns({ target: "kubernetes", kubernetes: { secretStore: { kind: "SecretStore", name: "op" } } }));
  assert.deepEqual(ok.kubernetes?.secretStore, { kind: "SecretStore", name: "op" });
});

test("1Password modes: each needs its own setting and refuses the others'", () => {
  assert.ok(
    problems({ target: "kubernetes", onePassword: { mode: "connect" } }).some((p) =>
      p.startsWith("runner-secrets:onePassword.connectUrl: is required"),
    ),
  );
  assert.ok(
    problems({ target: "kubernetes", onePassword: { mode: "desktop" } }).some((p) =>
      p.startsWith("runner-secrets:onePassword.account: is required"),
    ),
  );
  assert.ok(
    problems({ target: "kubernetes", onePassword: { connectUrl: "http://op-connect:8080" } }).some((p) =>
      p.startsWith("runner-secrets:onePassword.connectUrl: is only used"),
    ),
  );
  assert.ok(problems({ target: "kubernetes", onePassword: { mode: "sso" } }).some((p) => p.startsWith("runner-secrets:onePassword.mode:")));
  const c = parseConfig(ns({ target: "kubernetes", onePassword: { mode: "connect", connectUrl: "http://op-connect:8080" } }));
  assert.equal(c.onePassword.connectUrl, "http://op-connect:8080");
});

test("credentials must be set as secrets, and are never echoed in errors", () => {
  const p = problems({ target: "nixos", nixos, sshPrivateKey: "fake-private-key hunter2" });
  assert.ok(p.some((x) => x.startsWith("runner-secrets:sshPrivateKey: holds a credential")));
  assert.ok(!p.join("\n").includes("hunter2"));
  const c = parseConfig(ns({ target: "nixos", nixos, sshPrivateKey: "k3y" }), ["runner-secrets:sshPrivateKey"]);
  assert.equal(c.secrets.sshPrivateKey, "k3y");
});

test("keys of other namespaces are left to their providers", () => {
  const c = parseConfig({ ...ns({ target: "kubernetes" }), "kubernetes:context": "x" });
  assert.equal(c.target, "kubernetes");
});
