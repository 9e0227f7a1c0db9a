// Posts the `pulumi preview` of one stack as a comment on a Forgejo pull request, and on the next
// push edits that same comment instead of adding another. One comment per stack, found again by a
// hidden marker (`<!-- runner-secrets-preview:<stack> -->`) and its author: the token's own user.
//
//   node --import tsx ci/previewComment.ts --stack indri --output-file preview.txt \
//     --exit-code 0 [--pr 12] [--repo owner/name] [--api-url https://forge/api/v1] \
//     [--commit SHA] [--run-url URL]
//
// Environment:
//   FORGEJO_TOKEN (or GITHUB_TOKEN)  the job token; sent as `Authorization: token …`, never printed
//   GITHUB_API_URL / GITHUB_SERVER_URL, GITHUB_REPOSITORY, GITHUB_EVENT_PATH  defaults for the flags
//   RUNNER_SECRETS_REDACT            newline-separated values replaced by `[secret]` in the body
//   RUNNER_SECRETS_REDACT_FILE       a file of more such values (the zot key, read in the job)
//
// Exit status: 0 comment created or updated, 1 API or input failure, 2 bad usage. The preview's own
// failure is reported in the comment; the workflow fails the job afterwards.

import * as fs from "node:fs";
import { parseArgs } from "node:util";

export const MARKER_PREFIX = "runner-secrets-preview";
/** Forgejo stores comments as LONGTEXT but GitHub-style clients and the UI cope badly past 64 KiB. */
export const MAX_BODY_BYTES = 60_000;
const REDACTED = "[secret]";
const PAGE_LIMIT = 50;
const MAX_PAGES = 200;
const REQUEST_TIMEOUT_MS = 30_000;

export function marker(stack: string): string {
  return `<!-- ${MARKER_PREFIX}:${stack} -->`;
}

// ---------------------------------------------------------------- redaction

/**
 * The forms of each value to take out: the value, and its base64 when it is long enough that the
 * base64 cannot match by chance, at each of the three alignments it can have inside a longer
 * encoded text (a Kubernetes Secret's `zot-ci.env` is `ZOT_CI_API_KEY='<key>'` in base64). Values
 * shorter than 4 characters are ignored: replacing them would shred the output without protecting
 * anything a 3-character secret could be.
 */
export function redactionForms(values: string[]): string[] {
  const forms = new Set<string>();
  for (const raw of values) {
    const v = raw.replace(/\r$/, "");
    if (v.length < 4) continue;
    forms.add(v);
    if (v.length >= 8) {
      const bytes = Buffer.from(v, "utf8");
      for (let offset = 0; offset < 3; offset++) {
        const b64 = Buffer.concat([Buffer.alloc(offset), bytes]).toString("base64");
        // Drop the characters that also encode the bytes before the value, and the last group,
        // which depends on what follows it.
        const lead = offset === 0 ? 0 : offset + 1;
        const whole = Math.floor((offset + bytes.length) / 3) * 4;
        const core = b64.slice(lead, whole);
        if (core.length >= 8) forms.add(core);
        if (offset === 0) forms.add(b64).add(b64.replace(/=+$/, ""));
      }
    }
  }
  // Longest first, so a value containing another is replaced whole.
  return [...forms].sort((a, b) => b.length - a.length);
}

export function redact(text: string, values: string[]): string {
  let out = text;
  for (const form of redactionForms(values)) out = out.split(form).join(REDACTED);
  return out;
}

// ---------------------------------------------------------------- body

export interface BodyInput {
  stack: string;
  output: string;
  exitCode: number;
  commit?: string;
  runUrl?: string;
  redactValues: string[];
  maxBytes?: number;
}

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** Pulumi's closing `Resources:` block (`+ 1 to create`, `2 unchanged`), if the output has one. */
export function resourceSummary(output: string): string[] {
  const lines = output.split("\n");
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^Resources:\s*$/.test(lines[i].trim())) {
      start = i;
      break;
    }
  }
  if (start < 0) return [];
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === "") break;
    if (!/^\s/.test(line)) break;
    out.push(line.trim());
  }
  return out;
}

