// Command-line front of checker/registryCheck.ts: `pulumi up` runs it (components/registryGate.ts),
// and so does the job-side workflow (.forgejo/workflows/registry-auth-check.yaml).
//
//   op read "op://<vault>/<item>/credential" | node --import tsx checker/cli.ts \
//     --url https://registry.example.org --user ci --probe-repository runner-secrets/probe \
//     --timeout-seconds 10 [--ca-file ca.pem]
//
// The flags go through the schema of the stack's registryCheck.* (lib/registryOptions.ts).
//
// The key comes on stdin, never as an argument (arguments are visible in `ps` and shell history).
// Inside a CI job, `--key-from-env ZOT_CI_API_KEY` reads it from that variable of the checker's own
// environment instead (what the runner gives the job); the value is never printed, and an unset or
// empty variable fails the check (exit 1) saying so.
// Exit status: 0 all checks passed, 1 a check failed, 2 bad usage (a missing, unknown or invalid flag).

import * as path from "node:path";
import { parseArgs } from "node:util";
import { parseRegistryOptions, type RegistryCheckOptions } from "../lib/registryOptions";
import { checkRegistry, RegistryCheckError } from "./registryCheck";

const USAGE =
  "usage: check-registry --url URL --user NAME --probe-repository REPO --timeout-seconds N [--ca-file PEM] " +
  "(< key | --key-from-env VAR)";

class UsageError extends Error {}

/** Each option's flag, for messages. */
const FLAGS: Record<string, string> = {
  url: "--url",
  user: "--user",
  probeRepository: "--probe-repository",
  timeoutSeconds: "--timeout-seconds",
  caFile: "--ca-file",
};

export interface Cli {
  options: RegistryCheckOptions;
  /** The environment variable holding the key; stdin when absent. */
  keyFromEnv?: string;
}

function parseCli(argv: string[]): Cli {
  let values: Record<string, string | boolean | undefined>;
  try {
    ({ values } = parseArgs({
      args: argv,
      strict: true,
      allowPositionals: false,
      options: {
        url: { type: "string" },
        user: { type: "string" },
        "probe-repository": { type: "string" },
        "timeout-seconds": { type: "string" },
        "ca-file": { type: "string" },
        "key-from-env": { type: "string" },
      },
    }));
  } catch (err) {
    throw new UsageError((err as Error).message);
  }
  const required = (name: string): string => {
    const v = values[name];
    if (typeof v !== "string" || v === "") throw new UsageError(`missing --${name}`);
    return v;
  };
  const caFile = values["ca-file"];
  if (caFile === "") throw new UsageError("--ca-file must not be empty");
  // The flags go through the same schema as the stack's registryCheck.* (a relative CA path is
  // taken from the current directory).
  const parsed = parseRegistryOptions({
    url: required("url"),
    user: required("user"),
    probeRepository: required("probe-repository"),
    timeoutSeconds: required("timeout-seconds"),
    ...(typeof caFile === "string" ? { caFile: path.resolve(caFile) } : {}),
  });
  if (!parsed.ok) {
    throw new UsageError(parsed.problems.map(([name, message]) => `${FLAGS[name] ?? name} ${message}`).join("; "));
  }
  const keyFromEnv = values["key-from-env"];
  if (keyFromEnv !== undefined && (typeof keyFromEnv !== "string" || !/^[A-Za-z_][A-Za-z0-9_]*$/.test(keyFromEnv))) {
    throw new UsageError(`--key-from-env must name an environment variable, got ${JSON.stringify(keyFromEnv)}`);
  }
  return {
    options: parsed.options,
    ...(typeof keyFromEnv === "string" ? { keyFromEnv } : {}),
  };
}

async function readStdin(): Promise<string> {
  const chunks: Buffer[] = [];
  for await (const chunk of process.stdin) chunks.push(chunk as Buffer);
  // `op read` and `echo` end the key with one newline; that newline is not part of the key.
  return Buffer.concat(chunks)
    .toString("utf8")
    .replace(/\r?\n$/, "");
}

async function main(): Promise<number> {
  let cli: Cli;
  try {
    cli = parseCli(process.argv.slice(2));
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`check-registry: ${err.message}\n${USAGE}\n`);
      return 2;
    }
    throw err;
  }
  const opts = cli.options;
  let key: string;
  if (cli.keyFromEnv !== undefined) {
    key = process.env[cli.keyFromEnv] ?? "";
    if (key === "") {
      process.stderr.write(
        `check-registry: ${cli.keyFromEnv} is not set (or empty) in this environment: the runner did not give this job the key\n`,
      );
      return 1;
    }
  } else {
    if (process.stdin.isTTY) {
      process.stderr.write("check-registry: the key is read from stdin; pipe it in (e.g. from `op read`)\n");
      return 2;
    }
    key = await readStdin();
  }
  const started = process.hrtime.bigint();
  try {
    await checkRegistry(opts, key);
  } catch (err) {
    if (err instanceof RegistryCheckError) {
      process.stderr.write(`${err.message}\n`);
      return 1;
    }
    // checkRegistry only throws RegistryCheckError; anything else is a bug, and may not be scrubbed.
    process.stderr.write("check-registry: internal error (details withheld: they might contain the key)\n");
    return 1;
  }
  const ms = Number(process.hrtime.bigint() - started) / 1e6;
  process.stdout.write(
    `registry check passed: ${opts.url} accepts ${opts.user}'s key (login, push to ${opts.probeRepository} ` +
      `started and cancelled) and refuses anonymous push (${ms.toFixed(0)} ms)\n`,
  );
  return 0;
}

if (require.main === module) {
  main().then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.stderr.write("check-registry: internal error\n");
      process.exitCode = 1;
    },
  );
}
