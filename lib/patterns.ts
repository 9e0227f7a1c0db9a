// Value grammars shared by the stack config (config.ts) and the registry options
// (registryOptions.ts). Each refuses quotes, `$`, backticks, spaces and control characters, so a
// value that passes can be embedded in a command line without quoting tricks.
import { z } from "zod";

export const hostLabel = "[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?";

/** A string held to `re`; the message says what it must be. */
export const pattern = (re: RegExp, what: string) => z.string().regex(re, { message: `must be ${what}` });

const absPathRe = /^(\/[A-Za-z0-9._+@-]+)+$/;
export const absPath = z
  .string()
  .regex(absPathRe, { message: "must be an absolute path of letters, digits and . _ + @ - (no spaces, quotes or shell characters)" })
  .refine((p) => !p.split("/").some((seg) => seg === "." || seg === ".."), { message: "must not contain . or .. segments" });

// An http(s) URL as typed, with nothing a shell or URL parser would reinterpret: no quotes, `$`,
// backticks, spaces, backslashes or control characters (a URL parser silently drops a newline and
// joins the host's halves), no user info, query or fragment.
const httpUrlRe = new RegExp(`^https?://${hostLabel}(?:\\.${hostLabel})*(?::\\d{1,5})?(?:/[A-Za-z0-9._~/-]*)?$`);
export const HTTP_URL_MESSAGE =
  "must be an http(s) URL of the form https://host[:port][/path] (letters, digits, . _ ~ / -; no quotes, $, backticks, spaces or newlines)";
export const isStrictHttpUrl = (v: string) => httpUrlRe.test(v);
export const httpUrl = z.string().regex(httpUrlRe, { message: HTTP_URL_MESSAGE });
