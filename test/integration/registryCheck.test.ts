// The registry check against a real registry (CNCF distribution, htpasswd auth, TLS with a CA
// only the caFile option makes trusted), and the CLI as an operator runs it.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as https from "node:https";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { checkRegistry, RegistryCheckError, scrub, secretForms, type RegistryCheckOptions } from "../../checker/registryCheck";
import { CHECKER_CLI } from "../../components/registryGate";
import { freePort, randomKey, startRegistry, startSilentServer, type TestRegistry } from "../support/registry";
import { runTs, type Ran } from "../support/runTs";

const USER = "zot-ci";
const PROBE = "runner-secrets/probe";
const CLI = path.join(__dirname, "..", "..", CHECKER_CLI);

function optionsFor(reg: TestRegistry, extra: Partial<RegistryCheckOptions> = {}): RegistryCheckOptions {
  return { url: reg.url, user: USER, probeRepository: PROBE, timeoutSeconds: 10, caFile: reg.caFile, ...extra };
}

async function rejection(p: Promise<unknown>): Promise<RegistryCheckError> {
  try {
    await p;
  } catch (err) {
    assert.ok(err instanceof RegistryCheckError, `expected RegistryCheckError, got ${String(err)}`);
    return err;
  }
  assert.fail("expected the check to fail, but it passed");
}

function runCli(args: string[], stdin: string, env?: Record<string, string>): Promise<Ran> {
  const root = path.join(__dirname, "..", "..");
  return runTs(CLI, args, { cwd: root, stdin, ...(env ? { env: { PATH: process.env.PATH ?? "", ...env } } : {}) });
}

function assertNoSecret(text: string, key: string): void {
  for (const form of secretForms(USER, key)) {
    assert.ok(!text.includes(form), `output contains a form of the key (${form.length} chars):\n${text}`);
  }
}

/** Starts an upload without cancelling it, to show the open-upload observer sees one. */
function startUpload(reg: TestRegistry, key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const req = https.request(
      `${reg.url}/v2/${PROBE}/blobs/uploads/`,
      {
        method: "POST",
        ca: fs.readFileSync(reg.caFile),
        headers: {
          authorization: `Basic ${Buffer.from(`${USER}:${key}`).toString("base64")}`,
          "content-length": "0",
        },
        agent: false,
      },
      (res) => {
        res.resume();
        res.on("end", () => resolve(res.statusCode ?? 0));
      },
    );
    req.on("error", reject);
    req.end();
  });
}

describe("checkRegistry against a registry with htpasswd auth", () => {
  const key = randomKey();
  let reg: TestRegistry;

  before(async () => {
    reg = await startRegistry({ auth: { user: USER, key } });
  });
  after(async () => {
    await reg?.stop();
  });

  it("passes all three checks with the right key and leaves no upload open", async () => {
    assert.deepEqual(reg.openUploads(PROBE), []);
    await checkRegistry(optionsFor(reg), key);
    // The probe did reach the push step: distribution created the repository's upload area…
    assert.ok(fs.existsSync(reg.uploadsDir(PROBE)), "the push probe never started an upload");
    // …and the DELETE closed the upload it opened.
    assert.deepEqual(reg.openUploads(PROBE), [], `open uploads left behind; registry log:\n${reg.log()}`);
  });

  it("sees an upload that was not cancelled (the observer above can fail)", async () => {
    assert.equal(await startUpload(reg, key), 202);
    assert.equal(reg.openUploads(PROBE).length, 1);
  });

  it("fails on the first check with a wrong key, naming the 401 and the remedy", async () => {
    const err = await rejection(checkRegistry(optionsFor(reg), "zak_wrong"));
    assert.equal(err.step, "login");
    assert.equal(err.status, 401);
    assert.match(err.message, /check 1 \(login\)/);
    assert.match(err.message, /HTTP 401/);
    assert.match(err.message, /rejected the key for user zot-ci/);
    assert.match(err.message, /1Password item/);
    assert.ok(!err.message.includes("zak_wrong"));
  });

  it("fails for an unknown user even with the right key", async () => {
    const err = await rejection(checkRegistry(optionsFor(reg, { user: "someone-else" }), key));
    assert.equal(err.status, 401);
    assertNoSecret(err.message, key);
  });

  it("does not trust the registry's CA without caFile", async () => {
    const { caFile: _unused, ...noCa } = optionsFor(reg);
    const err = await rejection(checkRegistry(noCa, key));
    assert.equal(err.step, "login");
    assert.match(err.message, /TLS: the certificate of 127\.0\.0\.1:\d+ is not trusted/);
    assert.match(err.message, /caFile/);
  });

  it("reports a caFile that cannot be read", async () => {
    const err = await rejection(checkRegistry(optionsFor(reg, { caFile: "/nonexistent/ca.pem" }), key));
    assert.equal(err.step, "options");
    assert.match(err.message, /cannot read caFile \/nonexistent\/ca\.pem/);
  });

  it("CLI: success prints one line without the key, exit 0", async () => {
    const r = await runCli(
      ["--url", reg.url, "--user", USER, "--probe-repository", PROBE, "--timeout-seconds", "10", "--ca-file", reg.caFile],
      `${key}\n`,
    );
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.trim().split("\n").length, 1);
    assert.match(r.stdout, /^registry check passed: /);
    assert.equal(r.stderr, "");
    assertNoSecret(r.stdout + r.stderr, key);
  });

  it("CLI: a wrong key exits 1 with the message on stderr and no key anywhere", async () => {
    const wrong = randomKey();
    const r = await runCli(
      ["--url", reg.url, "--user", USER, "--probe-repository", PROBE, "--timeout-seconds", "10", "--ca-file", reg.caFile],
      `${wrong}\n`,
    );
    assert.equal(r.code, 1);
    assert.equal(r.stdout, "");
    assert.match(r.stderr, /check 1 \(login\).*HTTP 401/);
    assertNoSecret(r.stdout + r.stderr, wrong);
    assertNoSecret(r.stdout + r.stderr, key);
  });
});

