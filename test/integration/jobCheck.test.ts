// The job-side check (.forgejo/workflows/registry-auth-check.yaml): its shell steps, taken from
// the workflow file and run with bash as a runner runs them (`bash -e`), against a real registry
// (CNCF distribution, htpasswd, TLS with its own CA). The `uses:` steps (checkout, setup-node) and
// `npm ci` are what this checkout already has.
import assert from "node:assert/strict";
import { spawnSync } from "node:child_process";
import * as fs from "node:fs";
import * as path from "node:path";
import { after, before, describe, it } from "node:test";
import { parse as parseYaml } from "yaml";
import { randomKey, startRegistry, type TestRegistry } from "../support/registry";

const ROOT = path.join(__dirname, "..", "..");
const WORKFLOW = path.join(ROOT, ".forgejo/workflows/registry-auth-check.yaml");

interface Step {
  name?: string;
  run?: string;
  uses?: string;
}
interface Job {
  "runs-on": string;
  env: Record<string, string>;
  steps: Step[];
  strategy: { matrix: { label: string[] } };
}
const workflow = parseYaml(fs.readFileSync(WORKFLOW, "utf8")) as { on: Record<string, unknown>; jobs: { check: Job } };
const job = workflow.jobs.check;

/** Runs the job's shell steps in order, as on `label`, until one fails. */
function runJob(label: string, env: Record<string, string>): { failedStep?: string; output: string } {
  let output = "";
  for (const step of job.steps) {
    if (step.run === undefined || /^npm ci\b/.test(step.run)) continue;
    const script = step.run.replaceAll("${{ matrix.label }}", label);
    const r = spawnSync("bash", ["--noprofile", "--norc", "-e", "-o", "pipefail", "-c", script], {
      cwd: ROOT,
      env: { PATH: process.env.PATH ?? "", ...env },
      encoding: "utf8",
    });
    output += r.stdout + r.stderr;
    if (r.status !== 0) return { failedStep: step.name, output };
  }
  return { output };
}

describe("the job-side registry check, its steps run against a real registry", () => {
  let reg: TestRegistry;
  let key: string;
  let env: Record<string, string>;
  before(async () => {
    key = randomKey();
    reg = await startRegistry({ auth: { user: job.env.REGISTRY_USER, key } });
    env = { ...job.env, REGISTRY_URL: reg.url, REGISTRY_CA_FILE: reg.caFile };
  });
  after(async () => {
    await reg?.stop();
  });

  it("runs by hand and weekly, one job per runner label", () => {
    assert.ok("workflow_dispatch" in workflow.on);
    assert.ok(Array.isArray(workflow.on.schedule) && workflow.on.schedule.length === 1);
    assert.deepEqual(job.strategy.matrix.label, ["k8s", "nix-container-builder"]);
    assert.equal(job["runs-on"], "${{ matrix.label }}");
  });

  it("the current key in the job: every step passes and nothing prints the key", () => {
    for (const label of job.strategy.matrix.label) {
      const r = runJob(label, { ...env, ZOT_CI_API_KEY: key });
      assert.equal(r.failedStep, undefined, r.output);
      assert.match(r.output, /registry check passed: .*refuses anonymous push/);
      assert.ok(!r.output.includes(key), "a step printed the key");
      assert.ok(!r.output.includes(Buffer.from(`${job.env.REGISTRY_USER}:${key}`).toString("base64")));
    }
  });

  it("no key in the job: the first step fails, naming the runner and what to check", () => {
    const r = runJob("k8s", env);
    assert.equal(r.failedStep, "ZOT_CI_API_KEY is set in this job");
    assert.match(r.output, /::error::ZOT_CI_API_KEY is not set in jobs on k8s: check the runner's env_file/);
  });

  it("a stale key in the job: the registry step fails with the 401, the key unprinted", () => {
    const stale = randomKey();
    const r = runJob("nix-container-builder", { ...env, ZOT_CI_API_KEY: stale });
    assert.equal(r.failedStep, "The registry accepts the key and refuses anonymous pushes");
    assert.match(r.output, /check 1 \(login\).*HTTP 401/);
    assert.ok(!r.output.includes(stale));
  });
});
