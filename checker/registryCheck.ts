// Checks, before anything is written to a runner, that the registry key does what CI needs:
//   (a) it logs in             GET  /v2/                                → 200
//   (b) it may start a push    POST /v2/<probe>/blobs/uploads/          → 202, then DELETE the upload
//   (c) anonymous push is off  POST /v2/<probe>/blobs/uploads/ (no auth) → 401
//
// Requests go through Node's built-in fetch; an undici Agent (the library behind that fetch) adds
// the extra CA and keeps one connection for the three checks. The options are validated by the one
// schema the stack config and the CLI's flags also use (lib/registryOptions.ts).
//
// The key is a secret: no message built here contains it, nor the base64 form it takes inside a
// Basic Authorization header. Every error text passes through `scrub` before it leaves this module,
// including texts that come from Node or from the registry's response body.

import * as fs from "node:fs/promises";
import * as tls from "node:tls";
import { Agent } from "undici";
import { redact, redactionForms } from "../lib/redact";
import { parseRegistryOptions, type RegistryCheckOptions } from "../lib/registryOptions";

export type { RegistryCheckOptions };

/** Which part of the check failed. */
export type RegistryCheckStep = "options" | "login" | "push" | "cancel" | "anonymous";

export class RegistryCheckError extends Error {
  readonly step: RegistryCheckStep;
  /** HTTP status of the response that failed the step, when there was one. */
  readonly status?: number;

  constructor(step: RegistryCheckStep, message: string, status?: number) {
    super(message);
    this.name = "RegistryCheckError";
    this.step = step;
    this.status = status;
  }
}

interface Response {
  status: number;
  headers: Headers;
  /** First bytes of the body, for the registry's error codes in messages. */
  body: string;
}

/** Everything one run of the check shares: the target, the secret and the clock. */
interface Session {
  base: URL;
  user: string;
  key: string;
  timeoutSeconds: number;
  deadline: number;
  agent: Agent;
}

const BODY_LIMIT = 4096;

/**
 * Runs the three checks in order and resolves when all pass. Rejects with a RegistryCheckError that
 * names the failing check, the HTTP status and what to do about it. Never includes `key`.
 */