/** The tail of `text` that fits `maxBytes` (UTF-8), cut at a line start. */
export function keepTail(text: string, maxBytes: number): { text: string; omittedLines: number } {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return { text, omittedLines: 0 };
  const lines = text.split("\n");
  let bytes = 0;
  let first = lines.length;
  while (first > 0) {
    const next = Buffer.byteLength(lines[first - 1], "utf8") + 1;
    if (bytes + next > maxBytes) break;
    bytes += next;
    first--;
  }
  if (first === lines.length) {
    // A single last line longer than the budget: keep its end.
    const last = Buffer.from(lines[lines.length - 1], "utf8");
    const tail = last.subarray(last.length - maxBytes).toString("utf8").replace(/^\uFFFD+/, "");
    return { text: tail, omittedLines: lines.length - 1 };
  }
  return { text: lines.slice(first).join("\n"), omittedLines: first };
}

function fenceFor(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  return "`".repeat(Math.max(3, longest + 1));
}

export function buildBody(input: BodyInput): string {
  const maxBytes = input.maxBytes ?? MAX_BODY_BYTES;
  // Redact the whole output before cutting it, so a cut cannot leave half a secret that no longer
  // matches; redact the finished body again for the parts that did not come from the output.
  const cleaned = redact(input.output.replace(ANSI, "").replace(/\r\n?/g, "\n"), input.redactValues).replace(
    /\n+$/,
    "",
  );
  const ok = input.exitCode === 0;
  const head: string[] = [
    marker(input.stack),
    `### \`pulumi preview\` for stack \`${input.stack}\`: ${ok ? "succeeded" : `failed (exit ${input.exitCode})`}`,
    "",
  ];
  const facts: string[] = [];
  if (input.commit) facts.push(`commit \`${input.commit.slice(0, 12)}\``);
  if (input.runUrl) facts.push(`[workflow run](${input.runUrl})`);
  facts.push(`updated ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`);
  head.push(facts.join(" · "), "");
  const summary = resourceSummary(cleaned);
  if (summary.length > 0) head.push(...summary.map((l) => `- ${l}`), "");
  if (!ok) head.push("The job fails after this comment; the output below shows why.", "");

  const headText = head.join("\n");
  // Room for the wrapper below, the fence lines and the omission note.
  const overhead = Buffer.byteLength(headText, "utf8") + 400;
  const { text: shown, omittedLines } = keepTail(cleaned, Math.max(1000, maxBytes - overhead));
  const fence = fenceFor(shown);
  const note = omittedLines > 0 ? ` (last part; ${omittedLines} earlier lines omitted)` : "";
  const body = [
    headText,
    `<details${ok ? "" : " open"}><summary>Preview output${note}</summary>`,
    "",
    `${fence}text`,
    shown === "" ? "(no output)" : shown,
    fence,
    "",
    "</details>",
    "",
  ].join("\n");
  return redact(body, input.redactValues);
}

// ---------------------------------------------------------------- Forgejo API

export class ApiError extends Error {}

export interface Comment {
  id: number;
  body: string;
  /** Login of the comment's author. */
  author: string;
}

export interface ForgejoTarget {
  apiUrl: string;
  owner: string;
  repo: string;
  pr: number;
  token: string;
}

async function call(t: ForgejoTarget, method: string, url: string, body?: unknown): Promise<Response> {
  let res: Response;
  try {
    res = await fetch(url, {
      method,
      headers: {
        authorization: `token ${t.token}`,
        accept: "application/json",
        ...(body === undefined ? {} : { "content-type": "application/json" }),
      },
      body: body === undefined ? undefined : JSON.stringify(body),
      signal: AbortSignal.timeout(REQUEST_TIMEOUT_MS),
      redirect: "error",
    });
  } catch (err) {
    const cause = (err as { cause?: { code?: string; message?: string } }).cause;
    const why = cause?.code ?? cause?.message ?? (err as Error).message;
    throw new ApiError(`${method} ${url} failed: ${why}`);
  }
  if (!res.ok) {
    let detail = "";
    try {
      const text = (await res.text()).slice(0, 300);
      const parsed = JSON.parse(text) as { message?: unknown };
      detail = typeof parsed.message === "string" ? `: ${parsed.message}` : `: ${text}`;
    } catch {
      /* no readable body */
    }
    const hint =
      res.status === 401
        ? " (the token was refused: is FORGEJO_TOKEN the job token?)"
        : res.status === 403
          ? " (the token may not write to this pull request: pull requests from forks get a read-only token)"
          : res.status === 404
            ? " (check --repo, --pr and --api-url, which must end in /api/v1)"
            : "";
    throw new ApiError(`${method} ${url} returned HTTP ${res.status}${detail.replace(/\s+/g, " ")}${hint}`);
  }
  return res;
}

function repoPath(t: ForgejoTarget): string {
  return `${t.apiUrl}/repos/${encodeURIComponent(t.owner)}/${encodeURIComponent(t.repo)}`;
}

