// Samples every process's command line and environment (we are root, so
// /proc/<pid>/environ of other users is readable) every ~20 ms and records
// where a needle occurs: evidence that a secret never shows up in argv or
// env of anything on the host while commands run.
//
// The polling runs in a worker thread with a synchronous loop, so it keeps
// sampling even while the test's main thread is busy. It is sampling: a
// process that lives for less than one interval can be missed.
// Nothing is excluded (not even this process): each hit names pid and exe
// so the test decides what is legitimate.

import { Worker } from "node:worker_threads";

export interface ProcWatch {
  /** Stops polling; resolves to the distinct hits, e.g. "pid 123 exe /usr/bin/sleep cmdline: sleep 1 needle". */
  stop(): Promise<string[]>;
}

// Plain JS (run with eval: true) so the worker needs no TypeScript loader.
const WORKER = `
const { workerData, parentPort } = require("node:worker_threads");
const fs = require("node:fs");
const needle = Buffer.from(workerData.needle, "utf8");
const flag = new Int32Array(workerData.flag);
const seen = new Set();
const hits = [];
const show = (buf) => buf.toString("utf8").replace(/\\0+$/, "").split("\\0").join(" ");
function scan() {
  let pids;
  try { pids = fs.readdirSync("/proc").filter((d) => /^[0-9]+$/.test(d)); } catch { return; }
  for (const pid of pids) {
    for (const field of ["cmdline", "environ"]) {
      let buf;
      try { buf = fs.readFileSync("/proc/" + pid + "/" + field); } catch { continue; }
      if (buf.indexOf(needle) < 0) continue;
      let exe = "?";
      try { exe = fs.readlinkSync("/proc/" + pid + "/exe"); } catch {}
      // For environ, report only the variables that contain the needle.
      const text = field === "cmdline" ? show(buf)
        : buf.toString("utf8").split("\\0").filter((v) => v.includes(workerData.needle)).join(" ");
      const hit = "pid " + pid + " exe " + exe + " " + field + ": " + text;
      if (!seen.has(hit)) { seen.add(hit); hits.push(hit); }
    }
  }
}
while (Atomics.load(flag, 0) === 0) {
  scan();
  Atomics.wait(flag, 0, 0, workerData.intervalMs);
}
scan();
parentPort.postMessage(hits);
`;

export function watchProcesses(needle: string, intervalMs = 20): ProcWatch {
  if (needle === "") throw new Error("watchProcesses: empty needle would match everything");
  const flag = new SharedArrayBuffer(4);
  const worker = new Worker(WORKER, { eval: true, workerData: { needle, flag, intervalMs } });
  const result = new Promise<string[]>((resolve, reject) => {
    worker.once("message", (hits: string[]) => resolve(hits));
    worker.once("error", reject);
    worker.once("exit", (code) => reject(new Error(`procWatch worker exited (${code}) before reporting`)));
  });
  return {
    async stop() {
      const f = new Int32Array(flag);
      Atomics.store(f, 0, 1);
      Atomics.notify(f, 0);
      return result;
    },
  };
}