describe("check-registry --key-from-env (the job-side check) against the real registry", () => {
  let reg: TestRegistry;
  let key: string;
  before(async () => {
    key = randomKey();
    reg = await startRegistry({ auth: { user: USER, key } });
  });
  after(async () => {
    await reg?.stop();
  });
  const flags = () => ["--url", reg.url, "--user", USER, "--probe-repository", PROBE, "--timeout-seconds", "10", "--ca-file", reg.caFile];

  it("reads the key from the named variable, ignores stdin, passes all three checks, prints no key", async () => {
    const r = await runCli([...flags(), "--key-from-env", "ZOT_CI_API_KEY"], "not-the-key\n", { ZOT_CI_API_KEY: key });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /^registry check passed: .*refuses anonymous push/);
    assertNoSecret(r.stdout + r.stderr, key);
  });

  it("a stale key in the variable fails check 1 with the 401, no key printed", async () => {
    const stale = randomKey();
    const r = await runCli([...flags(), "--key-from-env", "ZOT_CI_API_KEY"], "", { ZOT_CI_API_KEY: stale });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /check 1 \(login\).*HTTP 401/);
    assertNoSecret(r.stdout + r.stderr, stale);
  });

  it("an unset or empty variable fails (exit 1) naming it, without contacting the registry", async () => {
    for (const env of [{}, { ZOT_CI_API_KEY: "" }] as Record<string, string>[]) {
      const r = await runCli([...flags(), "--key-from-env", "ZOT_CI_API_KEY"], key, env);
      assert.equal(r.code, 1);
      assert.match(r.stderr, /ZOT_CI_API_KEY is not set \(or empty\).*did not give this job the key/);
      assertNoSecret(r.stdout + r.stderr, key);
    }
  });

  it("a variable name that is not one is bad usage (exit 2)", async () => {
    const r = await runCli([...flags(), "--key-from-env", "ZOT CI"], "", {});
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--key-from-env must name an environment variable/);
  });
});

describe("checkRegistry against a registry without auth", () => {
  let reg: TestRegistry;
  before(async () => {
    reg = await startRegistry({});
  });
  after(async () => {
    await reg?.stop();
  });

  it("fails check 3 because anonymous pushes are accepted, and cancels that upload too", async () => {
    const err = await rejection(checkRegistry(optionsFor(reg), randomKey()));
    assert.equal(err.step, "anonymous");
    assert.equal(err.status, 202);
    assert.match(err.message, /check 3 \(anonymous push refused\)/);
    assert.match(err.message, /accepts anonymous pushes/);
    assert.deepEqual(reg.openUploads(PROBE), []);
  });
});

