// Wall time of the unit suite (pure modules + both stacks under mocks), measured, never asserted.
//   node --import tsx bench/unitTests.ts [runs]
import { spawnSync } from "node:child_process";

const files = ["config", "registryKey", "remoteScript", "onePassword", "stacks"].map((f) => `test/unit/${f}.test.ts`);
const runs = Number(process.argv[2] ?? 5);
const times: number[] = [];
for (let i = 0; i < runs; i++) {
  const start = process.hrtime.bigint();
  const r = spawnSync(process.execPath, ["--import", "tsx", "--test", ...files], { encoding: "utf8" });
  times.push(Number(process.hrtime.bigint() - start) / 1e6);
  if (r.status !== 0) {
    process.stderr.write(r.stdout + r.stderr);
    process.exit(1);
  }
}
times.sort((a, b) => a - b);
const ms = (x: number) => `${Math.round(x)} ms`;
console.log(
  `unit suite (${files.length} files), ${runs} runs: min ${ms(times[0])}, median ${ms(times[Math.floor(runs / 2)])}, max ${ms(times[runs - 1])}`,
);
