#!/usr/bin/env bash
# Installs a real (if minimal) API server for test/integration/indri.apiserver.test.ts: etcd from Debian,
# kube-apiserver and kube-controller-manager (garbage collector, Deployment and ReplicaSet
# controllers) built from the k8s.io/kubernetes module via the Go module proxy, plus ESO's CRDs
# from the external-secrets Go module (the same v0.16.2 the @kubernetes-models/external-secrets
# package was generated from). Nothing downloaded here is committed. Idempotent.
#
# `go install k8s.io/kubernetes/cmd/kube-apiserver@vX` refuses ("The go.mod file for the module
# providing named packages contains one or more replace directives"): the module points its
# staging repos (k8s.io/api, …) at ./staging, which the module zip does not contain. So: copy the
# module, drop those replaces in favour of the published v0.X.Y staging modules, drop go.work and
# vendor/, and build with -mod=mod.
set -euo pipefail

# The Go toolchain's usual place when it is not on PATH.
command -v go >/dev/null || export PATH="/usr/local/go/bin:$PATH"

K8S_VERSION="${K8S_VERSION:-1.33.4}"
ESO_VERSION="${ESO_VERSION:-0.16.2}"
PREFIX="${RS_APISERVER_PREFIX:-/opt/runner-secrets-apiserver}"
BIN="$PREFIX/kube-apiserver-v$K8S_VERSION"
KCM="$PREFIX/kube-controller-manager-v$K8S_VERSION"

if ! command -v etcd >/dev/null; then
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends etcd-server
fi
etcd --version | sed -n 1p

if [ ! -x "$BIN" ] || [ ! -x "$KCM" ]; then
  command -v go >/dev/null || { echo "setup: needs Go (https://go.dev/dl) for kube-apiserver" >&2; exit 1; }
  work="$(mktemp -d)"
  trap 'rm -rf "$work"' EXIT
  mod="$(GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@v$K8S_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
  cp -r "$mod" "$work/src"
  chmod -R u+w "$work/src"
  cd "$work/src"
  rm -rf go.work go.work.sum vendor
  staging="v0.${K8S_VERSION#1.}"
  for m in $(go mod edit -json | grep -o '"Path": "./staging/src/k8s.io/[^"]*"' | sed 's#.*staging/src/##; s#"$##'); do
    go mod edit -dropreplace="$m" -require="$m@$staging"
  done
  if grep -q '=> ./staging' go.mod; then echo "setup: replace directives left in go.mod" >&2; exit 1; fi
  mkdir -p "$PREFIX"
  ldflags="-X k8s.io/component-base/version.gitVersion=v$K8S_VERSION -X k8s.io/component-base/version.gitMajor=1 -X k8s.io/component-base/version.gitMinor=${K8S_VERSION#1.}"
  GOWORK=off GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$BIN.tmp" ./cmd/kube-apiserver
  GOWORK=off GOFLAGS=-mod=mod go build -trimpath -ldflags "$ldflags" -o "$KCM.tmp" ./cmd/kube-controller-manager
  mv "$BIN.tmp" "$BIN"
  mv "$KCM.tmp" "$KCM"
  cd /
fi
ln -sf "$BIN" "$PREFIX/kube-apiserver"
ln -sf "$KCM" "$PREFIX/kube-controller-manager"
"$PREFIX/kube-apiserver" --version
"$PREFIX/kube-controller-manager" --version

eso="$(cd / && GOFLAGS=-mod=mod go mod download -json "github.com/external-secrets/external-secrets@v$ESO_VERSION" | sed -n 's/^[[:space:]]*"Dir": "\(.*\)",$/\1/p')"
ln -sfn "$eso/config/crds/bases" "$PREFIX/eso-crds"
ls "$PREFIX/eso-crds/external-secrets.io_externalsecrets.yaml"
echo "setup: ok ($PREFIX)"
