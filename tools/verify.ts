// `mise run verify`: for each stack, is the runner on the key 1Password holds now? Compares the
// key's digest in 1Password, what the stack deployed (`keyDigest`), and what the runner really
// holds and uses (ringtail over SSH, indri from the API server). One line per runner; exit 0 only
// when every runner is current.
//
//   node --import tsx tools/verify.ts [--stack NAME]...      (default: every Pulumi.<stack>.yaml)
//
// Needs what `pulumi preview` needs (the pulumi CLI, the backend, the passphrase) plus SSH for
// ringtail and the kube context for indri. Prints digests only, never a key.
// Exit status: 0 all current, 1 a runner is stale, missing or unreachable, 2 bad usage.
import type { StackConfig } from "../lib/config";
import { keyDigest } from "../lib/registryKey";
import { onePasswordKey } from "./verify/onePassword";
import { probeIndri, type IndriFacts } from "./verify/indri";
import { pulumi, runMain, stackConfig, stacksFromArgs } from "./stacks";
import { daemonDigestFor, fileDigestFor, probeRingtail, type RingtailFacts } from "./verify/ringtail";

export type Verdict = "current" | "stale" | "missing" | "unreachable";

export interface Report {
  stack: string;
  verdict: Verdict;
  /** What was seen, digests only. */
  seen: string;
  /** What to do; empty when current. */
  todo: string;
}

async function deployedDigest(stack: string): Promise<string | undefined> {
  const out = JSON.parse(await pulumi(["stack", "output", "--json", "--stack", stack])) as { keyDigest?: unknown };
  return typeof out.keyDigest === "string" ? out.keyDigest : undefined;
}

const mark = (ok: boolean) => (ok ? "ok" : "DIFFERS");

async function verifyStack(stack: string): Promise<Report> {
  let cfg: StackConfig;
  let key: string;
  let deployed: string | undefined;
  try {
    cfg = await stackConfig(stack);
    [key, deployed] = await Promise.all([onePasswordKey(cfg.onePassword, cfg.secrets.onePasswordToken), deployedDigest(stack)]);
  } catch (err) {
    return { stack, verdict: "unreachable", seen: (err as Error).message, todo: "check the backend, the passphrase and 1Password access" };
  }
  const now = keyDigest(key);
  const head = `1Password ${now}, deployed ${deployed ?? "nothing"}`;
  const upTodo = `run pulumi up -s ${stack}`;

  if (cfg.target === "nixos") {
    const n = cfg.nixos;
    let f: RingtailFacts;
    try {
      f = await probeRingtail(n, cfg.envVar, cfg.secrets.sshPrivateKey);
    } catch (err) {
      return {
        stack,
        verdict: "unreachable",
        seen: `${head}; ${(err as Error).message}`,
        todo: "check SSH to the host (address, port, host key, login)",
      };
    }
    const fileOk = f.file === fileDigestFor(cfg.envVar, key);
    const daemonOk = f.daemon === daemonDigestFor(key);
    const seen = `${head}; file ${n.envFile} ${f.file === "missing" ? "missing" : mark(fileOk)}, unit ${n.unit} ${f.loads ? "loads it" : "does NOT load it"}, daemon${f.pid ? ` (pid ${f.pid})` : ""} ${["missing", "not running"].includes(f.daemon) ? f.daemon : mark(daemonOk)}`;
    if (f.file === "missing") return { stack, verdict: "missing", seen, todo: upTodo };
    if (!f.loads)
      return {
        stack,
        verdict: "missing",
        seen,
        todo: `add EnvironmentFile=${n.envFile} to ${n.unit} in the flake, then nixos-rebuild switch`,
      };
    if (f.daemon === "not running") return { stack, verdict: "missing", seen, todo: `start ${n.unit}` };
    if (f.daemon === "missing") return { stack, verdict: "missing", seen, todo: `restart ${n.unit} (it was started without the env file)` };
    if (deployed !== now) return { stack, verdict: "stale", seen, todo: upTodo };
    if (!fileOk) {
      // The stack deployed the current key, so `up` sees no change: only a replacement re-writes it.
      const todo = `the file was changed on the host: re-write it with pulumi up -s ${stack} --replace <URN of zot-ci-env-file> (pulumi stack -s ${stack} --show-urns)`;
      return { stack, verdict: "stale", seen, todo };
    }
    if (!daemonOk) return { stack, verdict: "stale", seen, todo: `restart ${n.unit}: the daemon still runs with another key` };
    return { stack, verdict: "current", seen, todo: "" };
  }

  const k = cfg.kubernetes;
  let f: IndriFacts;
  try {
    f = await probeIndri(k);
  } catch (err) {
    return { stack, verdict: "unreachable", seen: `${head}; ${(err as Error).message}`, todo: `check the kube context ${k.context}` };
  }
  const podsOk = f.pods.length > 0 && f.pods.every((p) => p.digest === now && p.ready);
  const pods = f.pods.map((p) => `${p.name} ${p.digest === now ? "ok" : p.digest}${p.ready ? "" : " (not Ready)"}`).join(", ") || "none";
  const seen =
    `${head}; ExternalSecret ${f.externalSecretReady === "missing" ? "missing" : f.externalSecretReady ? "Ready" : "NOT Ready"} (${f.refreshPolicy}), ` +
    `Secret ${f.secret === "missing" ? "missing" : mark(f.secret === now)}, template ${f.template === "missing" ? "missing" : mark(f.template === now)}, pods: ${pods}`;
  if (f.externalSecretReady === "missing" || f.secret === "missing" || f.template === "missing")
    return { stack, verdict: "missing", seen, todo: upTodo };
  if (f.pods.length === 0)
    return { stack, verdict: "missing", seen, todo: `no runner pod is running: kubectl -n ${k.namespace} describe deploy/${k.deployment}` };
  if (deployed !== now || f.secret !== now || f.template !== now || f.externalSecretReady !== true || f.refreshPolicy !== "OnChange") {
    return { stack, verdict: "stale", seen, todo: upTodo };
  }
  if (!podsOk)
    return {
      stack,
      verdict: "stale",
      seen,
      todo: `a pod did not roll: kubectl -n ${k.namespace} rollout status deploy/${k.deployment}, then ${upTodo}`,
    };
  return { stack, verdict: "current", seen, todo: "" };
}

function formatReport(r: Report): string {
  return `${r.stack}: ${r.verdict.toUpperCase()}: ${r.seen}${r.todo ? `. To do: ${r.todo}` : ""}`;
}

async function main(argv: string[]): Promise<number> {
  let stacks: string[];
  try {
    stacks = stacksFromArgs(argv);
  } catch (err) {
    process.stderr.write(`verify: ${(err as Error).message}\nusage: verify [--stack NAME]...\n`);
    return 2;
  }
  const reports = await Promise.all(stacks.map(verifyStack));
  for (const r of reports) process.stdout.write(`${formatReport(r)}\n`);
  return reports.every((r) => r.verdict === "current") ? 0 : 1;
}

if (require.main === module) runMain("verify", main);
