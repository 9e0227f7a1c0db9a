// ci/previewComment/main.ts against a stand-in for Forgejo's comment API: a real node:http server
// on 127.0.0.1 that keeps comments in memory, pages like Forgejo (page/limit, a server-side cap,
// X-Total-Count) and records every request. The script runs as a child process, as in CI.

import assert from "node:assert/strict";
import * as fs from "node:fs";
import * as http from "node:http";
import type { AddressInfo } from "node:net";
import * as os from "node:os";
import * as path from "node:path";
import { after, afterEach, before, beforeEach, describe, it } from "node:test";
import { buildBody, keepTail, marker, resourceSummary } from "../../ci/previewComment/body";
import { redact } from "../../lib/redact";
import { freePort } from "../support/registry";
import { runTs, type Ran } from "../support/runTs";

const SCRIPT = path.join(__dirname, "..", "..", "ci", "previewComment", "main.ts");
const TOKEN = "job-token-7f3a9c";
const OWNER = "eblume";
const REPO = "runner-secrets";
const PR = 7;
/** The user the job token belongs to (what GET /api/v1/user answers). */
const BOT = "forgejo-actions";

interface Recorded {
  method: string;
  url: string;
  authorization?: string;
  body: string;
}

interface StoredComment {
  id: number;
  issue: number;
  body: string;
  user: string;
}

class ForgejoStub {
  server!: http.Server;
  url = "";
  comments: StoredComment[] = [];
  requests: Recorded[] = [];
  nextId = 100;
  /** Largest page the server hands out, whatever `limit` asks (Forgejo: MAX_RESPONSE_ITEMS). */
  maxLimit = 50;
  sendTotalCount = true;
  /** Answer this status to requests whose "METHOD path" matches. */
  fail?: { match: RegExp; status: number; message: string };

  async start(): Promise<void> {
    this.server = http.createServer((req, res) => {
      let body = "";
      req.on("data", (d: Buffer) => (body += d.toString()));
      req.on("end", () => this.handle(req, res, body));
    });
    await new Promise<void>((resolve) => this.server.listen(0, "127.0.0.1", resolve));
    this.url = `http://127.0.0.1:${(this.server.address() as AddressInfo).port}/api/v1`;
  }

  stop(): Promise<void> {
    return new Promise((resolve) => this.server.close(() => resolve()));
  }

  reset(): void {
    this.comments = [];
    this.requests = [];
    this.maxLimit = 50;
    this.sendTotalCount = true;
    this.fail = undefined;
  }

  add(issue: number, body: string, user = "someone"): StoredComment {
    const c = { id: this.nextId++, issue, body, user };
    this.comments.push(c);
    return c;
  }

  onIssue(issue: number): StoredComment[] {
    return this.comments.filter((c) => c.issue === issue);
  }

  private json(res: http.ServerResponse, status: number, data: unknown, headers: http.OutgoingHttpHeaders = {}) {
    res.writeHead(status, { "content-type": "application/json", ...headers });
    res.end(JSON.stringify(data));
  }

  private handle(req: http.IncomingMessage, res: http.ServerResponse, body: string) {
    const u = new URL(req.url ?? "/", "http://stub");
    this.requests.push({ method: req.method ?? "", url: req.url ?? "", authorization: req.headers.authorization, body });
    if (this.fail && this.fail.match.test(`${req.method} ${u.pathname}`)) {
      return this.json(res, this.fail.status, { message: this.fail.message });
    }
    if (req.headers.authorization !== `token ${TOKEN}`) return this.json(res, 401, { message: "token is required" });

    const list = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)\/issues\/(\d+)\/comments$/.exec(u.pathname);
    const edit = /^\/api\/v1\/repos\/([^/]+)\/([^/]+)\/issues\/comments\/(\d+)$/.exec(u.pathname);
    const repoOk = (m: RegExpExecArray) => m[1] === OWNER && m[2] === REPO;

