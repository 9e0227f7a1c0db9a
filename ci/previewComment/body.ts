// The comment's body: marker, status, resource summary and the (redacted, tail-cut) preview output.
import { redact } from "../../lib/redact";

const MARKER_PREFIX = "runner-secrets-preview";
/** Forgejo stores comments as LONGTEXT but GitHub-style clients and the UI cope badly past 64 KiB. */
const MAX_BODY_BYTES = 60_000;

export function marker(stack: string): string {
  return `<!-- ${MARKER_PREFIX}:${stack} -->`;
}

export interface BodyInput {
  stack: string;
  output: string;
  exitCode: number;
  commit?: string;
  runUrl?: string;
  redactValues: string[];
  maxBytes?: number;
}

const ANSI = /\x1b\[[0-9;?]*[ -/]*[@-~]/g;

/** Pulumi's closing `Resources:` block (`+ 1 to create`, `2 unchanged`), if the output has one. */
export function resourceSummary(output: string): string[] {
  const lines = output.split("\n");
  let start = -1;
  for (let i = lines.length - 1; i >= 0; i--) {
    if (/^Resources:\s*$/.test(lines[i].trim())) {
      start = i;
      break;
    }
  }
  if (start < 0) return [];
  const out: string[] = [];
  for (const line of lines.slice(start + 1)) {
    if (line.trim() === "") break;
    if (!/^\s/.test(line)) break;
    out.push(line.trim());
  }
  return out;
}

/** The tail of `text` that fits `maxBytes` (UTF-8), cut at a line start. */
export function keepTail(text: string, maxBytes: number): { text: string; omittedLines: number } {
  if (Buffer.byteLength(text, "utf8") <= maxBytes) return { text, omittedLines: 0 };
  const lines = text.split("\n");
  let bytes = 0;
  let first = lines.length;
  while (first > 0) {
    const next = Buffer.byteLength(lines[first - 1], "utf8") + 1;
    if (bytes + next > maxBytes) break;
    bytes += next;
    first--;
  }
  if (first === lines.length) {
    // A single last line longer than the budget: keep its end.
    const last = Buffer.from(lines[lines.length - 1], "utf8");
    const tail = last
      .subarray(last.length - maxBytes)
      .toString("utf8")
      .replace(/^\uFFFD+/, "");
    return { text: tail, omittedLines: lines.length - 1 };
  }
  return { text: lines.slice(first).join("\n"), omittedLines: first };
}

function fenceFor(text: string): string {
  let longest = 0;
  for (const m of text.matchAll(/`+/g)) longest = Math.max(longest, m[0].length);
  return "`".repeat(Math.max(3, longest + 1));
}

export function buildBody(input: BodyInput): string {
  const maxBytes = input.maxBytes ?? MAX_BODY_BYTES;
  // Redact the whole output before cutting it, so a cut cannot leave half a secret that no longer
  // matches; redact the finished body again for the parts that did not come from the output.
  const cleaned = redact(input.output.replace(ANSI, "").replace(/\r\n?/g, "\n"), input.redactValues).replace(/\n+$/, "");
  const ok = input.exitCode === 0;
  const head: string[] = [
    marker(input.stack),
    `### \`pulumi preview\` for stack \`${input.stack}\`: ${ok ? "succeeded" : `failed (exit ${input.exitCode})`}`,
    "",
  ];
  const facts: string[] = [];
  if (input.commit) facts.push(`commit \`${input.commit.slice(0, 12)}\``);
  if (input.runUrl) facts.push(`[workflow run](${input.runUrl})`);
  facts.push(`updated ${new Date().toISOString().replace(/\.\d+Z$/, "Z")}`);
  head.push(facts.join(" · "), "");
  const summary = resourceSummary(cleaned);
  if (summary.length > 0) head.push(...summary.map((l) => `- ${l}`), "");
  if (!ok) head.push("The job fails after this comment; the output below shows why.", "");

  const headText = head.join("\n");
  // Room for the wrapper below, the fence lines and the omission note.
  const overhead = Buffer.byteLength(headText, "utf8") + 400;
  const { text: shown, omittedLines } = keepTail(cleaned, Math.max(1000, maxBytes - overhead));
  const fence = fenceFor(shown);
  const note = omittedLines > 0 ? ` (last part; ${omittedLines} earlier lines omitted)` : "";
  const body = [
    headText,
    `<details${ok ? "" : " open"}><summary>Preview output${note}</summary>`,
    "",
    `${fence}text`,
    shown === "" ? "(no output)" : shown,
    fence,
    "",
    "</details>",
    "",
  ].join("\n");
  return redact(body, input.redactValues);
}
