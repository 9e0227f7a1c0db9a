// Wall time of the registry check as an operator runs it: the CLI (a fresh Node + tsx each time)
// against a local distribution registry with htpasswd auth and TLS.
//
//   node --import tsx scripts/bench-registry-check.ts [runs]     (default 10)

import { spawn } from "node:child_process";
import * as path from "node:path";
import { randomKey, startRegistry } from "../test/support/registry";

const CLI = path.join(__dirname, "check-registry.ts");

function runOnce(args: string[], key: string): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ["--import", "tsx", CLI, ...args], { stdio: ["pipe", "ignore", "pipe"] });
    let stderr = "";
    child.stderr.on("data", (d: Buffer) => (stderr += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(ms);
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
      "--url", reg.url, "--user", "zot-ci", "--probe-repository", "runner-secrets/probe",
      "--timeout-seconds", "10", "--ca-file", reg.caFile,
    ];
    const times: number[] = [];
    for (let i = 0; i < runs; i++) times.push(await runOnce(args, key));
    times.sort((a, b) => a - b);
    const mid = Math.floor(times.length / 2);
    const median = times.length % 2 === 1 ? times[mid] : (times[mid - 1] + times[mid]) / 2;
    const f = (ms: number) => `${ms.toFixed(0)} ms`;
    console.log(
      `check-registry CLI, ${runs} runs against local distribution registry (TLS, htpasswd bcrypt): ` +
        `min ${f(times[0])}, median ${f(median)}, max ${f(times[times.length - 1])}`,
    );
  } finally {
    await reg.stop();
  }
}

main().catch((err: unknown) => {
  console.error(err instanceof Error ? err.message : String(err));
  process.exitCode = 1;
});