    if (u.pathname === "/api/v1/user" && req.method === "GET") return this.json(res, 200, { id: -2, login: BOT });
    if (list && repoOk(list) && req.method === "GET") {
      const all = this.onIssue(Number(list[3]));
      const page = Math.max(1, Number(u.searchParams.get("page") ?? "1"));
      const limit = Math.min(this.maxLimit, Math.max(1, Number(u.searchParams.get("limit") ?? String(this.maxLimit))));
      const slice = all.slice((page - 1) * limit, page * limit);
      return this.json(
        res,
        200,
        slice.map((c) => ({ id: c.id, body: c.body, user: { login: c.user } })),
        this.sendTotalCount ? { "x-total-count": String(all.length) } : {},
      );
    }
    if (list && repoOk(list) && req.method === "POST") {
      const c = this.add(Number(list[3]), (JSON.parse(body) as { body: string }).body, BOT);
      return this.json(res, 201, { id: c.id, body: c.body });
    }
    if (edit && repoOk(edit) && req.method === "PATCH") {
      const c = this.comments.find((x) => x.id === Number(edit[3]));
      if (!c) return this.json(res, 404, { message: "comment not found" });
      c.body = (JSON.parse(body) as { body: string }).body;
      return this.json(res, 200, { id: c.id, body: c.body });
    }
    return this.json(res, 404, { message: "not found" });
  }
}

const stub = new ForgejoStub();
let tmp: string;

before(async () => {
  await stub.start();
  tmp = fs.mkdtempSync(path.join(os.tmpdir(), "preview-comment-"));
});
after(async () => {
  await stub.stop();
  fs.rmSync(tmp, { recursive: true, force: true });
});

function writeOutput(name: string, text: string): string {
  const file = path.join(tmp, name);
  fs.writeFileSync(file, text);
  return file;
}

interface RunOptions {
  stack: string;
  output: string;
  exitCode?: number;
  env?: Record<string, string>;
  args?: string[];
}

function run(o: RunOptions): Promise<Ran> {
  const file = writeOutput(`${o.stack}-${Date.now()}-${Math.random()}.txt`, o.output);
  const args = o.args ?? [
    "--stack",
    o.stack,
    "--output-file",
    file,
    "--exit-code",
    String(o.exitCode ?? 0),
    "--pr",
    String(PR),
    "--repo",
    `${OWNER}/${REPO}`,
    "--api-url",
    stub.url,
    "--commit",
    "0123456789abcdef0123",
  ];
  return runTs(SCRIPT, args, { env: { PATH: process.env.PATH ?? "", FORGEJO_TOKEN: TOKEN, ...o.env } });
}

const PREVIEW_OK = [
  "Previewing update (indri):",
  "     Type                                   Name            Plan",
  " +   pulumi:pulumi:Stack                    runner-secrets  create",
  " +   └─ runner-secrets:index:RunnerRegistryAuth  indri      create",
  "",
  "Outputs:",
  '    keyDigest: "sha256:abcd"',
  "    token    : [secret]",
  "",
  "Resources:",
  "    + 3 to create",
  "",
].join("\n");

