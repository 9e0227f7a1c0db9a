// ringtail: a native forgejo-runner on NixOS, reached over SSH. The key is written to a root-only
// env file, `nixos-rebuild switch` applies the configuration that points the unit at it, and the
// unit is restarted (nixos-rebuild leaves a unit alone when only an EnvironmentFile's content changed).
import * as path from "node:path";
import * as pulumi from "@pulumi/pulumi";
import { remote } from "@pulumi/command";
import type { NixosConfig } from "../lib/config";
import { envFileLine } from "../lib/registryKey";
import { shellCommand, stepHeader, sudoPreflight, sudoStep, shellWord } from "../lib/remoteScript";
import type { RunnerTarget, TargetContext, TargetResult } from "./target";

/** Last line of the env file: the writer installs the file only when it arrived whole. */
const END_MARKER = "#runner-secrets:end";

/** The env file's full text (secret material: only ever passed on stdin). */
export function envFileContent(envVar: string, key: string): string {
  return `# Written by runner-secrets (Pulumi) for the forgejo runner; replaced on every key rotation.\n${envFileLine(envVar, key)}${END_MARKER}\n`;
}

function tempPath(cfg: NixosConfig): string {
  return path.posix.join(path.posix.dirname(cfg.envFile), `.${path.posix.basename(cfg.envFile)}.runner-secrets-tmp`);
}

/**
 * Writes stdin to the env file atomically: into a temp file in the same directory, checked for the
 * end marker (a cut connection leaves it short), then renamed over the old file. An interrupted run
 * leaves the old file untouched; its temp file is removed by the trap or by the next run.
 */
export function writeScript(cfg: NixosConfig, envVar: string): string {
  const dir = path.posix.dirname(cfg.envFile);
  const owner = `${cfg.owner}:${cfg.group}`;
  return shellCommand(
    [
      `runner-secrets: write ${envVar} to ${cfg.envFile}`,
      `(${cfg.fileMode} ${owner}, from stdin via a temp file renamed into place, for ${cfg.unit})`,
    ],
    [
      "set -eu",
      sudoPreflight,
      `dir=${shellWord(dir)}`,
      `file=${shellWord(cfg.envFile)}`,
      `tmp=${shellWord(tempPath(cfg))}`,
      // A directory at the file's path would take the temp file inside it (mv into a directory).
      'if sudo -n test -d "$file"; then',
      '  echo "runner-secrets: $file is a directory; set runner-secrets:nixos.envFile to a file path" >&2',
      "  exit 5",
      "fi",
      // Created root-only when missing; an existing directory is left as it is (never chmod a
      // directory other things live in).
      `sudo -n test -d "$dir" || sudo -n install -d -o ${shellWord(cfg.owner)} -g ${shellWord(cfg.group)} -m ${shellWord(cfg.dirMode)} "$dir"`,
      // A temp file left by an earlier run that was killed outright goes first.
      'sudo -n rm -f "$tmp"',
      'trap "sudo -n rm -f $tmp" EXIT',
      'trap "exit 129" HUP',
      'trap "exit 130" INT',
      'trap "exit 143" TERM',
      // A cut connection must not kill the script (SIGPIPE on its next echo) before the trap runs.
      'trap "" PIPE',
      // umask first: the temp file is never readable by anyone but root, even for a moment.
      'sudo -n sh -c "umask 077 && exec cat > $tmp"',
      `if [ "$(sudo -n tail -n 1 "$tmp")" != ${shellWord(END_MARKER)} ]; then`,
      '  echo "runner-secrets: the new key did not arrive whole (connection cut?); $file is unchanged" >&2',
      "  exit 4",
      "fi",
      `sudo -n chown ${shellWord(owner)} "$tmp"`,
      `sudo -n chmod ${shellWord(cfg.fileMode)} "$tmp"`,
      // -T: replace $file itself, never move into it (a directory created there meanwhile).
      'sudo -n mv -fT "$tmp" "$file"',
      "trap - EXIT",
      'echo "runner-secrets: wrote $file"',
    ].join("\n"),
  );
}

/** Applies the flake, so the unit's EnvironmentFile line (added by the operator) takes effect. */
function rebuildScript(cfg: NixosConfig): string {
  return shellCommand(
    [`runner-secrets: nixos-rebuild switch --flake ${cfg.flake}`, `(applies the EnvironmentFile line for ${cfg.envFile})`],
    [stepHeader, sudoStep("nixos-rebuild", ["nixos-rebuild", "switch", "--flake", cfg.flake])].join("\n"),
  );
}

