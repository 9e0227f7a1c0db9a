#!/usr/bin/env bash
# Installs what the real SSH test host (test/support/sshHost.ts) needs:
# sshd + ssh client, the login shells under test (fish is ringtail's),
# sudo, and procps. Idempotent: apt is touched only when something is missing.
set -euo pipefail

need=()
have() { command -v "$1" >/dev/null 2>&1 || [ -x "$2" ]; }
have sshd /usr/sbin/sshd       || need+=(openssh-server)
have ssh /usr/bin/ssh          || need+=(openssh-client)
have fish /usr/bin/fish        || need+=(fish)
have zsh /usr/bin/zsh          || need+=(zsh)
have dash /usr/bin/dash        || need+=(dash)
have sudo /usr/bin/sudo        || need+=(sudo)
have visudo /usr/sbin/visudo   || need+=(sudo)
have pkill /usr/bin/pkill      || need+=(procps)
have ssh-keygen /usr/bin/ssh-keygen || need+=(openssh-client)
# systemd's own env-file parser (its environment.d generator runs without PID 1), to cross-check
# how the unit's EnvironmentFile= reads the key file.
[ -x /usr/lib/systemd/user-environment-generators/30-systemd-environment-d-generator ] || need+=(systemd)

if [ "${#need[@]}" -gt 0 ]; then
  if [ "$(id -u)" -ne 0 ]; then
    echo "ssh-host.sh: missing ${need[*]} and not root; cannot install" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  log=$(mktemp)
  # Lock timeout: another apt run may be in progress on this machine.
  # --force-confold: keep any existing config files untouched.
  # Output goes to a log that is shown only on failure (apt is noisy).
  if ! { apt-get -o DPkg::Lock::Timeout=600 update -qq &&
         apt-get -o DPkg::Lock::Timeout=600 install -y -qq --no-install-recommends \
           -o Dpkg::Options::=--force-confold "${need[@]}"; } >"$log" 2>&1; then
    cat "$log" >&2
    rm -f "$log"
    echo "ssh-host.sh: installing ${need[*]} failed" >&2
    exit 1
  fi
  rm -f "$log"
fi

# sshd's privilege-separation directory (normally created by systemd).
mkdir -p /run/sshd
chmod 0755 /run/sshd