/**
 * Every comment on the pull request. Pages by `page`/`limit`; stops at an empty page, at the
 * X-Total-Count the server announces, or when a page brings nothing new (a server that ignores
 * paging returns everything on every page).
 */
export async function listComments(t: ForgejoTarget): Promise<Comment[]> {
  const seen = new Map<number, Comment>();
  for (let page = 1; page <= MAX_PAGES; page++) {
    const url = `${repoPath(t)}/issues/${t.pr}/comments?page=${page}&limit=${PAGE_LIMIT}`;
    const res = await call(t, "GET", url);
    const data: unknown = await res.json();
    if (!Array.isArray(data)) throw new ApiError(`GET ${url} did not return a list of comments`);
    let fresh = 0;
    for (const c of data as { id?: unknown; body?: unknown; user?: { login?: unknown } }[]) {
      if (typeof c.id !== "number") continue;
      if (!seen.has(c.id)) fresh++;
      const author = typeof c.user?.login === "string" ? c.user.login : "";
      seen.set(c.id, { id: c.id, body: typeof c.body === "string" ? c.body : "", author });
    }
    const total = Number(res.headers.get("x-total-count"));
    if (data.length === 0 || fresh === 0) break;
    if (Number.isFinite(total) && total > 0 && seen.size >= total) break;
  }
  return [...seen.values()];
}

/** The login of the token's own user: only its comments are ever edited. */
export async function tokenUser(t: ForgejoTarget): Promise<string> {
  const url = `${t.apiUrl}/user`;
  const data = (await (await call(t, "GET", url)).json()) as { login?: unknown };
  if (typeof data.login !== "string" || data.login === "") throw new ApiError(`GET ${url} did not say which user the token belongs to`);
  return data.login;
}

export interface UpsertResult {
  action: "created" | "updated";
  id: number;
  /** Comments that carry the marker but were written by someone else: left alone. */
  foreign: number;
}

/**
 * Edits the oldest comment that carries the stack's marker and was written by the token's own
 * user, or adds one. The marker alone proves nothing: anyone can post it, and a PATCH of their
 * comment would fail (403) or edit a comment a reader takes for the preview.
 */
export async function upsertComment(t: ForgejoTarget, stack: string, body: string): Promise<UpsertResult> {
  const mark = marker(stack);
  const me = await tokenUser(t);
  const marked = (await listComments(t)).filter((c) => c.body.includes(mark));
  const mine = marked.filter((c) => c.author === me).sort((a, b) => a.id - b.id);
  const foreign = marked.length - mine.length;
  if (mine.length > 0) {
    const id = mine[0].id;
    await call(t, "PATCH", `${repoPath(t)}/issues/comments/${id}`, { body });
    return { action: "updated", id, foreign };
  }
  const res = await call(t, "POST", `${repoPath(t)}/issues/${t.pr}/comments`, { body });
  const created = (await res.json()) as { id?: unknown };
  return { action: "created", id: typeof created.id === "number" ? created.id : -1, foreign };
}

// ---------------------------------------------------------------- command line

class UsageError extends Error {}

const USAGE =
  "usage: preview-comment --stack NAME --output-file FILE --exit-code N [--pr N] [--repo OWNER/NAME] " +
  "[--api-url URL] [--commit SHA] [--run-url URL]";

export interface Invocation {
  target: ForgejoTarget;
  body: BodyInput;
}

