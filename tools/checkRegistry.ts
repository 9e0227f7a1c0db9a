// `mise run check-registry`: does the registry accept the key 1Password holds now? For each stack,
// reads the key the way the stack does (its 1Password settings) and runs the checker with the
// stack's own registryCheck settings: the same check `pulumi up` runs, before anything changes.
// Run it after updating the 1Password item and before `up` (docs/operating.md, rotation step 3).
//
//   node --import tsx tools/checkRegistry.ts [--stack NAME]...   (default: every Pulumi.<stack>.yaml)
//
// The key stays in this process's memory: never an argument, an environment variable or output.
// Exit status: 0 every check passed, 1 one failed (or could not run), 2 bad usage.
import { checkRegistry, RegistryCheckError } from "../checker/registryCheck";
import { runMain, stackConfig, stacksFromArgs } from "./stacks";
import { onePasswordKey } from "./verify/onePassword";

async function checkStack(stack: string): Promise<{ ok: boolean; line: string }> {
  let key: string | undefined;
  try {
    const cfg = await stackConfig(stack);
    const { enabled: _enabled, ...options } = cfg.registryCheck;
    key = await onePasswordKey(cfg.onePassword, cfg.secrets.onePasswordToken);
    await checkRegistry(options, key);
    return { ok: true, line: `${stack}: registry check passed: ${options.url} accepts ${options.user}'s key and refuses anonymous push` };
  } catch (err) {
    // checkRegistry's errors are scrubbed of the key; anything else is withheld, as it might not be.
    const text = err instanceof RegistryCheckError || key === undefined ? (err as Error).message : "internal error (details withheld)";
    return { ok: false, line: `${stack}: FAILED: ${text}` };
  }
}

async function main(argv: string[]): Promise<number> {
  let stacks: string[];
  try {
    stacks = stacksFromArgs(argv);
  } catch (err) {
    process.stderr.write(`check-registry: ${(err as Error).message}\nusage: check-registry [--stack NAME]...\n`);
    return 2;
  }
  const results = await Promise.all(stacks.map(checkStack));
  for (const r of results) process.stdout.write(`${r.line}\n`);
  return results.every((r) => r.ok) ? 0 : 1;
}

if (require.main === module) runMain("check-registry", main);
