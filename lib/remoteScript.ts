// Command text for remote.Command that means the same under fish, bash, zsh and sh.
//
// The command provider sends the text as one SSH exec request, so the remote user's login shell
// (fish on ringtail) parses it first. The text is therefore always `/bin/sh -c '<script>'`: a
// single-quoted word reads identically in all four shells as long as it holds no single quote and
// no backslash (fish treats \' and \\ as escapes inside single quotes, POSIX shells do not).
// Everything else happens in POSIX sh.

export class UnsafeScriptError extends Error {}

// Values embedded in scripts come from validated config; this is the last line of defence.
const safeWordRe = /^[A-Za-z0-9._/:+=?&@#%,-]+$/;

/** A value as one double-quoted sh word; refuses anything that could be parsed, not just read. */
export function shellWord(value: string): string {
  if (!safeWordRe.test(value)) throw new UnsafeScriptError(`refusing to put ${JSON.stringify(value)} into a remote script`);
  return `"${value}"`;
}

/**
 * Wraps a POSIX sh script as command text that fish, bash, zsh and sh all pass to sh unchanged.
 * `summary` becomes the script's first lines (comments): `pulumi preview` shows only the first
 * three lines of a command, each cut at about 150 characters, so they say what the script does
 * and where, most important first.
 */
export function shellCommand(summary: string | string[], script: string): string {
  const lines = typeof summary === "string" ? [summary] : summary;
  if (lines.some((l) => /[\n\r]/.test(l))) throw new UnsafeScriptError("a script summary line must be one line");
  const text = `${lines.map((l) => `# ${l}\n`).join("")}${script.trim()}\n`;
  if (text.includes("'") || text.includes("\\")) {
    throw new UnsafeScriptError("a remote script must contain no single quote and no backslash");
  }
  return `/bin/sh -c '${text}'`;
}

/** Fails early, with words an operator can act on, when sudo would ask for a password. */
export const sudoPreflight = [
  "if ! sudo -n true 2>/dev/null; then",
  '  echo "runner-secrets: passwordless sudo is required: sudo -n failed for user $(id -un) on $(uname -n); give it a NOPASSWD sudoers rule" >&2',
  "  exit 3",
  "fi",
].join("\n");

/**
 * Runs one privileged step, keeping its output quiet on success (last lines only) and, on failure,
 * naming the step and showing the tail of its output before exiting with its status.
 */
export function sudoStep(label: string, argv: string[], tailLines = 40): string {
  const shown = argv.join(" ");
  const cmd = argv.map(shellWord).join(" ");
  return [
    `echo "runner-secrets: ${label}: sudo -n ${shown}"`,
    `if sudo -n ${cmd} >"$log" 2>&1; then`,
    `  tail -n 5 "$log"`,
    "else",
    "  rc=$?",
    `  echo "runner-secrets: step ${label} failed (exit $rc): sudo -n ${shown}; last ${tailLines} lines of its output:" >&2`,
    `  tail -n ${tailLines} "$log" >&2`,
    '  exit "$rc"',
    "fi",
  ].join("\n");
}

/** Script header for scripts that use sudoStep: strict mode, sudo check, a private log file. */
export const stepHeader = [
  "set -eu",
  sudoPreflight,
  'log="$(mktemp)"',
  'trap "rm -f $log" EXIT',
  // A cut connection must not kill the script (SIGPIPE) before the trap removes the log.
  'trap "" PIPE',
].join("\n");