export function parseInvocation(argv: string[], env: NodeJS.ProcessEnv): Invocation {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        stack: { type: "string" },
        "output-file": { type: "string" },
        "exit-code": { type: "string" },
        pr: { type: "string" },
        repo: { type: "string" },
        "api-url": { type: "string" },
        commit: { type: "string" },
        "run-url": { type: "string" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const str = (name: string): string | undefined => {
    const v = values[name];
    return typeof v === "string" && v !== "" ? v : undefined;
  };
  const need = (name: string, v: string | undefined, from = ""): string => {
    if (v === undefined) throw new UsageError(`missing --${name}${from}`);
    return v;
  };

  const stack = need("stack", str("stack"));
  if (!/^[A-Za-z0-9._-]+$/.test(stack)) throw new UsageError(`--stack ${JSON.stringify(stack)}: letters, digits, . _ - only`);
  const exitText = need("exit-code", str("exit-code"));
  if (!/^\d+$/.test(exitText)) throw new UsageError(`--exit-code must be a non-negative integer, got ${exitText}`);
  const outputFile = need("output-file", str("output-file"));

  const serverUrl = env.GITHUB_SERVER_URL?.replace(/\/+$/, "");
  const apiUrl = need(
    "api-url",
    str("api-url") ?? (env.GITHUB_API_URL || (serverUrl ? `${serverUrl}/api/v1` : undefined)),
    " (or GITHUB_API_URL / GITHUB_SERVER_URL)",
  ).replace(/\/+$/, "");
  if (!/^https?:\/\//.test(apiUrl)) throw new UsageError(`--api-url must be an http(s) URL, got ${apiUrl}`);

  const repoFull = need("repo", str("repo") ?? env.GITHUB_REPOSITORY, " (or GITHUB_REPOSITORY)");
  const m = /^([^/\s]+)\/([^/\s]+)$/.exec(repoFull);
  if (!m) throw new UsageError(`--repo must be OWNER/NAME, got ${repoFull}`);

  const prText = need("pr", str("pr") ?? prFromEvent(env.GITHUB_EVENT_PATH), " (or a pull_request event in GITHUB_EVENT_PATH)");
  if (!/^[1-9]\d*$/.test(prText)) throw new UsageError(`--pr must be a pull request number, got ${prText}`);

  const token = env.FORGEJO_TOKEN || env.GITHUB_TOKEN;
  if (!token) throw new UsageError("missing token: set FORGEJO_TOKEN (or GITHUB_TOKEN) to the job token");

  let output: string;
  try {
    output = fs.readFileSync(outputFile, "utf8");
  } catch (err) {
    // The preview may have died before writing anything; say so in the comment rather than not post.
    const code = (err as NodeJS.ErrnoException).code;
    if (code !== "ENOENT") throw new ApiError(`cannot read --output-file ${outputFile}: ${(err as Error).message}`);
    output = `(the preview output file ${outputFile} does not exist)`;
  }

  const redactValues = (env.RUNNER_SECRETS_REDACT ?? "").split("\n").filter((v) => v !== "");
  // A file for values the workflow must not put in its own environment (the zot key, read in the job).
  if (env.RUNNER_SECRETS_REDACT_FILE) {
    try {
      redactValues.push(...fs.readFileSync(env.RUNNER_SECRETS_REDACT_FILE, "utf8").split("\n").filter((v) => v !== ""));
    } catch (err) {
      throw new ApiError(`cannot read RUNNER_SECRETS_REDACT_FILE: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
    }
  }
  return {
    target: { apiUrl, owner: m[1], repo: m[2], pr: Number(prText), token },
    body: {
      stack,
      output,
      exitCode: Number(exitText),
      commit: str("commit"),
      runUrl: str("run-url"),
      // The token is a secret too; keep it out of the body whatever the output says.
      redactValues: [...redactValues, token],
    },
  };
}

function prFromEvent(eventPath: string | undefined): string | undefined {
  if (!eventPath) return undefined;
  try {
    const event = JSON.parse(fs.readFileSync(eventPath, "utf8")) as {
      pull_request?: { number?: unknown };
      number?: unknown;
    };
    const n = event.pull_request?.number ?? event.number;
    return typeof n === "number" ? String(n) : undefined;
  } catch {
    return undefined;
  }
}

export async function main(argv: string[], env: NodeJS.ProcessEnv): Promise<number> {
  let inv: Invocation;
  try {
    inv = parseInvocation(argv, env);
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`preview-comment: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    process.stderr.write(`preview-comment: ${(err as Error).message}\n`);
    return 1;
  }
  const secrets = inv.body.redactValues;
  try {
    const body = buildBody(inv.body);
    const r = await upsertComment(inv.target, inv.body.stack, body);
    process.stdout.write(
      `preview-comment: ${r.action} comment ${r.id} for stack ${inv.body.stack} on ` +
        `${inv.target.owner}/${inv.target.repo}#${inv.target.pr}\n`,
    );
    if (r.foreign > 0) {
      process.stdout.write(`preview-comment: left alone ${r.foreign} comment(s) carrying the marker but written by another user\n`);
    }
    return 0;
  } catch (err) {
    const message = err instanceof ApiError ? err.message : `unexpected error: ${(err as Error).message}`;
    process.stderr.write(`preview-comment: ${redact(message, secrets)}\n`);
    return 1;
  }
}

if (require.main === module) {
  main(process.argv.slice(2), process.env).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.stderr.write("preview-comment: internal error\n");
      process.exitCode = 1;
    },
  );
}
