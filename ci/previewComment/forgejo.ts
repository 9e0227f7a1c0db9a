// The Forgejo API calls the poster makes: list a pull request's comments, learn the token's user,
// create or edit the one comment that is its own.
import { marker } from "./body";

const PAGE_LIMIT = 50;
const MAX_PAGES = 200;
const REQUEST_TIMEOUT_MS = 30_000;

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
async function listComments(t: ForgejoTarget): Promise<Comment[]> {
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
async function tokenUser(t: ForgejoTarget): Promise<string> {
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
