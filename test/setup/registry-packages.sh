#!/usr/bin/env bash
# Installs what test/support/registry.ts needs to run a real OCI registry:
# the CNCF distribution registry, htpasswd (bcrypt) and the openssl CLI.
# Idempotent: does nothing when all three are present; runs `apt-get update`
# only when something has to be installed.
set -euo pipefail

missing=()
command -v docker-registry >/dev/null 2>&1 || [ -x /usr/bin/docker-registry ] || missing+=(docker-registry)
command -v htpasswd >/dev/null 2>&1 || missing+=(apache2-utils)
command -v openssl >/dev/null 2>&1 || missing+=(openssl)

if [ "${#missing[@]}" -eq 0 ]; then
  exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then
    SUDO=sudo
  else
    echo "registry-packages.sh: need root (or sudo) to install: ${missing[*]}" >&2
    exit 1
  fi
else
  SUDO=
fi

echo "registry-packages.sh: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
# --no-install-recommends: the registry package otherwise pulls in nothing useful here.
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >&2