/** Restarts the runner so it reads the env file again. */
function restartScript(cfg: NixosConfig): string {
  return shellCommand(
    [`runner-secrets: restart ${cfg.unit}`, `(so it reads ${cfg.envFile} again)`],
    [stepHeader, sudoStep("restart", ["systemctl", "restart", cfg.unit])].join("\n"),
  );
}

/** On destroy: removes the file (unless kept) and restarts the runner so no stale key lingers in it. */
function removeScript(cfg: NixosConfig): string {
  const summary = [
    cfg.keepOnDestroy
      ? `runner-secrets: on delete, keep ${cfg.envFile} (nixos.keepOnDestroy)`
      : `runner-secrets: on delete, remove ${cfg.envFile}`,
    `then restart ${cfg.unit}`,
  ];
  const remove = cfg.keepOnDestroy
    ? `echo "runner-secrets: keeping ${cfg.envFile} (nixos.keepOnDestroy)"`
    : `sudo -n rm -f ${shellWord(cfg.envFile)} ${shellWord(tempPath(cfg))}`;
  return shellCommand(summary, [stepHeader, remove, sudoStep("restart", ["systemctl", "restart", cfg.unit])].join("\n"));
}

export class NixosTarget implements RunnerTarget {
  readonly kind = "nixos";

  constructor(
    private readonly cfg: NixosConfig,
    /** Secret; when absent the provider authenticates with the SSH agent. */
    private readonly privateKey?: pulumi.Output<string>,
  ) {}

  deploy(ctx: TargetContext): TargetResult {
    const cfg = this.cfg;
    const connection: remote.CommandArgs["connection"] = {
      host: cfg.host,
      port: cfg.port,
      user: cfg.user,
      // Always pinned: without hostKey the provider accepts any host key.
      hostKey: cfg.hostKey,
      ...(this.privateKey ? { privateKey: this.privateKey } : {}),
      ...(cfg.agentSocketPath ? { agentSocketPath: cfg.agentSocketPath } : {}),
    };
    // The provider would otherwise send earlier output as environment variables (SSH setenv),
    // which a default sshd refuses, failing every update and delete.
    const common = { connection, addPreviousOutputInEnv: false, logging: "stdoutAndStderr" as const };

    // A new key is an in-place update, so the file is never absent during a rotation. A new place
    // (host, port, path) replaces the writer, and deletes first: the old delete removes the old
    // path, which may be the very file the new one writes (another name or port of the same
    // machine, or `pulumi up --replace`), so it must run before the new create, not after it.
    const writer = new remote.Command(
      `${ctx.name}-env-file`,
      {
        ...common,
        create: writeScript(cfg, ctx.envVar),
        update: writeScript(cfg, ctx.envVar),
        delete: removeScript(cfg),
        stdin: pulumi.secret(ctx.key.value.apply((k) => envFileContent(ctx.envVar, k))),
        triggers: [cfg.host, cfg.port, cfg.envFile],
      },
      { parent: ctx.parent, dependsOn: ctx.dependsOn, deleteBeforeReplace: true },
    );

    // Needed once (and when the flake or file moves), not on every rotation.
    const rebuild = new remote.Command(
      `${ctx.name}-nixos-rebuild`,
      { ...common, create: rebuildScript(cfg), triggers: [cfg.host, cfg.flake, cfg.envFile] },
      { parent: ctx.parent, dependsOn: [writer] },
    );

    // Runs again after every write that changes what the daemon reads (a new key, a renamed
    // variable, a new writer: its delete restarted the unit without the file) and after a rebuild.
    const restart = new remote.Command(
      `${ctx.name}-restart`,
      { ...common, create: restartScript(cfg), triggers: [ctx.key.digest, ctx.envVar, writer.id, rebuild.id, cfg.unit] },
      { parent: ctx.parent, dependsOn: [writer, rebuild] },
    );

    return {
      location: pulumi.output(`${cfg.host}:${cfg.envFile}`),
      // Known only once the restarted runner has the key: a failed `up` never claims it.
      keyDigest: pulumi.all([restart.id, ctx.key.digest]).apply(([, digest]) => digest),
    };
  }
}
