// Wall time of the registry check as an operator runs it: the CLI (a fresh Node + tsx each time)
// against a local distribution registry with htpasswd auth and TLS.
//
//   node --import tsx bench/registryCheck.ts [runs]     (default 10)

import { spawn } from "node:child_process";
import * as path from "node:path";
import { randomKey, startRegistry } from "../test/support/registry";
import { CHECKER_CLI } from "../components/registryGate";

const CLI = path.join(__dirname, "..", CHECKER_CLI);

interface Run {
  /** Whole CLI process, spawn to exit. */
  wallMs: number;
  /** The check itself, as the CLI reports it. */
  checkMs: number;
}

function runOnce(args: string[], key: string): Promise<Run> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { stdio: ["pipe", "pipe", "pipe"] });
    let stdout = "";
    let stderr = "";
    child.stdout.on("data", (d: Buffer) => (stdout += d.toString()));
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      const reported = /\((\d+) ms\)\s*$/.exec(stdout);
      if (code === 0 && reported) resolve({ wallMs: ms, checkMs: Number(reported[1]) });
      else reject(new Error(`check-registry exited ${code}: ${stderr}`));
    });
    child.stdin.end(`${key}\n`);
  });
}

async function main(): Promise<void> {
  const runs = Number(process.argv[2] ?? "10");
  if (!Number.isInteger(runs) || runs < 1) throw new Error(`runs must be a positive integer, got ${process.argv[2]}`);
  const key = randomKey();
  const reg = await startRegistry({ auth: { user: "zot-ci", key } });
  try {
    const args = [
      "--url",
      reg.url,
      "--user",
      "zot-ci",
      "--probe-repository",
      "runner-secrets/probe",
      "--timeout-seconds",
      "10",
      "--ca-file",
      reg.caFile,
    ];
    const results: Run[] = [];
    for (let i = 0; i < runs; i++) results.push(await runOnce(args, key));
    const summary = (values: number[]): string => {
      const t = [...values].sort((a, b) => a - b);
      const mid = Math.floor(t.length / 2);
      const median = t.length % 2 === 1 ? t[mid] : (t[mid - 1] + t[mid]) / 2;
      const f = (ms: number) => `${ms.toFixed(0)} ms`;
      return `min ${f(t[0])}, median ${f(median)}, max ${f(t[t.length - 1])}`;
    };
    console.log(`check-registry CLI, ${runs} runs against a local distribution registry (TLS, htpasswd bcrypt)`);
    console.log(`  wall time per run (node + tsx start included): ${summary(results.map((r) => r.wallMs))}`);
    console.log(`  the three checks alone (as the CLI reports):   ${summary(results.map((r) => r.checkMs))}`);
  } finally {
    await reg.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