describe("checkRegistry when the registry cannot be reached", () => {
  it("names the URL and 'connection refused' when nothing listens on the port", async () => {
    const port = await freePort();
    const url = `https://127.0.0.1:${port}`;
    const err = await rejection(checkRegistry({ url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, randomKey()));
    assert.match(err.message, new RegExp(`GET ${url}/v2/ failed: connection refused`));
  });

  it("times out, naming the URL and the limit, when the socket never answers", async () => {
    const silent = await startSilentServer();
    try {
      const url = `https://127.0.0.1:${silent.port}`;
      const started = Date.now();
      const err = await rejection(checkRegistry({ url, user: USER, probeRepository: PROBE, timeoutSeconds: 0.5 }, randomKey()));
      const elapsed = Date.now() - started;
      assert.match(err.message, new RegExp(`GET ${url}/v2/ timed out after 0\\.5s`));
      assert.ok(elapsed >= 450 && elapsed < 5000, `took ${elapsed} ms`);
    } finally {
      await silent.stop();
    }
  });

  it("CLI: a timeout exits 1 and keeps the key out of stderr", async () => {
    const silent = await startSilentServer();
    try {
      const key = randomKey();
      const r = await runCli(
        ["--url", `https://127.0.0.1:${silent.port}`, "--user", USER, "--probe-repository", PROBE, "--timeout-seconds", "0.3"],
        key,
      );
      assert.equal(r.code, 1);
      assert.match(r.stderr, /timed out after 0\.3s/);
      assertNoSecret(r.stdout + r.stderr, key);
    } finally {
      await silent.stop();
    }
  });
});

describe("check-registry CLI usage", () => {
  const base = ["--url", "https://127.0.0.1:1", "--user", USER, "--probe-repository", PROBE, "--timeout-seconds", "1"];

  it("exits 2 naming a missing flag", async () => {
    const r = await runCli(base.slice(0, 6), "k");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /missing --timeout-seconds/);
    assert.match(r.stderr, /usage: check-registry/);
  });

  it("exits 2 naming an unknown flag", async () => {
    const r = await runCli([...base, "--password", "x"], "k");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--password/);
  });

  it("exits 2 on a timeout that is not a positive number", async () => {
    const r = await runCli([...base.slice(0, 6), "--timeout-seconds", "soon"], "k");
    assert.equal(r.code, 2);
    assert.match(r.stderr, /--timeout-seconds must be a positive number/);
  });
});

