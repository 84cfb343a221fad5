#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache outside the clone:
#   kube-apiserver, kube-controller-manager, kube-scheduler, kubectl  (k8s.io/kubernetes)
#   etcd                                                              (go.etcd.io/etcd/server/v3)
#   kwok                                                              (sigs.k8s.io/kwok)
#   helm                                                              (helm.sh/helm/v3)
# Versions come from hack/versions.env; each component lands in its own directory keyed by
# version, with a stamp written last, so a second run builds nothing and a version bump
# rebuilds only what changed.
#
# Usage: hack/cluster-bin.sh [--print-dir]
#   --print-dir   print the directory holding the binaries (building first if needed)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
bindir="$cache/bin"
quiet=false
[[ "${1:-}" == "--print-dir" ]] && quiet=true

say() { $quiet || echo "cluster-bin: $*" >&2; }
die() { echo "cluster-bin: error: $*" >&2; exit 1; }

# --- Go toolchain check -------------------------------------------------------
check_go() {
  command -v go >/dev/null 2>&1 ||
    die "Go is not installed. The control plane is built from Go modules; install Go >= ${GO_MIN_VERSION} (https://go.dev/doc/install or your distribution's golang package)."
  local have
  have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')"
  [[ -n "$have" ]] || die "could not read the Go version from 'go env GOVERSION'."
  if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
    die "Go $have is too old: Kubernetes ${KUBERNETES_VERSION} needs Go >= ${GO_MIN_VERSION}. Install a newer Go and run again."
  fi
}

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"

# build_in_wrapper <dir> <go.mod body> <ldflags> <out dir> <pkg>...
# Builds packages from a throw-away wrapper module whose go.mod pins the upstream module.
build_in_wrapper() {
  local wrap="$1" gomod="$2" ldflags="$3" out="$4"
  shift 4
  mkdir -p "$wrap" "$out.tmp"
  printf '%s\n' "$gomod" >"$wrap/go.mod"
  printf 'package wrapper\n' >"$wrap/doc.go"
  local pkg
  for pkg in "$@"; do
    local name="${pkg##*/}"
    [[ "$name" == v[0-9]* ]] && name="$(basename "$(dirname "$pkg")")"
    say "  go build $pkg"
    (cd "$wrap" && go build -trimpath -ldflags "$ldflags" -o "$out.tmp/${OUT_NAME:-$name}" "$pkg")
  done
}

finish() { # <out dir>: atomically move the fresh build into place and stamp it
  local out="$1"
  rm -rf "$out"
  mv "$out.tmp" "$out"
  date -u +%Y-%m-%dT%H:%M:%SZ >"$out/.complete"
}

build_kubernetes() {
  local v="$KUBERNETES_VERSION" out="$bindir/kubernetes-$KUBERNETES_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  check_go
  say "building Kubernetes $v (kube-apiserver, kube-controller-manager, kube-scheduler, kubectl); a cold build takes a while"
  local wrap="$cache/build/kubernetes-$v"
  local minor="${v#v1.}"; minor="${minor%%.*}"
  local staging="v0.${v#v1.}"
  # Every k8s.io/* v0.0.0 requirement of k8s.io/kubernetes is a staging module that upstream
  # replaces with a local path; point each at its published tag instead.
  local upstream_mod
  upstream_mod="$(cd "$cache" && GOFLAGS=-mod=mod go mod download -json "k8s.io/kubernetes@$v" | sed -n 's/.*"GoMod": "\(.*\)".*/\1/p')"
  [[ -f "$upstream_mod" ]] || die "could not download k8s.io/kubernetes@$v from the Go module proxy."
  local replaces
  replaces="$(grep -E '^\s+k8s\.io/[a-z0-9-]+ v0\.0\.0$' "$upstream_mod" | awk -v s="$staging" '{print "\t" $1 " v0.0.0 => " $1 " " s}' | sort -u)"
  [[ -n "$replaces" ]] || die "found no staging modules in k8s.io/kubernetes@$v go.mod."
  local gomod
  gomod="module modelplane.local/kubernetes-wrapper

go 1.26.0

require k8s.io/kubernetes $v

replace (
$replaces
)"
  local date ld=""
  date="$(date -u +%Y-%m-%dT%H:%M:%SZ)"
  local p
  for p in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
    ld+=" -X $p.gitVersion=$v -X $p.gitMajor=1 -X $p.gitMinor=$minor -X $p.gitTreeState=clean -X $p.buildDate=$date"
  done
  rm -rf "$out.tmp"
  build_in_wrapper "$wrap" "$gomod" "-s -w$ld" "$out" \
    k8s.io/kubernetes/cmd/kube-apiserver \
    k8s.io/kubernetes/cmd/kube-controller-manager \
    k8s.io/kubernetes/cmd/kube-scheduler \
    k8s.io/kubernetes/cmd/kubectl
  finish "$out"
  say "Kubernetes $v done"
}

