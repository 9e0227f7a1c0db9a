// The registry check's options: one schema for the stack config (registryCheck.*, config.ts), the
// checker's command-line flags (checker/cli.ts) and the checker itself (checker/registryCheck.ts).
import { z } from "zod";
import { absPath, HTTP_URL_MESSAGE, isStrictHttpUrl } from "./patterns";

/** The first thing wrong with a registry base URL, said as plainly as the mistake allows. */
function registryUrlProblem(value: string): string | undefined {
  if (!URL.canParse(value)) return "is not a URL (expected e.g. https://registry.example.org)";
  const url = new URL(value);
  if (url.protocol !== "https:" && url.protocol !== "http:") return "must start with https:// (or http://)";
  if (url.username !== "" || url.password !== "") return "must not carry credentials; the user is a separate option";
  if (url.search !== "" || url.hash !== "" || /[?#]/.test(value)) return "must not have a query or fragment";
  if (/\/v2\/*$/.test(url.pathname)) return `should be the registry's base (without /v2/), e.g. ${url.origin}`;
  if (!isStrictHttpUrl(value)) return HTTP_URL_MESSAGE;
  return undefined;
}

const registryUrl = z.string().superRefine((value, ctx) => {
  const problem = registryUrlProblem(value);
  if (problem) ctx.addIssue({ code: "custom", message: problem });
});

// Distribution's repository name grammar: lower-case path components joined by `/`.
const repositoryNameRe = /^[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*(?:\/[a-z0-9]+(?:(?:[._]|__|-+)[a-z0-9]+)*)*$/;

export const registryOptionsSchema = z.strictObject({
  /** Base URL of the registry, e.g. `https://registry.ops.eblu.me` (no `/v2/`). */
  url: registryUrl,
  /** User the key belongs to (for zot: the key's creator), e.g. `zot-ci`. */
  user: z.string().regex(/^[A-Za-z0-9._@-]{1,128}$/, {
    message: 'must be a registry user name of 1 to 128 letters, digits and . _ @ - (it must not contain ":")',
  }),
  /** Repository the push probe starts (and cancels) an upload in. */
  probeRepository: z
    .string()
    .regex(repositoryNameRe, { message: "is not a valid repository name (lower-case path components such as runner-secrets/probe)" })
    .default("runner-secrets/probe"),
  /** Limit for the whole check; each request gets what is left of it. */
  timeoutSeconds: z.coerce
    .number({ message: "must be a positive number of seconds" })
    .positive({ message: "must be a positive number of seconds" })
    .max(600, { message: "must be at most 600 seconds" })
    .default(30),
  /** PEM file with extra CA certificates, trusted in addition to Node's default roots. */
  caFile: absPath.optional(),
});

export type RegistryCheckOptions = z.output<typeof registryOptionsSchema>;

/** Each problem of `input` as [option name, message], or the parsed options. */
export function parseRegistryOptions(
  input: unknown,
): { ok: true; options: RegistryCheckOptions } | { ok: false; problems: [string, string][] } {
  const result = registryOptionsSchema.safeParse(input);
  if (result.success) return { ok: true, options: result.data };
  return {
    ok: false,
    problems: result.error.issues.map((i) =>
      i.code === "unrecognized_keys" ? [i.keys.join(", "), "unknown option"] : [i.path.map(String).join("."), i.message],
    ),
  };
}