describe("option validation", () => {
  const good: RegistryCheckOptions = { url: "https://r.example", user: USER, probeRepository: PROBE, timeoutSeconds: 1 };
  const cases: [string, Partial<RegistryCheckOptions>, RegExp][] = [
    ["a non-URL", { url: "registry" }, /is not a URL/],
    ["ftp", { url: "ftp://r.example" }, /must start with https:\/\//],
    ["/v2/ in the url", { url: "https://r.example/v2/" }, /without \/v2\//],
    ["credentials in the url", { url: "https://u:p@r.example" }, /must not carry credentials/],
    ["an upper-case repository", { probeRepository: "Runner/Probe" }, /not a valid repository name/],
    ["a zero timeout", { timeoutSeconds: 0 }, /timeoutSeconds must be a positive number/],
    ["a user with a colon", { user: "a:b" }, /must not contain ":"/],
  ];
  for (const [name, change, pattern] of cases) {
    it(`rejects ${name}`, async () => {
      const err = await rejection(checkRegistry({ ...good, ...change }, "zak_x"));
      assert.equal(err.step, "options");
      assert.match(err.message, pattern);
    });
  }

  it("rejects an empty key without sending anything", async () => {
    const err = await rejection(checkRegistry(good, ""));
    assert.match(err.message, /key for user zot-ci is empty/);
  });
});

describe("scrub", () => {
  it("removes the key, and the base64 an Authorization header would carry", () => {
    const key = "zak_0123456789abcdef";
    const header = `Basic ${Buffer.from(`${USER}:${key}`).toString("base64")}`;
    const text = `key=${key} header=${header} alone=${Buffer.from(key).toString("base64")}`;
    const out = scrub(text, USER, key);
    for (const form of secretForms(USER, key)) assert.ok(!out.includes(form));
    assert.match(out, /key=\[secret\] header=Basic \[secret\] alone=\[secret\]/);
  });
});

// Behaviours the distribution registry cannot be made to show (it has no per-repository
// permissions and always answers with absolute Locations): a small node:http server that answers
// like zot does, recording what it receives.
describe("checkRegistry against zot-like answers (node:http stub)", () => {
  interface Seen {
    method: string;
    url: string;
    authorization?: string;
  }
  async function stub(
    answer: (req: import("node:http").IncomingMessage, res: import("node:http").ServerResponse) => void,
  ): Promise<{ url: string; seen: Seen[]; stop(): Promise<void> }> {
    const http = await import("node:http");
    const seen: Seen[] = [];
    const server = http.createServer((req, res) => {
      seen.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization });
      answer(req, res);
    });
    await new Promise<void>((resolve) => server.listen(0, "127.0.0.1", resolve));
    const port = (server.address() as import("node:net").AddressInfo).port;
    return {
      url: `http://127.0.0.1:${port}`,
      seen,
      stop: () => new Promise<void>((resolve) => server.close(() => resolve())),
    };
  }
  const key = "zak_stubkey";
  const authed = (req: import("node:http").IncomingMessage) =>
    req.headers.authorization === `Basic ${Buffer.from(`${USER}:${key}`).toString("base64")}`;

  it("resolves a relative Location against the URL and deletes that upload", async () => {
    const s = await stub((req, res) => {
      if (!authed(req)) return void res.writeHead(401).end();
      if (req.method === "GET") return void res.writeHead(200).end("{}");
      if (req.method === "POST") {
        return void res.writeHead(202, { location: `/v2/${PROBE}/blobs/uploads/abc-123` }).end();
      }
      res.writeHead(204).end();
    });
    try {
      await checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key);
      assert.deepEqual(
        s.seen.map((r) => `${r.method} ${r.url} ${r.authorization ? "auth" : "anon"}`),
        [
          "GET /v2/ auth",
          `POST /v2/${PROBE}/blobs/uploads/ auth`,
          `DELETE /v2/${PROBE}/blobs/uploads/abc-123 auth`,
          `POST /v2/${PROBE}/blobs/uploads/ anon`,
        ],
      );
    } finally {
      await s.stop();
    }
  });

  it("explains a 403 on the push probe as a missing create permission", async () => {
    const s = await stub((req, res) => {
      if (!authed(req)) return void res.writeHead(401).end();
      if (req.method === "GET") return void res.writeHead(200).end("{}");
      res.writeHead(403, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "DENIED", message: "requested access to the resource is denied" }] }));
    });
    try {
      const err = await rejection(checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key));
      assert.equal(err.step, "push");
      assert.equal(err.status, 403);
      assert.match(err.message, /check 2 \(push\).*HTTP 403.*DENIED/);
      assert.match(err.message, /lacks the create permission on runner-secrets\/probe/);
    } finally {
      await s.stop();
    }
  });

  it("reports a failed cancel with its status", async () => {
    const s = await stub((req, res) => {
      if (!authed(req)) return void res.writeHead(401).end();
      if (req.method === "GET") return void res.writeHead(200).end("{}");
      if (req.method === "POST") return void res.writeHead(202, { location: "/v2/x/blobs/uploads/1" }).end();
      res.writeHead(500).end();
    });
    try {
      const err = await rejection(checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key));
      assert.equal(err.step, "cancel");
      assert.equal(err.status, 500);
      assert.match(err.message, /cancelling the probe upload with DELETE .*returned HTTP 500/);
    } finally {
      await s.stop();
    }
  });

  it("does not follow a Location to another origin with the key", async () => {
    const s = await stub((req, res) => {
      if (!authed(req)) return void res.writeHead(401).end();
      if (req.method === "GET") return void res.writeHead(200).end("{}");
      res.writeHead(202, { location: "http://elsewhere.invalid/v2/x/blobs/uploads/1" }).end();
    });
    try {
      const err = await rejection(checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key));
      assert.match(err.message, /pointed the upload at http:\/\/elsewhere\.invalid.*not sending credentials/);
      assert.equal(s.seen.filter((r) => r.method === "DELETE").length, 0);
    } finally {
      await s.stop();
    }
  });

  it("does not follow a redirect: the check fails naming where it points, and the key goes nowhere else", async () => {
    const elsewhere = await stub((_req, res) => void res.writeHead(200).end("{}"));
    const s = await stub((_req, res) => void res.writeHead(301, { location: `${elsewhere.url}/v2/` }).end());
    try {
      const err = await rejection(checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key));
      assert.equal(err.step, "login");
      assert.equal(err.status, 301);
      assert.match(err.message, /returned HTTP 301: expected 200\. The registry redirects to http:\/\/127\.0\.0\.1:\d+\/v2\//);
      assert.equal(elsewhere.seen.length, 0);
    } finally {
      await s.stop();
      await elsewhere.stop();
    }
  });

  it("keeps the key out of a message even when the registry echoes it back", async () => {
    const s = await stub((req, res) => {
      res.writeHead(401, { "content-type": "application/json" });
      res.end(JSON.stringify({ errors: [{ code: "UNAUTHORIZED", message: `bad credentials ${req.headers.authorization} ${key}` }] }));
    });
    try {
      const err = await rejection(checkRegistry({ url: s.url, user: USER, probeRepository: PROBE, timeoutSeconds: 5 }, key));
      assert.match(err.message, /UNAUTHORIZED \(bad credentials Basic \[secret\] \[secret\]\)/);
      assertNoSecret(err.message + (err.stack ?? ""), key);
    } finally {
      await s.stop();
    }
  });
});
