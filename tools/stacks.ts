// What the operator tools share: the stacks to look at and each one's config, read through the
// pulumi CLI (so the backend, the passphrase and the stack file are the ones `pulumi up` uses) and
// validated by the program's own schema.
import { execFile } from "node:child_process";
import * as fs from "node:fs";
import { parseArgs } from "node:util";
import { parseConfig, type StackConfig } from "../lib/config";

export function pulumi(args: string[]): Promise<string> {
  return new Promise((resolve, reject) =>
    execFile(
      "pulumi",
      [...args, "--non-interactive"],
      { encoding: "utf8", maxBuffer: 16 << 20, timeout: 120_000 },
      (err, stdout, stderr) => {
        if (err) reject(new Error(`pulumi ${args.slice(0, 2).join(" ")}: ${stderr.trim().split("\n").pop() || err.message}`));
        else resolve(stdout);
      },
    ),
  );
}

/** The stack's config as the program sees it (credentials included, for in-memory use only). */
export async function stackConfig(stack: string): Promise<StackConfig> {
  const all = JSON.parse(await pulumi(["config", "--json", "--show-secrets", "--stack", stack])) as Record<
    string,
    { value?: string; secret?: boolean }
  >;
  const raw = Object.fromEntries(Object.entries(all).map(([k, v]) => [k, String(v.value ?? "")]));
  return parseConfig(
    raw,
    Object.keys(all).filter((k) => all[k].secret),
  );
}

/** Runs a tool's main as its CLI: its result is the exit status; a crash prints only that it crashed
 * (its message might hold a secret). */
export function runMain(name: string, main: (argv: string[]) => Promise<number>): void {
  main(process.argv.slice(2)).then(
    (code) => {
      process.exitCode = code;
    },
    () => {
      process.stderr.write(`${name}: internal error\n`);
      process.exitCode = 1;
    },
  );
}

/** `--stack NAME`... from the arguments, else every Pulumi.<stack>.yaml here. Throws on bad usage. */
export function stacksFromArgs(argv: string[]): string[] {
  const { values } = parseArgs({
    args: argv,
    strict: true,
    allowPositionals: false,
    options: { stack: { type: "string", multiple: true } },
  });
  const stacks =
    values.stack ??
    fs
      .readdirSync(".")
      .map((f) => /^Pulumi\.(.+)\.yaml$/.exec(f)?.[1])
      .filter((s): s is string => !!s)
      .sort();
  if (stacks.length === 0) throw new Error("no stacks (no Pulumi.<stack>.yaml here, no --stack)");
  return stacks;
}
