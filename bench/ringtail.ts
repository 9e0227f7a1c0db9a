// Wall time of the ringtail-over-SSH tests, and of one up / rotation / no-op / destroy against the
// real SSH test host (as root, after test/setup/ssh-host.sh).
//
//   node --import tsx bench/ringtail.ts [suiteRuns] [rounds]     (defaults 3 and 5)
//
// suiteRuns: how often to run both test files (`node --test`, fresh processes, as npm test does);
// rounds: how many up → rotate → no-op → destroy cycles to time in-process (0 skips either part).

import { spawn } from "node:child_process";
import * as path from "node:path";

import { Engine, type UpResult } from "../test/support/engine";
import { freshKey, pathsFor, ringtailStack, startHost } from "../test/support/ringtailRig";

const ROOT = path.resolve(__dirname, "..");
const FILES = ["test/integration/ringtail.ssh.test.ts", "test/integration/ringtailFaults.ssh.test.ts"];

function suiteOnce(): Promise<number> {
  return new Promise((resolve, reject) => {
    const started = process.hrtime.bigint();
    const child = spawn(process.execPath, ["--import", "tsx", "--test", ...FILES], { cwd: ROOT, stdio: ["ignore", "pipe", "pipe"] });
    let out = "";
    child.stdout.on("data", (d: Buffer) => (out += d.toString()));
    child.stderr.on("data", (d: Buffer) => (out += d.toString()));
    child.on("error", reject);
    child.on("close", (code) => {
      const ms = Number(process.hrtime.bigint() - started) / 1e6;
      if (code === 0) resolve(ms);
      else reject(new Error(`the suite failed (exit ${code}):\n${out.slice(-4000)}`));
    });
  });
}

const median = (xs: number[]) => {
  const s = [...xs].sort((a, b) => a - b);
  return s.length % 2 ? s[(s.length - 1) / 2]! : (s[s.length / 2 - 1]! + s[s.length / 2]!) / 2;
};
const fmt = (ms: number) => `${(ms / 1000).toFixed(2)} s`;

async function timed(f: () => Promise<UpResult>): Promise<{ ms: number; commands: number }> {
  const t = process.hrtime.bigint();
  const r = await f();
  if (r.error) throw r.error;
  return { ms: Number(process.hrtime.bigint() - t) / 1e6, commands: r.runs.length };
}

async function rounds(n: number): Promise<void> {
  const host = await startHost();
  try {
    const phases: Record<string, { ms: number[]; commands: number }> = {};
    const add = (name: string, x: { ms: number; commands: number }) => {
      phases[name] ??= { ms: [], commands: x.commands };
      phases[name].ms.push(x.ms);
    };
    for (let i = 0; i < n; i++) {
      const p = pathsFor(host, `bench-${i}`);
      const engine = new Engine();
      const k1 = freshKey();
      const k2 = freshKey();
      // Each phase includes the mock run of the program (what `pulumi up` would evaluate).
      add("first up", await timed(async () => engine.up(await ringtailStack(host, p, { key: k1 }))));
      add("rotation", await timed(async () => engine.up(await ringtailStack(host, p, { key: k2 }))));
      add("no-op", await timed(async () => engine.up(await ringtailStack(host, p, { key: k2 }))));
      add("destroy", await timed(() => engine.destroy()));
    }
    console.log(`in-process, ${n} rounds (median, including the mock run of index.ts):`);
    for (const [name, x] of Object.entries(phases)) {
      console.log(`  ${name.padEnd(9)} ${fmt(median(x.ms))}  (${x.commands} SSH command${x.commands === 1 ? "" : "s"})`);
    }
  } finally {
    await host.stop();
  }
}

async function main(): Promise<void> {
  const suiteRuns = Number(process.argv[2] ?? "3");
  const n = Number(process.argv[3] ?? "5");
  if (!Number.isInteger(suiteRuns) || suiteRuns < 0 || !Number.isInteger(n) || n < 0) {
    throw new Error("usage: bench-ringtail.ts [suiteRuns>=0] [rounds>=0]");
  }
  if (n > 0) await rounds(n);
  if (suiteRuns > 0) {
    const times: number[] = [];
    for (let i = 0; i < suiteRuns; i++) {
      times.push(await suiteOnce());
      console.log(`suite run ${i + 1}/${suiteRuns}: ${fmt(times[i]!)}`);
    }
    console.log(
      `suite (${FILES.join(" + ")}): median ${fmt(median(times))}, min ${fmt(Math.min(...times))}, max ${fmt(Math.max(...times))}`,
    );
  }
}

main().catch((e: unknown) => {
  console.error(e instanceof Error ? e.message : e);
  process.exit(1);
});
