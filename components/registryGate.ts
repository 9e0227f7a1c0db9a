// The registry check as a resource: every consumer of the key depends on it, so a key the registry
// rejects stops the update before any runner changes.
import * as pulumi from "@pulumi/pulumi";
import { local } from "@pulumi/command";
import type { RegistryCheckConfig } from "../lib/config";
import type { RegistryKey } from "../lib/registryKey";
import { shellWord } from "../lib/remoteScript";

/** The checker CLI this gate runs, relative to the project directory (where Pulumi runs local commands). */
export const CHECKER_CLI = "checker/cli.ts";

/** The checker's command line (no key: it reads the key from stdin). */
function checkCommand(cfg: RegistryCheckConfig): string {
  const flags: [string, string][] = [
    ["--url", cfg.url],
    ["--user", cfg.user],
    ["--probe-repository", cfg.probeRepository],
    ["--timeout-seconds", String(cfg.timeoutSeconds)],
    ...(cfg.caFile ? ([["--ca-file", cfg.caFile]] as [string, string][]) : []),
  ];
  return [`node --import tsx ${CHECKER_CLI}`, ...flags.map(([f, v]) => `${f} ${shellWord(v)}`)].join(" ");
}

export function registryGate(name: string, cfg: RegistryCheckConfig, key: RegistryKey, parent: pulumi.Resource): pulumi.Resource[] {
  if (!cfg.enabled) return [];
  const check = new local.Command(
    `${name}-registry-check`,
    {
      create: checkCommand(cfg),
      stdin: pulumi.secret(key.value.apply((k) => `${k}\n`)),
      // A new key (or registry) is checked again; an unchanged one is not.
      triggers: [key.digest, cfg.url, cfg.user],
      addPreviousOutputInEnv: false,
      logging: "stdoutAndStderr",
    },
    { parent },
  );
  return [check];
}
