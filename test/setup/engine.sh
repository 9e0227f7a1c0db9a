#!/usr/bin/env bash
# Builds the real Pulumi engine for the e2e tier from the Go module proxy: the `pulumi` CLI, the
# kubernetes provider (indri) and the ESO controller. Each lands in a cache directory outside the
# repo keyed by its version; `bin/` there gathers them with the stand-in plugins of
# test/e2e/standins/ (the providers the proxy does not serve). Idempotent: a binary already built
# for its version is kept. Nothing downloaded is committed.
#   engine.sh            build what is missing, then (re)write bin/
#   engine.sh --print    print the bin/ directory (what `npm run -s e2e:bin` shows)
set -euo pipefail
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

PULUMI_VERSION=3.276.0
# The only pulumi-kubernetes provider build the proxy serves: this pseudo-version is v4.25.0.
K8S_PROVIDER_VERSION=4.25.0
K8S_PROVIDER_MODULE_VERSION=v4.0.0-20260115033456-f47bc2d6f199
ESO_VERSION=0.16.2

CACHE="${RS_E2E_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/runner-secrets-e2e}"
BIN="$CACHE/bin"
if [ "${1:-}" = "--print" ]; then echo "$BIN"; exit 0; fi
REPO="$(cd "$(dirname "$0")/../.." && pwd)"
mkdir -p "$CACHE"

