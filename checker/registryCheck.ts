// Checks, before anything is written to a runner, that the registry key does what CI needs:
//   (a) it logs in             GET  /v2/                                → 200
//   (b) it may start a push    POST /v2/<probe>/blobs/uploads/          → 202, then DELETE the upload
//   (c) anonymous push is off  POST /v2/<probe>/blobs/uploads/ (no auth) → 401
//
// Only Node built-ins are used so the check runs the same from the Pulumi program, from the CLI
// (checker/cli.ts) and from tests, without extra dependencies.
//
// The key is a secret: no message built here contains it, nor the base64 form it takes inside a
// Basic Authorization header. Every error text passes through `scrub` before it leaves this module,
// including texts that come from Node or from the registry's response body.

import * as fs from "node:fs/promises";
import * as http from "node:http";
import * as https from "node:https";
import * as tls from "node:tls";
import { redact, redactionForms } from "../lib/redact";

export interface RegistryCheckOptions {
  /** Base URL of the registry, e.g. `https://registry.ops.eblu.me` (no `/v2/`). */
  url: string;
  /** User the key belongs to (for zot: the key's creator), e.g. `zot-ci`. */
  user: string;
  /** Repository the push probe starts (and cancels) an upload in, e.g. `runner-secrets/probe`. */
  probeRepository: string;
  /** Limit for the whole check; each request gets what is left of it. */
  timeoutSeconds: number;
  /** PEM file with extra CA certificates, trusted in addition to Node's default roots. */
  caFile?: string;
}

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

/** Distribution's repository name grammar (path components separated by `/`). */
const REPOSITORY_NAME = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

interface Response {
  status: number;
  headers: http.IncomingHttpHeaders;
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
  agent: http.Agent;
}

const BODY_LIMIT = 4096;

/**
 * Runs the three checks in order and resolves when all pass. Rejects with a RegistryCheckError that
 * names the failing check, the HTTP status and what to do about it. Never includes `key`.
 */
export async function checkRegistry(opts: RegistryCheckOptions, key: string): Promise<void> {
  const started = Date.now();
  try {
    const base = validate(opts, key);
    const extraCa = opts.caFile === undefined ? undefined : await readCa(opts.caFile);
    const agent = makeAgent(base, extraCa);
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
      agent.destroy();
    }
  } catch (err) {
    throw scrubError(err, opts.user, key);
  }
}

function validate(opts: RegistryCheckOptions, key: string): URL {
  const fail = (message: string): never => {
    throw new RegistryCheckError("options", `registry check: ${message}`);
  };
  let base: URL;
  try {
    base = new URL(opts.url);
  } catch {
    return fail(`url ${JSON.stringify(opts.url)} is not a URL (expected e.g. https://registry.example.org)`);
  }
  if (base.protocol !== "https:" && base.protocol !== "http:") {
    fail(`url ${opts.url} must start with https:// (or http://)`);
  }
  if (base.username !== "" || base.password !== "") {
    fail(`url must not carry credentials; the user is a separate option`);
  }
  if (base.search !== "" || base.hash !== "") {
    fail(`url ${base.origin}${base.pathname} must not have a query or fragment`);
  }
  // A registry may live under a path prefix; keep it and make it end in one slash.
  base.pathname = base.pathname.replace(/\/*$/, "/");
  if (base.pathname.endsWith("/v2/")) {
    fail(`url should be the registry's base (without /v2/), e.g. ${base.origin}`);
  }
  if (opts.user === "" || opts.user.includes(":")) {
    fail(`user ${JSON.stringify(opts.user)} must be non-empty and must not contain ":"`);
  }
  if (!REPOSITORY_NAME.test(opts.probeRepository)) {
    fail(
      `probeRepository ${JSON.stringify(opts.probeRepository)} is not a valid repository name ` +
        `(lower-case path components such as runner-secrets/probe)`,
    );
  }
  if (!Number.isFinite(opts.timeoutSeconds) || opts.timeoutSeconds <= 0) {
    fail(`timeoutSeconds must be a positive number, got ${opts.timeoutSeconds}`);
  }
  if (key === "") {
    fail(`the key for user ${opts.user} is empty: check the 1Password item and field`);
  }
  if (/[\r\n]/.test(key)) {
    fail(`the key for user ${opts.user} contains a line break: check the 1Password field holds only the key`);
  }
  return base;
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

function makeAgent(base: URL, extraCa: string | undefined): http.Agent {
  // keepAlive: the three checks reuse one TLS connection where the server allows it.
  if (base.protocol === "http:") {
    return new http.Agent({ keepAlive: true, maxSockets: 1 });
  }
  return new https.Agent({
    keepAlive: true,
    maxSockets: 1,
    ...(extraCa === undefined ? {} : { ca: [...tls.rootCertificates, extraCa] }),
  });
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
  const location = headerValue(started.headers.location);
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

/** One request, bounded by what is left of the overall time limit. */
function send(s: Session, step: RegistryCheckStep, method: string, url: URL, authenticated: boolean): Promise<Response> {
  const shown = `${method} ${stripQuery(url)}`;
  const remaining = s.deadline - Date.now();
  if (remaining <= 0) {
    return Promise.reject(new RegistryCheckError(step, `registry check: ${shown} not sent: timed out after ${s.timeoutSeconds}s`));
  }
  const headers: http.OutgoingHttpHeaders = {
    "user-agent": "runner-secrets-registry-check",
    accept: "application/json",
    // An empty POST starts an upload; distribution wants the length stated.
    ...(method === "POST" ? { "content-length": "0" } : {}),
  };
  if (authenticated) {
    headers.authorization = `Basic ${Buffer.from(`${s.user}:${s.key}`, "utf8").toString("base64")}`;
  }
  const lib = url.protocol === "https:" ? https : http;

  return new Promise<Response>((resolve, reject) => {
    let settled = false;
    const finish = (fn: () => void): void => {
      if (settled) return;
      settled = true;
      clearTimeout(timer);
      fn();
    };
    const req = lib.request(url, { method, headers, agent: s.agent }, (res) => {
      const chunks: Buffer[] = [];
      let size = 0;
      res.on("data", (chunk: Buffer) => {
        if (size < BODY_LIMIT) {
          chunks.push(chunk);
          size += chunk.length;
        }
      });
      res.on("end", () =>
        finish(() =>
          resolve({
            status: res.statusCode ?? 0,
            headers: res.headers,
            body: Buffer.concat(chunks).subarray(0, BODY_LIMIT).toString("utf8"),
          }),
        ),
      );
      res.on("error", (err) => finish(() => reject(networkError(step, shown, url, err))));
    });
    const timer = setTimeout(() => {
      finish(() =>
        reject(
          new RegistryCheckError(
            step,
            `registry check: ${shown} timed out after ${s.timeoutSeconds}s (limit for the whole check); ` +
              `is ${url.host} reachable from here and the registry answering?`,
          ),
        ),
      );
      req.destroy();
    }, remaining);
    req.on("error", (err) => finish(() => reject(networkError(step, shown, url, err))));
    req.end();
  });
}

function networkError(step: RegistryCheckStep, shown: string, url: URL, err: unknown): RegistryCheckError {
  const code = (err as NodeJS.ErrnoException | undefined)?.code ?? "";
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
    default:
      hint = describeError(err);
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
  const location = headerValue(res.headers.location);
  if (res.status >= 300 && res.status < 400 && location !== undefined) {
    return ` The registry redirects to ${location}; set registryCheck.url to the registry's own URL.`;
  }
  return "";
}

function headerValue(v: string | string[] | undefined): string | undefined {
  return Array.isArray(v) ? v[0] : v;
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