build_etcd() {
  local v="$ETCD_VERSION" out="$bindir/etcd-$ETCD_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  check_go
  say "building etcd $v"
  local gomod="module modelplane.local/etcd-wrapper

go 1.26.0

require go.etcd.io/etcd/server/v3 $v"
  rm -rf "$out.tmp"
  OUT_NAME=etcd build_in_wrapper "$cache/build/etcd-$v" "$gomod" \
    "-s -w -X go.etcd.io/etcd/api/v3/version.GitSHA=$v" "$out" go.etcd.io/etcd/server/v3
  finish "$out"
  say "etcd $v done"
}

build_kwok() {
  local v="$KWOK_VERSION" out="$bindir/kwok-$KWOK_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  check_go
  say "building kwok $v"
  local gomod="module modelplane.local/kwok-wrapper

go 1.26.0

require sigs.k8s.io/kwok $v"
  rm -rf "$out.tmp"
  build_in_wrapper "$cache/build/kwok-$v" "$gomod" \
    "-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=$v" "$out" sigs.k8s.io/kwok/cmd/kwok
  finish "$out"
  say "kwok $v done"
}

build_helm() {
  local v="$HELM_VERSION" out="$bindir/helm-$HELM_VERSION"
  [[ -f "$out/.complete" ]] && return 0
  check_go
  say "building helm $v"
  local kminor="${KUBERNETES_VERSION#v1.}"; kminor="${kminor%%.*}"
  local gomod="module modelplane.local/helm-wrapper

go 1.26.0

require helm.sh/helm/v3 $v"
  rm -rf "$out.tmp"
  build_in_wrapper "$cache/build/helm-$v" "$gomod" \
    "-s -w -X helm.sh/helm/v3/internal/version.version=$v -X helm.sh/helm/v3/internal/version.gitTreeState=clean -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMajor=1 -X helm.sh/helm/v3/pkg/chartutil.k8sVersionMinor=$kminor" \
    "$out" helm.sh/helm/v3/cmd/helm
  finish "$out"
  say "helm $v done"
}

mkdir -p "$bindir"
# One build at a time per cache: a second caller waits for the first.
exec 9>"$cache/.cluster-bin.lock"
flock 9

start=$SECONDS
build_etcd
build_kwok
build_helm
build_kubernetes

# A stable directory of links to the pinned versions, which the harness and make use.
current="$bindir/current"
mkdir -p "$current.tmp"
for f in "$bindir/kubernetes-$KUBERNETES_VERSION"/* "$bindir/etcd-$ETCD_VERSION/etcd" \
  "$bindir/kwok-$KWOK_VERSION/kwok" "$bindir/helm-$HELM_VERSION/helm"; do
  ln -sfn "$f" "$current.tmp/$(basename "$f")"
done
rm -rf "$current" && mv "$current.tmp" "$current"

if $quiet; then
  echo "$current"
else
  say "binaries ready in $current ($((SECONDS - start))s)"
fi