modDir() { (cd / && GOFLAGS=-mod=mod go mod download -json "$1" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p'); }

# Copies the replace directives of a module's go.mod that point at other modules (a wrapper
# module does not inherit them; directory replaces are the module's own monorepo and are dropped).
copyReplaces() {
  go mod edit -json "$1" | python3 -c '
import json, sys
for r in json.load(sys.stdin).get("Replace") or []:
    old, new = r["Old"], r["New"]
    if new["Path"].startswith("."):
        continue
    print(old["Path"] + ("@" + old["Version"] if old.get("Version") else "") + "=" + new["Path"] + "@" + new["Version"])
' | while read -r rep; do go mod edit -replace="$rep"; done
}

build_pulumi() {
  local out="$CACHE/pulumi-v$PULUMI_VERSION/pulumi"
  [ -x "$out" ] && return 0
  echo "engine.sh: building pulumi v$PULUMI_VERSION (about 4 min cold)" >&2
  local work pkg sdk
  work="$(mktemp -d)"
  pkg="$(modDir "github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION")"
  sdk="$(modDir "github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION")"
  mkdir -p "$(dirname "$out")"
  (
    cd "$work"
    go mod init rs-e2e/pulumi >/dev/null 2>&1
    go mod edit -require="github.com/pulumi/pulumi/pkg/v3@v$PULUMI_VERSION" \
      -require="github.com/pulumi/pulumi/sdk/v3@v$PULUMI_VERSION"
    copyReplaces "$pkg/go.mod"
    copyReplaces "$sdk/go.mod"
    # Seeded from upstream: the sum database may not know every module.
    cat "$pkg/go.sum" "$sdk/go.sum" | sort -u >go.sum
    GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" \
      -ldflags "-X github.com/pulumi/pulumi/sdk/v3/go/common/version.Version=v$PULUMI_VERSION" \
      github.com/pulumi/pulumi/pkg/v3/cmd/pulumi
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

build_kubernetes() {
  local out="$CACHE/kubernetes-v$K8S_PROVIDER_VERSION/pulumi-resource-kubernetes"
  [ -x "$out" ] && return 0
  echo "engine.sh: building pulumi-resource-kubernetes v$K8S_PROVIDER_VERSION (about 10 min cold)" >&2
  local work mod
  work="$(mktemp -d)"
  mod="$(modDir "github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION")"
  mkdir -p "$(dirname "$out")"
  (
    cd "$work"
    # The module's main embeds schema-embed.json and terraform-mapping-embed.json, which its
    # `go generate` step writes and the module zip does not carry: a main of our own serves the
    # schema files the module does carry, with the version stamped in as generate.go would.
    go mod init rs-e2e/kubernetes >/dev/null 2>&1
    go mod edit -require="github.com/pulumi/pulumi-kubernetes/provider/v4@$K8S_PROVIDER_MODULE_VERSION"
    copyReplaces "$mod/go.mod"
    cp "$mod/go.sum" go.sum && chmod u+w go.sum
    python3 - "$mod/cmd/pulumi-resource-kubernetes" "$K8S_PROVIDER_VERSION" <<'PY'
import json, sys
src, version = sys.argv[1], sys.argv[2]
schema = json.load(open(f"{src}/schema.json"))
schema["version"] = version
json.dump(schema, open("schema-embed.json", "w"), separators=(",", ":"))
json.dump(json.load(open(f"{src}/terraform-mapping.json")), open("terraform-mapping-embed.json", "w"), separators=(",", ":"))
PY
    cat >main.go <<'GO'
package main

import (
	_ "embed"

	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/provider"
	"github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version"
)

//go:embed schema-embed.json
var schema []byte

//go:embed terraform-mapping-embed.json
var mapping []byte

func main() { provider.Serve("kubernetes", version.Version, schema, mapping) }
GO
    GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" \
      -ldflags "-X github.com/pulumi/pulumi-kubernetes/provider/v4/pkg/version.Version=$K8S_PROVIDER_VERSION" .
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

build_eso() {
  local out="$CACHE/eso-v$ESO_VERSION/eso"
  [ -x "$out" ] && return 0
  echo "engine.sh: building the ESO v$ESO_VERSION controller (about 2 min cold)" >&2
  local work mod
  work="$(mktemp -d)"
  mod="$(modDir "github.com/external-secrets/external-secrets@v$ESO_VERSION")"
  mkdir -p "$(dirname "$out")"
  cp -r "$mod" "$work/src"
  chmod -R u+w "$work/src"
  (
    cd "$work/src"
    # The controller as released, with only the 1Password provider (and the two generators that
    # need no cloud SDK) registered: the full build pulls every cloud SDK and takes 6-9 min.
    cat >pkg/provider/register/register.go <<'GO'
package register

import _ "github.com/external-secrets/external-secrets/pkg/provider/onepassword"
GO
    cat >pkg/generator/register/register.go <<'GO'
package register

import (
	_ "github.com/external-secrets/external-secrets/pkg/generator/password"
	_ "github.com/external-secrets/external-secrets/pkg/generator/uuid"
)
GO
    rm -rf vendor
    GOWORK=off GOFLAGS=-mod=mod go build -trimpath -o "$out.tmp" .
  )
  mv "$out.tmp" "$out"
  rm -rf "$work"
}

write_bin() {
  mkdir -p "$BIN"
  ln -sfn "$CACHE/pulumi-v$PULUMI_VERSION/pulumi" "$BIN/pulumi"
  ln -sfn "$CACHE/kubernetes-v$K8S_PROVIDER_VERSION/pulumi-resource-kubernetes" "$BIN/pulumi-resource-kubernetes"
  ln -sfn "$CACHE/eso-v$ESO_VERSION/eso" "$BIN/eso"
  # The stand-ins for the plugins the proxy does not serve: this checkout's own TypeScript.
  local name
  for name in command onepassword; do
    cat >"$BIN/.pulumi-resource-$name.tmp" <<SH
#!/bin/sh
# STAND-IN plugin for the $name provider (see $REPO/test/e2e/plugins/$name.ts).
exec node --import "$REPO/node_modules/tsx/dist/loader.mjs" "$REPO/test/e2e/plugins/$name.ts" "\$@"
SH
    chmod 0755 "$BIN/.pulumi-resource-$name.tmp"
    mv -f "$BIN/.pulumi-resource-$name.tmp" "$BIN/pulumi-resource-$name"
  done
}

case "${1:-all}" in
  pulumi) build_pulumi ;;
  kubernetes) build_kubernetes ;;
  eso) build_eso ;;
  all)
    build_pulumi
    build_kubernetes
    build_eso
    write_bin
    "$BIN/pulumi" version >&2
    echo "engine.sh: ok ($BIN)" >&2
    ;;
  *) echo "engine.sh: unknown step $1" >&2; exit 2 ;;
esac