describe("preview-comment against the Forgejo API stub", () => {
  beforeEach(() => stub.reset());
  afterEach(() => {
    // Every request the script made carried the job token the Forgejo way.
    for (const r of stub.requests) assert.equal(r.authorization, `token ${TOKEN}`, `${r.method} ${r.url}`);
  });

  it("creates one comment with marker, stack, status and the output", async () => {
    const unrelated = stub.add(PR, "LGTM, but see the diff");
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, /created comment \d+ for stack indri on eblume\/runner-secrets#7/);
    const comments = stub.onIssue(PR);
    assert.equal(comments.length, 2);
    const mine = comments.find((c) => c.id !== unrelated.id)!;
    assert.ok(mine.body.startsWith(marker("indri")));
    assert.match(mine.body, /stack `indri`: succeeded/);
    assert.match(mine.body, /<details><summary>Preview output<\/summary>/);
    assert.match(mine.body, /runner-secrets:index:RunnerRegistryAuth/);
    assert.match(mine.body, /- \+ 3 to create/);
    assert.match(mine.body, /commit `0123456789ab`/);
    assert.equal(stub.comments.find((c) => c.id === unrelated.id)!.body, "LGTM, but see the diff");
  });

  it("edits its comment on the second run instead of adding one, leaving others alone", async () => {
    const before1 = stub.add(PR, "first human comment");
    assert.equal((await run({ stack: "indri", output: PREVIEW_OK })).code, 0);
    const between = stub.add(PR, "second human comment");
    const second = await run({ stack: "indri", output: PREVIEW_OK.replace("+ 3 to create", "~ 1 to update"), exitCode: 1 });
    assert.equal(second.code, 0, second.stderr);
    assert.match(second.stdout, /updated comment/);
    const mine = stub.onIssue(PR).filter((c) => c.body.includes(marker("indri")));
    assert.equal(mine.length, 1);
    assert.match(mine[0].body, /failed \(exit 1\)/);
    assert.match(mine[0].body, /~ 1 to update/);
    assert.doesNotMatch(mine[0].body, /3 to create/);
    assert.equal(stub.requests.filter((r) => r.method === "POST").length, 1);
    assert.equal(stub.requests.filter((r) => r.method === "PATCH").length, 1);
    assert.equal(before1.body, "first human comment");
    assert.equal(between.body, "second human comment");
    assert.equal(stub.onIssue(PR).length, 3);
  });

  it("gives each stack its own comment", async () => {
    assert.equal((await run({ stack: "indri", output: PREVIEW_OK })).code, 0);
    assert.equal((await run({ stack: "ringtail", output: "Previewing update (ringtail):\n" })).code, 0);
    assert.equal((await run({ stack: "ringtail", output: "Previewing update (ringtail): again\n" })).code, 0);
    const comments = stub.onIssue(PR);
    assert.equal(comments.length, 2);
    assert.equal(comments.filter((c) => c.body.includes(marker("indri"))).length, 1);
    const ringtail = comments.filter((c) => c.body.includes(marker("ringtail")));
    assert.equal(ringtail.length, 1);
    assert.match(ringtail[0].body, /again/);
    // The indri marker is not a prefix match of another stack's: "indri" ≠ "indri-staging".
    assert.equal((await run({ stack: "indri-staging", output: "x\n" })).code, 0);
    assert.equal(stub.onIssue(PR).length, 3);
  });

  it("keeps redacted values out of every request, while Pulumi's own [secret] passes through", async () => {
    const secret = "zak_SuperSecretKey123456";
    const other = "op-service-account-token-xyz";
    const output = `${PREVIEW_OK}\nerror: command failed: echo ${secret}\nheader ${Buffer.from(secret).toString("base64")}\n${other}\n`;
    const r = await run({ stack: "ringtail", output, exitCode: 255, env: { RUNNER_SECRETS_REDACT: `${secret}\n${other}\n` } });
    assert.equal(r.code, 0, r.stderr);
    for (const req of stub.requests) {
      assert.ok(!req.body.includes(secret), `${req.method} ${req.url} carried the secret`);
      assert.ok(!req.body.includes(other));
      assert.ok(!req.body.includes(Buffer.from(secret).toString("base64")));
      assert.ok(!req.body.includes(TOKEN), "the job token itself reached a body");
    }
    const body = stub.onIssue(PR)[0].body;
    assert.match(body, /echo \[secret\]/);
    assert.match(body, /token {4}: \[secret\]/);
    assert.match(body, /failed \(exit 255\)/);
    assert.match(body, /<details open>/);
  });

  it("edits only a marked comment written by the token's own user; a copied marker is left alone", async () => {
    // Someone posts the marker first: editing theirs would fail (403) or spoof the preview.
    const decoy = stub.add(PR, `${marker("indri")}\nall green, nothing to see`, "mallory");
    const first = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(first.code, 0, first.stderr);
    assert.match(first.stdout, /created comment/);
    assert.match(first.stdout, /left alone 1 comment\(s\) carrying the marker but written by another user/);
    const again = await run({ stack: "indri", output: PREVIEW_OK.replace("+ 3 to create", "~ 1 to update") });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stdout, /updated comment/);
    assert.equal(decoy.body, `${marker("indri")}\nall green, nothing to see`);
    const ours = stub.onIssue(PR).filter((c) => c.user === BOT);
    assert.equal(ours.length, 1);
    assert.match(ours[0].body, /~ 1 to update/);
    for (const r of stub.requests.filter((q) => q.method === "PATCH")) assert.ok(!r.url.endsWith(`/${decoy.id}`), "PATCHed the decoy");
  });

  it("fails with exit 1, posting nothing, when it cannot learn the token's user", async () => {
    stub.fail = { match: /^GET \/api\/v1\/user$/, status: 500, message: "boom" };
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /GET .*\/api\/v1\/user returned HTTP 500: boom/);
    assert.equal(stub.onIssue(PR).length, 0);
  });

  it("redacts the zot key read in the job (RUNNER_SECRETS_REDACT_FILE), as is and in base64 at any offset", async () => {
    const key = "zak_0123456789abcdefRotated";
    const keyFile = writeOutput("zot-key", `${key}\n`);
    const secretData = (prefix: string) => Buffer.from(`${prefix}${key}'\n`).toString("base64");
    const output = `${PREVIEW_OK}\nkey ${key}\nenv ${secretData("ZOT_CI_API_KEY='")}\nx ${secretData("A='")}\ny ${secretData("AB='")}\n`;
    const r = await run({ stack: "indri", output, env: { RUNNER_SECRETS_REDACT_FILE: keyFile } });
    assert.equal(r.code, 0, r.stderr);
    const body = stub.onIssue(PR)[0].body;
    assert.ok(!body.includes(key));
    // Whatever is left of each base64 text must not decode to anything holding the key's middle.
    for (const m of body.matchAll(/[A-Za-z0-9+/=]{12,}/g)) {
      for (let cut = 0; cut < 4; cut++)
        assert.ok(!Buffer.from(m[0].slice(cut), "base64").toString("latin1").includes(key.slice(4, -4)), m[0]);
    }
    const missing = await run({ stack: "indri", output, env: { RUNNER_SECRETS_REDACT_FILE: path.join(tmp, "absent") } });
    assert.equal(missing.code, 1);
    assert.match(missing.stderr, /cannot read RUNNER_SECRETS_REDACT_FILE: ENOENT/);
  });

  it("finds its comment beyond the first page (server caps pages at 5)", async () => {
    stub.maxLimit = 5;
    for (let i = 0; i < 7; i++) stub.add(PR, `chatter ${i}`);
    const mine = stub.add(PR, `${marker("indri")}\nold preview`, BOT);
    for (let i = 0; i < 6; i++) stub.add(PR, `more chatter ${i}`);
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`updated comment ${mine.id}`));
    assert.equal(stub.onIssue(PR).length, 14);
    assert.match(mine.body, /3 to create/);
    const pages = stub.requests
      .filter((q) => q.method === "GET" && q.url.includes("/comments"))
      .map((q) => new URL(q.url, "http://x").searchParams.get("page"));
    assert.deepEqual(pages, ["1", "2", "3"]);
  });

  it("pages until an empty page when the server sends no total", async () => {
    stub.maxLimit = 5;
    stub.sendTotalCount = false;
    for (let i = 0; i < 10; i++) stub.add(PR, `chatter ${i}`);
    const mine = stub.add(PR, `${marker("indri")}\nold`, BOT);
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout, new RegExp(`updated comment ${mine.id}`));
    assert.equal(stub.requests.filter((q) => q.method === "GET" && q.url.includes("/comments")).length, 4);
  });

  it("truncates a huge output to the tail and stays under the size limit", async () => {
    const lines = Array.from({ length: 20000 }, (_, i) => `line ${i} ${"x".repeat(20)}`);
    const r = await run({ stack: "indri", output: `${lines.join("\n")}\nResources:\n    + 1 to create\n` });
    assert.equal(r.code, 0, r.stderr);
    const body = stub.onIssue(PR)[0].body;
    assert.ok(Buffer.byteLength(body) <= 60_000, `body is ${Buffer.byteLength(body)} bytes`);
    assert.match(body, /line 19999 x+/);
    assert.doesNotMatch(body, /line 0 x/);
    assert.match(body, /earlier lines omitted/);
    assert.match(body, /\+ 1 to create/);
  });

  it("fails with exit 1 and a clear message when the API refuses the post", async () => {
    stub.fail = { match: /^POST /, status: 403, message: "user does not have permission" };
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /POST http:\/\/127\.0\.0\.1:\d+\/api\/v1\/repos\/eblume\/runner-secrets\/issues\/7\/comments returned HTTP 403/);
    assert.match(r.stderr, /user does not have permission/);
    assert.match(r.stderr, /read-only token/);
    assert.ok(!r.stderr.includes(TOKEN));
  });

  it("fails with exit 1 when listing comments fails", async () => {
    stub.fail = { match: /^GET .*\/comments$/, status: 500, message: "internal error" };
    const r = await run({ stack: "indri", output: PREVIEW_OK });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /GET .*\/issues\/7\/comments\?page=1&limit=50 returned HTTP 500: internal error/);
    assert.equal(stub.onIssue(PR).length, 0);
  });

  it("fails with exit 1 when the token is refused", async () => {
    const r = await run({ stack: "indri", output: PREVIEW_OK, env: { FORGEJO_TOKEN: "wrong-token-abc" } });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /HTTP 401/);
    assert.ok(!r.stderr.includes("wrong-token-abc"));
    stub.requests = []; // those requests carried the wrong token on purpose
  });

  it("fails with exit 1 when the API cannot be reached", async () => {
    const port = await freePort();
    const r = await run({
      stack: "indri",
      output: PREVIEW_OK,
      args: [
        "--stack",
        "indri",
        "--output-file",
        writeOutput("x.txt", "x"),
        "--exit-code",
        "0",
        "--pr",
        "7",
        "--repo",
        `${OWNER}/${REPO}`,
        "--api-url",
        `http://127.0.0.1:${port}/api/v1`,
      ],
    });
    assert.equal(r.code, 1);
    assert.match(r.stderr, new RegExp(`GET http://127\\.0\\.0\\.1:${port}/api/v1/.* failed: ECONNREFUSED`));
  });

  it("takes API URL, repository and PR number from the Forgejo environment", async () => {
    const event = writeOutput("event.json", JSON.stringify({ pull_request: { number: PR } }));
    const r = await run({
      stack: "indri",
      output: PREVIEW_OK,
      args: ["--stack", "indri", "--output-file", writeOutput("y.txt", PREVIEW_OK), "--exit-code", "0"],
      env: {
        GITHUB_SERVER_URL: stub.url.replace(/\/api\/v1$/, ""),
        GITHUB_REPOSITORY: `${OWNER}/${REPO}`,
        GITHUB_EVENT_PATH: event,
      },
    });
    assert.equal(r.code, 0, r.stderr);
    assert.equal(stub.onIssue(PR).length, 1);
  });

  it("exits 2 on bad usage", async () => {
    const missing = await run({ stack: "indri", output: "", args: ["--stack", "indri"] });
    assert.equal(missing.code, 2);
    assert.match(missing.stderr, /missing --exit-code/);
    const unknown = await run({ stack: "indri", output: "", args: ["--stack", "indri", "--token", "x"] });
    assert.equal(unknown.code, 2);
    assert.match(unknown.stderr, /--token/);
    const badStack = await run({ stack: "indri", output: "", args: ["--stack", "a -->b", "--exit-code", "0"] });
    assert.equal(badStack.code, 2);
    assert.equal(stub.requests.length, 0);
  });
});

