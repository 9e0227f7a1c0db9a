// Reading an env file the way systemd's EnvironmentFile= does.
//
// parseSystemdEnvFile ports the state machine of systemd's parse_env_file_internal (src/basic/
// env-file.c, v252), which load_env_file uses for EnvironmentFile=: `#`/`;` comment lines (a
// backslash at the end continues a comment), KEY=VALUE with whitespace around the key and before the
// value skipped, '…' literal, "…" with \" \\ \` \$ escapes and backslash-newline continuation,
// unquoted values with backslash escapes and trailing whitespace stripped, lines without "=" ignored,
// assignments with an invalid name ignored, the last assignment of a name wins.
//
// systemdGeneratorParse cross-checks with systemd's own code where it can run without PID 1: the
// user environment generator reads environment.d files with the same parser (and then expands
// $VARS, so compare only values without "$").

import { execFileSync } from "node:child_process";
import * as fs from "node:fs";
import * as os from "node:os";
import * as path from "node:path";

const NEWLINE = "\n\r";
const WHITESPACE = " \t\n\r";
const COMMENTS = "#;";
const SHELL_NEED_ESCAPE = '"\\`$';
const envNameRe = /^[A-Za-z_][A-Za-z0-9_]*$/;

type State =
  | "PRE_KEY"
  | "KEY"
  | "PRE_VALUE"
  | "VALUE"
  | "VALUE_ESCAPE"
  | "SINGLE_QUOTE_VALUE"
  | "DOUBLE_QUOTE_VALUE"
  | "DOUBLE_QUOTE_VALUE_ESCAPE"
  | "COMMENT"
  | "COMMENT_ESCAPE";

export interface ParsedEnv {
  vars: Record<string, string>;
  /** Assignments systemd would ignore (invalid name), for diagnostics. */
  ignored: string[];
}

export function parseSystemdEnvFile(text: string): ParsedEnv {
  const vars: Record<string, string> = {};
  const ignored: string[] = [];
  let state: State = "PRE_KEY";
  let key = "";
  let value = "";
  // Length of value up to its last non-whitespace (or escaped) char, for stripping trailing blanks.
  let lastValueNonWs = 0;
  let keyNonWsLen = 0;

  const push = () => {
    const k = key.slice(0, keyNonWsLen);
    if (envNameRe.test(k)) vars[k] = value;
    else ignored.push(k);
    key = "";
    value = "";
    keyNonWsLen = 0;
    lastValueNonWs = 0;
  };

  for (const c of text) {
    switch (state) {
      case "PRE_KEY":
        if (COMMENTS.includes(c)) state = "COMMENT";
        else if (!WHITESPACE.includes(c)) {
          state = "KEY";
          key = c;
          keyNonWsLen = 1;
        }
        break;
      case "KEY":
        if (NEWLINE.includes(c)) {
          state = "PRE_KEY";
          key = "";
          keyNonWsLen = 0;
        } else if (c === "=") {
          state = "PRE_VALUE";
          value = "";
          lastValueNonWs = 0;
        } else {
          key += c;
          if (!WHITESPACE.includes(c)) keyNonWsLen = key.length;
        }
        break;
      case "PRE_VALUE":
        if (NEWLINE.includes(c)) {
          state = "PRE_KEY";
          value = value.slice(0, lastValueNonWs);
          push();
        } else if (c === "'") state = "SINGLE_QUOTE_VALUE";
        else if (c === '"') state = "DOUBLE_QUOTE_VALUE";
        else if (c === "\\") state = "VALUE_ESCAPE";
        else if (!WHITESPACE.includes(c)) {
          state = "VALUE";
          value += c;
          lastValueNonWs = value.length;
        }
        break;
      case "VALUE":
        if (NEWLINE.includes(c)) {
          state = "PRE_KEY";
          value = value.slice(0, lastValueNonWs);
          push();
        } else if (c === "\\") state = "VALUE_ESCAPE";
        else {
          value += c;
          if (!WHITESPACE.includes(c)) lastValueNonWs = value.length;
        }
        break;
      case "VALUE_ESCAPE":
        state = "VALUE";
        if (!NEWLINE.includes(c)) {
          value += c;
          lastValueNonWs = value.length;
        }
        break;
      case "SINGLE_QUOTE_VALUE":
        if (c === "'") state = "PRE_VALUE";
        else {
          value += c;
          lastValueNonWs = value.length;
        }
        break;
      case "DOUBLE_QUOTE_VALUE":
        if (c === '"') state = "PRE_VALUE";
        else if (c === "\\") state = "DOUBLE_QUOTE_VALUE_ESCAPE";
        else {
          value += c;
          lastValueNonWs = value.length;
        }
        break;
      case "DOUBLE_QUOTE_VALUE_ESCAPE":
        state = "DOUBLE_QUOTE_VALUE";
        if (SHELL_NEED_ESCAPE.includes(c)) value += c;
        else if (c === "\n") {
          /* continuation */
        } else value += "\\" + c;
        lastValueNonWs = value.length;
        break;
      case "COMMENT":
        if (c === "\\") state = "COMMENT_ESCAPE";
        else if (NEWLINE.includes(c)) state = "PRE_KEY";
        break;
      case "COMMENT_ESCAPE":
        state = "COMMENT";
        break;
    }
  }
  if (
    state === "PRE_VALUE" ||
    state === "VALUE" ||
    state === "VALUE_ESCAPE" ||
    state === "SINGLE_QUOTE_VALUE" ||
    state === "DOUBLE_QUOTE_VALUE" ||
    state === "DOUBLE_QUOTE_VALUE_ESCAPE"
  ) {
    if (state === "VALUE") value = value.slice(0, lastValueNonWs);
    push();
  }
  return { vars, ignored };
}

const SYSTEMD_ENV_GENERATOR = "/usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator";

/**
 * The variables systemd's own parser reads from `text` (via the environment.d generator), or null
 * when the generator is not installed. Only names set in the file are returned; values are
 * unquoted from the generator's output when it had to quote them.
 */
export function systemdGeneratorParse(text: string): Record<string, string> | null {
  if (!fs.existsSync(SYSTEMD_ENV_GENERATOR)) return null;
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), "rs-envd-"));
  try {
    fs.mkdirSync(path.join(dir, "environment.d"));
    fs.writeFileSync(path.join(dir, "environment.d", "99-under-test.conf"), text, { mode: 0o600 });
    // Empty environment and no other config dirs of ours: what it prints is what it parsed, plus
    // whatever the machine's /etc and /usr environment.d set (the baseline, subtracted below).
    const run = (xdg: string) => execFileSync(SYSTEMD_ENV_GENERATOR, [], { env: { XDG_CONFIG_HOME: xdg }, encoding: "utf8" });
    const parse = (out: string) => {
      const vars: Record<string, string> = {};
      for (const line of out.split("\n")) {
        const eq = line.indexOf("=");
        if (eq <= 0) continue;
        let v = line.slice(eq + 1);
        if (v.startsWith('"') && v.endsWith('"')) v = v.slice(1, -1).replace(/\\(.)/g, "$1");
        vars[line.slice(0, eq)] = v;
      }
      return vars;
    };
    const empty = path.join(dir, "empty");
    fs.mkdirSync(empty);
    const baseline = parse(run(empty));
    const withFile = parse(run(dir));
    return Object.fromEntries(Object.entries(withFile).filter(([k, v]) => baseline[k] !== v));
  } finally {
    fs.rmSync(dir, { recursive: true, force: true });
  }
}
