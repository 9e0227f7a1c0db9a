// Posts the `pulumi preview` of one stack as a comment on a Forgejo pull request, and on the next
// push edits that same comment instead of adding another. One comment per stack, found again by a
// hidden marker (`<!-- runner-secrets-preview:<stack> -->`) and its author: the token's own user.
//
//   node --import tsx ci/previewComment/main.ts --stack indri --output-file preview.txt \
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
import { redact } from "../../lib/redact";
import { buildBody, type BodyInput } from "./body";
import { ApiError, upsertComment, type ForgejoTarget } from "./forgejo";

class UsageError extends Error {}

const USAGE =
  "usage: preview-comment --stack NAME --output-file FILE --exit-code N [--pr N] [--repo OWNER/NAME] " +
  "[--api-url URL] [--commit SHA] [--run-url URL]";

export interface Invocation {
  target: ForgejoTarget;
  body: BodyInput;
}

function parseInvocation(argv: string[], env: NodeJS.ProcessEnv): Invocation {
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
      redactValues.push(
        ...fs
          .readFileSync(env.RUNNER_SECRETS_REDACT_FILE, "utf8")
          .split("\n")
          .filter((v) => v !== ""),
      );
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
