// What ESO's template engine v2 and the runner's env_file reader (godotenv) make of the Secret's
// content.
import { createHash } from "node:crypto";

/**
 * Renders `{{ .name }}` and `{{ .name | fn args… }}` with the sprig functions used here. Anything
 * else throws, so a template this cannot mirror faithfully fails the test instead of passing by luck.
 */
export function renderTemplate(text: string, data: Record<string, string>): string {
  // The approved-key guard (components/kubernetes.ts approvedOnly): sprig's `fail` aborts the render.
  const guard = /^\{\{ if ne \(\.(\w+) \| sha256sum \| trunc 16\) "([0-9a-f]{16})" \}\}\{\{ fail "([^"]*)" \}\}\{\{ end \}\}/.exec(text);
  if (guard) {
    const [all, name, digest, message] = guard;
    if (!(name in data)) throw new Error(`template reads .${name}, which the ExternalSecret does not provide`);
    if (createHash("sha256").update(data[name], "utf8").digest("hex").slice(0, 16) !== digest) throw new Error(message);
    text = text.slice(all.length);
  }
  return text.replace(/\{\{(.*?)\}\}/gs, (_, body: string) => {
    const stages = body.trim().split(/\s*\|\s*/);
    const first = /^\.([A-Za-z_][A-Za-z0-9_]*)$/.exec(stages[0]);
    if (!first) throw new Error(`template action not supported by this renderer: {{${body}}}`);
    if (!(first[1] in data)) throw new Error(`template reads .${first[1]}, which the ExternalSecret does not provide`);
    let v = data[first[1]];
    for (const stage of stages.slice(1)) {
      const [fn, ...args] = stage.split(/\s+/);
      if (fn === "sha256sum" && args.length === 0) v = createHash("sha256").update(v, "utf8").digest("hex");
      else if (fn === "trunc" && args.length === 1 && /^\d+$/.test(args[0])) v = v.slice(0, Number(args[0]));
      else throw new Error(`template function not supported by this renderer: ${stage}`);
    }
    return v;
  });
}

/**
 * Parses a dotenv file as github.com/joho/godotenv v1.5 (forgejo-runner's env_file reader) does:
 * `export` prefix, `=` or `:`, single quotes literal, double quotes with escapes and $ expansion,
 * unquoted values trimmed, inline ` #` comments dropped and $ expanded.
 */
export function parseDotenv(text: string, env: Record<string, string> = {}): Record<string, string> {
  const out: Record<string, string> = {};
  const expand = (s: string) =>
    s.replace(/(\\)?\$(\{[A-Za-z0-9_]+\}|[A-Za-z0-9_]+)?/g, (m, esc: string | undefined, name: string | undefined) => {
      if (esc) return m.slice(1);
      if (!name) return m;
      const n = name.replace(/^\{|\}$/g, "");
      return out[n] ?? env[n] ?? "";
    });
  let src = text.replace(/\r\n/g, "\n");
  while (src.length) {
    src = src.replace(/^[\s]+/, "");
    if (!src.length) break;
    if (src.startsWith("#")) {
      src = src.slice(src.indexOf("\n") < 0 ? src.length : src.indexOf("\n"));
      continue;
    }
    src = src.replace(/^export[ \t]+/, "");
    const sep = src.search(/[=:]/);
    if (sep < 0) throw new Error(`dotenv: no separator in ${JSON.stringify(src.split("\n")[0])}`);
    const key = src.slice(0, sep).trim();
    if (!/^[A-Za-z0-9_.]+$/.test(key)) throw new Error(`dotenv: bad key ${JSON.stringify(key)}`);
    src = src.slice(sep + 1).replace(/^[ \t]+/, "");
    const q = src[0];
    if (q === "'" || q === '"') {
      let end = -1;
      for (let i = 1; i < src.length; i++)
        if (src[i] === q && src[i - 1] !== "\\") {
          end = i;
          break;
        }
      if (end < 0) throw new Error(`dotenv: unterminated quoted value for ${key}`);
      let value = src.slice(0, end).replace(new RegExp(`^${q}+|${q}+$`, "g"), "");
      if (q === '"') {
        value = expand(value.replace(/\\([^$])/g, (_, c: string) => (({ n: "\n", r: "\r" }) as Record<string, string>)[c] ?? c));
      }
      out[key] = value;
      src = src.slice(end + 1);
      src = src.slice(src.indexOf("\n") < 0 ? src.length : src.indexOf("\n"));
    } else {
      const eol = src.indexOf("\n") < 0 ? src.length : src.indexOf("\n");
      let line = src.slice(0, eol);
      const hash = line.search(/[ \t]#/);
      if (hash >= 0) line = line.slice(0, hash);
      out[key] = expand(line.trim());
      src = src.slice(eol);
    }
  }
  return out;
}