describe("comment body", () => {
  it("uses a fence longer than any backtick run in the output", () => {
    const body = buildBody({ stack: "indri", output: "a ```` b\n", exitCode: 0, redactValues: [] });
    assert.match(body, /`````text\na ```` b\n`````/);
  });

  it("strips terminal colour codes", () => {
    const body = buildBody({ stack: "indri", output: "\x1b[32m+ create\x1b[0m\n", exitCode: 0, redactValues: [] });
    assert.match(body, /\n\+ create\n/);
    assert.doesNotMatch(body, /\x1b/);
  });

  it("redacts before truncating, so a cut cannot leave half a secret", () => {
    const secret = "S3cretValueThatIsLong";
    const output = `${"pad\n".repeat(500)}${secret}\n`;
    const body = buildBody({ stack: "x", output, exitCode: 0, redactValues: [secret], maxBytes: 1500 });
    assert.ok(!body.includes(secret.slice(-10)));
  });

  it("ignores redaction values too short to mean anything", () => {
    assert.equal(redact("a b c", ["a", "", "b\r"]), "a b c");
    assert.equal(redact("xx abcd yy", ["abcd"]), "xx [secret] yy");
  });

  it("keeps the tail at a line boundary", () => {
    const { text, omittedLines } = keepTail("one\ntwo\nthree\nfour", 11);
    assert.equal(text, "three\nfour");
    assert.equal(omittedLines, 2);
  });

  it("reads Pulumi's Resources summary", () => {
    assert.deepEqual(resourceSummary(PREVIEW_OK), ["+ 3 to create"]);
    assert.deepEqual(resourceSummary("error: boom\n"), []);
  });
});
