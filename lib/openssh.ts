// OpenSSH client options for a host whose key is pinned: only that key is trusted (no global or
// user known_hosts, no key learning), no ssh_config, no password prompts, nothing of the local
// environment sent, no connection sharing. Used by `verify` and by the tests' SSH runner.

/** The known_hosts line that pins `hostKey` (authorized_keys format) for host and port. */
export function knownHostsLine(host: string, port: number, hostKey: string): string {
  const key = hostKey.trim().split(/\s+/).slice(0, 2).join(" ");
  if (!/^(ssh-|ecdsa-|sk-)\S+ [A-Za-z0-9+/=]+$/.test(key))
    throw new Error(`hostKey is not an authorized_keys-format public key: ${hostKey}`);
  return `${port === 22 ? host : `[${host}]:${port}`} ${key}\n`;
}

/** `ssh` options trusting only the keys in `knownHostsFile` (a file holding knownHostsLine). */
export function pinnedSshOptions(knownHostsFile: string, connectTimeoutSeconds: number): string[] {
  return [
    "-F",
    "/dev/null",
    "-T",
    ...[
      "BatchMode=yes",
      "StrictHostKeyChecking=yes",
      `UserKnownHostsFile=${knownHostsFile}`,
      "GlobalKnownHostsFile=/dev/null",
      "CheckHostIP=no",
      "UpdateHostKeys=no",
      "PasswordAuthentication=no",
      "KbdInteractiveAuthentication=no",
      "SendEnv=-*",
      "ControlMaster=no",
      "ControlPath=none",
      `ConnectTimeout=${connectTimeoutSeconds}`,
    ].flatMap((o) => ["-o", o]),
  ];
}
