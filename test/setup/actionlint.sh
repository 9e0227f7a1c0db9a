#!/usr/bin/env bash
# Lints the Forgejo workflows with actionlint (they use GitHub Actions syntax), installing
# actionlint v1.7.12 with `go install` when it is missing or another version.
#   test/setup/actionlint.sh            install if needed, print its path, lint .forgejo/workflows/*.yaml
set -euo pipefail
cd "$(dirname "$0")/../.."

VERSION=1.7.12
# The Go toolchain's usual place when it is not on PATH.
if ! command -v go >/dev/null 2>&1 && [ -x /usr/local/go/bin/go ]; then
  export PATH="/usr/local/go/bin:$PATH"
fi
bin_dir="$(go env GOBIN 2>/dev/null || true)"
[ -n "$bin_dir" ] || bin_dir="$(go env GOPATH 2>/dev/null || echo "$HOME/go")/bin"
actionlint="$bin_dir/actionlint"

if ! { [ -x "$actionlint" ] && "$actionlint" -version 2>/dev/null | sed -n 1p | grep -qx "v\?$VERSION"; }; then
  if ! command -v go >/dev/null 2>&1; then
    echo "actionlint.sh: go is needed to install actionlint v$VERSION" >&2
    exit 1
  fi
  echo "actionlint.sh: installing actionlint v$VERSION into $bin_dir" >&2
  GOBIN="$bin_dir" go install "github.com/rhysd/actionlint/cmd/actionlint@v$VERSION"
fi
echo "actionlint: $actionlint ($("$actionlint" -version | sed -n 1p))"

# actionlint checks the `run:` scripts with shellcheck when it is on PATH; without it those go unchecked.
if ! command -v shellcheck >/dev/null 2>&1; then
  if [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo "actionlint.sh: installing shellcheck" >&2
    DEBIAN_FRONTEND=noninteractive apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends shellcheck >&2
  else
    echo "actionlint.sh: shellcheck not found; run: scripts are not checked" >&2
  fi
fi

shopt -s nullglob
workflows=(.forgejo/workflows/*.yaml .forgejo/workflows/*.yml)
if [ "${#workflows[@]}" -eq 0 ]; then
  echo "actionlint.sh: no workflows under .forgejo/workflows" >&2
  exit 1
fi
# `k8s` is the label of the indri runner; actionlint only knows GitHub's hosted labels.
cat > "${TMPDIR:-/tmp}/actionlint-config.$$.yaml" <<'CONFIG'
self-hosted-runner:
  labels:
    - k8s
    - nix-container-builder
CONFIG
trap 'rm -f "${TMPDIR:-/tmp}/actionlint-config.$$.yaml"' EXIT
"$actionlint" -config-file "${TMPDIR:-/tmp}/actionlint-config.$$.yaml" "${workflows[@]}"
echo "actionlint: ${#workflows[@]} workflow(s) OK"