export async function checkRegistry(input: RegistryCheckOptions, key: string): Promise<void> {
  const started = Date.now();
  try {
    const opts = validate(input, key);
    const base = new URL(opts.url);
    // A registry may live under a path prefix; keep it and make it end in one slash.
    base.pathname = base.pathname.replace(/\/*$/, "/");
    const extraCa = opts.caFile === undefined ? undefined : await readCa(opts.caFile);
    // One connection, reused by the three checks where the server allows it.
    const agent = new Agent({ connections: 1, ...(extraCa === undefined ? {} : { connect: { ca: [...tls.rootCertificates, extraCa] } }) });
    const session: Session = {
      base,
      user: opts.user,
      key,
      timeoutSeconds: opts.timeoutSeconds,
      deadline: started + opts.timeoutSeconds * 1000,
      agent,
    };
    try {
      await checkLogin(session);
      await checkPush(session, opts.probeRepository);
      await checkAnonymousRefused(session, opts.probeRepository);
    } finally {
      await agent.destroy().catch(() => undefined);
    }
  } catch (err) {
    throw scrubError(err, input.user, key);
  }
}

function validate(input: RegistryCheckOptions, key: string): RegistryCheckOptions {
  const fail = (message: string): never => {
    throw new RegistryCheckError("options", `registry check: ${message}`);
  };
  const parsed = parseRegistryOptions(input);
  if (!parsed.ok) {
    const given = (name: string) => {
      const v = (input as unknown as Record<string, unknown>)[name];
      return typeof v === "string" || typeof v === "number" ? ` (got ${JSON.stringify(v)})` : "";
    };
    return fail(parsed.problems.map(([name, message]) => `${name} ${message}${given(name)}`).join("; "));
  }
  const opts = parsed.options;
  if (key === "") {
    fail(`the key for user ${opts.user} is empty: check the 1Password item and field`);
  }
  if (/[\r\n]/.test(key)) {
    fail(`the key for user ${opts.user} contains a line break: check the 1Password field holds only the key`);
  }
  return opts;
}

async function readCa(caFile: string): Promise<string> {
  let text: string;
  try {
    text = await fs.readFile(caFile, "utf8");
  } catch (err) {
    throw new RegistryCheckError("options", `registry check: cannot read caFile ${caFile}: ${describeError(err)}`);
  }
  if (!text.includes("-----BEGIN CERTIFICATE-----")) {
    throw new RegistryCheckError("options", `registry check: caFile ${caFile} holds no PEM certificate`);
  }
  return text;
}

async function checkLogin(s: Session): Promise<void> {
  const url = new URL("v2/", s.base);
  const res = await send(s, "login", "GET", url, true);
  if (res.status === 200) return;
  const where = `check 1 (login): GET ${url.href} returned HTTP ${res.status}${registryErrors(res)}`;
  switch (res.status) {
    case 401:
      throw new RegistryCheckError(
        "login",
        `${where}: the registry rejected the key for user ${s.user}. ` +
          `If the key expired or was revoked, generate a new API key in zot and update the 1Password item; ` +
          `otherwise check that the config points at the right 1Password item and field and at the right user.`,
        res.status,
      );
    case 403:
      throw new RegistryCheckError(
        "login",
        `${where}: user ${s.user} authenticated but may not use the registry API; check its groups and policies in zot.`,
        res.status,
      );
    case 404:
      throw new RegistryCheckError(
        "login",
        `${where}: no registry API at this URL; check registryCheck.url (the base URL, without /v2/).`,
        res.status,
      );
    default:
      throw new RegistryCheckError("login", `${where}: expected 200.${redirectHint(res)}`, res.status);
  }
}

async function checkPush(s: Session, repository: string): Promise<void> {
  const url = uploadsUrl(s, repository);
  const res = await send(s, "push", "POST", url, true);
  if (res.status === 202) {
    await cancelUpload(s, "push", url, res, true);
    return;
  }
  const where = `check 2 (push): POST ${url.href} as ${s.user} returned HTTP ${res.status}${registryErrors(res)}`;
  switch (res.status) {
    case 401:
      throw new RegistryCheckError(
        "push",
        `${where}: the key logs in but the registry refused it for a push; check that the key is a zot API key for ${s.user} and has not been revoked.`,
        res.status,
      );
    case 403:
      throw new RegistryCheckError(
        "push",
        `${where}: user ${s.user} lacks the create permission on ${repository}; ` +
          `give its group (artifact-workloads) "create" on this repository in zot's access control, or choose another registryCheck.probeRepository.`,
        res.status,
      );
    case 404:
      throw new RegistryCheckError(
        "push",
        `${where}: the registry does not accept uploads for ${repository}; check registryCheck.probeRepository.`,
        res.status,
      );
    default:
      throw new RegistryCheckError("push", `${where}: expected 202 (upload started).${redirectHint(res)}`, res.status);
  }
}

async function checkAnonymousRefused(s: Session, repository: string): Promise<void> {
  const url = uploadsUrl(s, repository);
  const res = await send(s, "anonymous", "POST", url, false);
  if (res.status === 401) return;
  const where = `check 3 (anonymous push refused): POST ${url.href} without credentials returned HTTP ${res.status}`;
  if (res.status >= 200 && res.status < 300) {
    // Leave nothing behind even though the check fails; the failure below is the news.
    let cleanup = "";
    if (res.status === 202) {
      try {
        await cancelUpload(s, "anonymous", url, res, false);
      } catch (err) {
        cleanup = ` (cancelling the anonymous upload also failed: ${describeError(err)})`;
      }
    }
    throw new RegistryCheckError(
      "anonymous",
      `${where}: the registry accepts anonymous pushes. Require authentication for push in zot's access control ` +
        `(anonymous policy read-only) before handing out the key.${cleanup}`,
      res.status,
    );
  }
  throw new RegistryCheckError(
    "anonymous",
    `${where}${registryErrors(res)}: expected 401 (authentication required).${redirectHint(res)}`,
    res.status,
  );
}

/** Deletes the upload a 202 opened, so the probe leaves no open upload on the registry. */
async function cancelUpload(s: Session, step: RegistryCheckStep, postUrl: URL, started: Response, authenticated: boolean): Promise<void> {
  const errStep: RegistryCheckStep = step === "push" ? "cancel" : step;
  const location = started.headers.get("location") ?? undefined;
  if (location === undefined || location === "") {
    throw new RegistryCheckError(
      errStep,
      `check 2 (push): POST ${postUrl.href} returned 202 without a Location header; cannot cancel the upload.`,
      started.status,
    );
  }
  let uploadUrl: URL;
  try {
    // zot answers with a path, distribution with an absolute URL; both resolve against the base.
    uploadUrl = new URL(location, s.base);
  } catch {
    throw new RegistryCheckError(errStep, `check 2 (push): the upload's Location ${JSON.stringify(location)} is not a URL.`);
  }
  if (uploadUrl.origin !== s.base.origin) {
    // Sending the key to another origin because a header said so is not something a check should do.
    throw new RegistryCheckError(
      errStep,
      `check 2 (push): the registry pointed the upload at ${uploadUrl.origin}, not ${s.base.origin}; ` +
        `not sending credentials there. Check the registry's external URL setting (and registryCheck.url).`,
    );
  }
  const res = await send(s, errStep, "DELETE", uploadUrl, authenticated);
  if (res.status === 204 || res.status === 202 || res.status === 200) return;
  throw new RegistryCheckError(
    errStep,
    `check 2 (push): cancelling the probe upload with DELETE ${stripQuery(uploadUrl)} returned HTTP ${res.status}` +
      `${registryErrors(res)}; an open upload may be left in ${postUrl.pathname} until the registry purges it.`,
    res.status,
  );
}

function uploadsUrl(s: Session, repository: string): URL {
  return new URL(`v2/${repository}/blobs/uploads/`, s.base);
}

/** One request, bounded by what is left of the overall time limit. Redirects are not followed. */
async function send(s: Session, step: RegistryCheckStep, method: string, url: URL, authenticated: boolean): Promise<Response> {
  const shown = `${method} ${stripQuery(url)}`;
  const remaining = s.deadline - Date.now();
  if (remaining <= 0) {
    throw new RegistryCheckError(step, `registry check: ${shown} not sent: timed out after ${s.timeoutSeconds}s`);
  }
  const headers: Record<string, string> = { "user-agent": "runner-secrets-registry-check", accept: "application/json" };
  if (authenticated) {
    headers.authorization = `Basic ${Buffer.from(`${s.user}:${s.key}`, "utf8").toString("base64")}`;
  }
  const signal = AbortSignal.timeout(remaining);
  try {
    // fetch sends `content-length: 0` for a POST without a body, which is how an upload starts.
    const res = await fetch(url, {
      method,
      headers,
      redirect: "manual",
      signal,
      dispatcher: s.agent,
    } as RequestInit);
    return { status: res.status, headers: res.headers, body: await readHead(res) };
  } catch (err) {
    if (signal.aborted) {
      throw new RegistryCheckError(
        step,
        `registry check: ${shown} timed out after ${s.timeoutSeconds}s (limit for the whole check); ` +
          `is ${url.host} reachable from here and the registry answering?`,
      );
    }
    throw networkError(step, shown, url, err);
  }
}

/** The first BODY_LIMIT bytes of the body (error bodies are small; nothing else is needed). */
async function readHead(res: globalThis.Response): Promise<string> {
  if (res.body === null) return "";
  const reader = res.body.getReader();
  const chunks: Uint8Array[] = [];
  let size = 0;
  for (;;) {
    const { done, value } = await reader.read();
    if (done) break;
    chunks.push(value);
    size += value.length;
    if (size >= BODY_LIMIT) {
      await reader.cancel().catch(() => undefined);
      break;
    }
  }
  return Buffer.concat(chunks).subarray(0, BODY_LIMIT).toString("utf8");
}

/** `err` and the errors under it, outermost first: fetch buries the real one in `cause` (an
 * AggregateError when several addresses were tried). */
function causes(err: unknown): unknown[] {
  const chain: unknown[] = [];
  for (let e = err; e !== undefined && e !== null && chain.length < 5; ) {
    chain.push(e);
    e = e instanceof AggregateError ? e.errors[0] : (e as { cause?: unknown }).cause;
  }
  return chain;
}

/** The first error code in the chain (ECONNREFUSED, a TLS code, undici's own). */
function errorCode(err: unknown): string {
  const code = causes(err)
    .map((e) => (e as { code?: unknown }).code)
    .find((c) => typeof c === "string" && c !== "");
  return typeof code === "string" ? code : "";
}

function networkError(step: RegistryCheckStep, shown: string, url: URL, err: unknown): RegistryCheckError {
  const code = errorCode(err);
  let hint: string;
  switch (code) {
    case "ECONNREFUSED":
      hint = `connection refused by ${url.host}: is the registry running, and is the port in registryCheck.url right?`;
      break;
    case "ENOTFOUND":
    case "EAI_AGAIN":
      hint = `DNS lookup of ${url.hostname} failed (${code}): check registryCheck.url and this machine's DNS / tailnet.`;
      break;
    case "ECONNRESET":
    case "EPIPE":
    case "UND_ERR_SOCKET":
      hint = `the connection to ${url.host} was closed by the other side (${code}): is this a registry, and is it https?`;
      break;
    case "EHOSTUNREACH":
    case "ENETUNREACH":
      hint = `${url.host} is unreachable (${code}): check the network path to the registry.`;
      break;
    case "UNABLE_TO_VERIFY_LEAF_SIGNATURE":
    case "UNABLE_TO_GET_ISSUER_CERT_LOCALLY":
    case "SELF_SIGNED_CERT_IN_CHAIN":
    case "DEPTH_ZERO_SELF_SIGNED_CERT":
      hint = `TLS: the certificate of ${url.host} is not trusted (${code}): set registryCheck.caFile to the PEM of the CA that signed it.`;
      break;
    case "ERR_TLS_CERT_ALTNAME_INVALID":
      hint = `TLS: the certificate of ${url.host} is not valid for ${url.hostname}: use the host name the certificate names.`;
      break;
    case "CERT_HAS_EXPIRED":
    case "CERT_NOT_YET_VALID":
      hint = `TLS: the certificate of ${url.host} is outside its validity period (${code}).`;
      break;
    case "UND_ERR_CONNECT_TIMEOUT":
      hint = `connecting to ${url.host} timed out: is the registry reachable from here?`;
      break;
    default:
      // The innermost message says more than fetch's own "fetch failed".
      hint = describeError(causes(err).at(-1));
  }
  return new RegistryCheckError(step, `registry check: ${shown} failed: ${hint}`);
}

/** `OCI error codes: UNAUTHORIZED (authentication required)` from a distribution-style error body. */
function registryErrors(res: Response): string {
  try {
    const parsed: unknown = JSON.parse(res.body);
    const errors = (parsed as { errors?: unknown }).errors;
    if (!Array.isArray(errors) || errors.length === 0) return "";
    const parts = errors.slice(0, 3).map((e: unknown) => {
      const { code, message } = (e ?? {}) as { code?: unknown; message?: unknown };
      const c = typeof code === "string" ? code : "?";
      return typeof message === "string" && message !== "" ? `${c} (${truncate(message, 120)})` : c;
    });
    return ` [registry says: ${parts.join(", ")}]`;
  } catch {
    return "";
  }
}

function redirectHint(res: Response): string {
  const location = res.headers.get("location") ?? undefined;
  if (res.status >= 300 && res.status < 400 && location !== undefined) {
    return ` The registry redirects to ${location}; set registryCheck.url to the registry's own URL.`;
  }
  return "";
}

/** Upload URLs carry opaque state in the query; it is noise in a message. */
function stripQuery(url: URL): string {
  return `${url.origin}${url.pathname}`;
}

function truncate(text: string, max: number): string {
  return text.length <= max ? text : `${text.slice(0, max)}…`;
}

function describeError(err: unknown): string {
  if (err instanceof Error) {
    const code = (err as NodeJS.ErrnoException).code;
    return code !== undefined && !err.message.includes(code) ? `${code}: ${err.message}` : err.message;
  }
  return String(err);
}

/**
 * Every form in which the key could show up in a text (lib/redact.ts): itself and the base64 of
 * `user:key` (what an echoed Authorization header would contain), each also base64 at any offset
 * and URL-encoded.
 */
export function secretForms(user: string, key: string): string[] {
  return key === "" ? [] : redactionForms([key, `${user}:${key}`]);
}

/** Replaces every form of the key in `text` with `[secret]`. */
export function scrub(text: string, user: string, key: string): string {
  return key === "" ? text : redact(text, [key, `${user}:${key}`]);
}

function scrubError(err: unknown, user: string, key: string): RegistryCheckError {
  if (err instanceof RegistryCheckError) {
    const clean = new RegistryCheckError(err.step, scrub(err.message, user, key), err.status);
    return clean;
  }
  return new RegistryCheckError("login", scrub(`registry check failed unexpectedly: ${describeError(err)}`, user, key));
}
