#!/usr/bin/env bash
# Builds the S3-compatible server the tests start (harness/s3.ts): versitygw, the Versity S3
# Gateway, from its Go module github.com/versity/versitygw at VERSITYGW_VERSION
# (hack/versions.env), run with its posix backend (buckets are directories). It lands in a
# cache outside the clone keyed by version, like the control plane (hack/cluster-bin.sh):
#   ${MODELPLANE_CACHE:-~/.cache/modelplane}/bin/versitygw-<version>/versitygw
# with a stamp written last, so a second run builds nothing and a version bump rebuilds it.
# $MODELPLANE_S3_SERVER names another versitygw binary instead (nothing is built then).
#
# Usage: hack/s3.sh [--check]
#   (none)    build when needed (progress on stderr), then print the binary's path
#   --check   print the binary's path if it is built; otherwise say how to build it and
#             exit 3 (builds nothing)
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"

mode="${1:-}"
case "$mode" in
  "" | --check) ;;
  *) echo "s3.sh: error: unknown flag $mode (use --check)" >&2; exit 2 ;;
esac

say() { echo "s3.sh: $*" >&2; }
die() { echo "s3.sh: error: $*" >&2; exit 1; }

if [[ -n "${MODELPLANE_S3_SERVER:-}" ]]; then
  [[ -x "$MODELPLANE_S3_SERVER" ]] || die "MODELPLANE_S3_SERVER=$MODELPLANE_S3_SERVER is not an executable versitygw."
  echo "$MODELPLANE_S3_SERVER"
  exit 0
fi

v="$VERSITYGW_VERSION"
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
out="$cache/bin/versitygw-$v"
bin="$out/versitygw"
built() { [[ -f "$out/.complete" && -x "$bin" ]]; }

if built; then
  echo "$bin"
  exit 0
fi
if [[ "$mode" == "--check" ]]; then
  say "the S3 test server is not built (no $bin): run \`make s3\` (builds versitygw $v from the Go module github.com/versity/versitygw; needs Go >= ${GO_MIN_VERSION}), or set MODELPLANE_S3_SERVER to a versitygw binary."
  exit 3
fi

command -v go >/dev/null 2>&1 ||
  die "Go is not installed. The S3 test server (versitygw $v) is built from its Go module; install Go >= ${GO_MIN_VERSION} (https://go.dev/doc/install or your distribution's golang package)."
have="$(GOTOOLCHAIN=local go env GOVERSION 2>/dev/null | sed 's/^go//')"
[[ -n "$have" ]] || die "could not read the Go version from 'go env GOVERSION'."
if [[ "$(printf '%s\n%s\n' "$GO_MIN_VERSION" "$have" | sort -V | head -n1)" != "$GO_MIN_VERSION" ]]; then
  die "Go $have is too old: versitygw $v needs Go >= ${GO_MIN_VERSION}. Install a newer Go and run again."
fi

mkdir -p "$cache/bin"
# One build at a time per cache: a second caller waits for the first, then finds it built.
exec 9>"$cache/.s3.lock"
flock 9
if built; then
  echo "$bin"
  exit 0
fi

export GOTOOLCHAIN=local CGO_ENABLED=0 GOFLAGS="-mod=mod -buildvcs=false"
wrap="$cache/build/versitygw-$v"
start=$SECONDS
say "building versitygw $v (github.com/versity/versitygw/cmd/versitygw)"
mkdir -p "$wrap"
# A throw-away wrapper module whose go.mod pins the upstream module.
printf 'module modelplane.local/versitygw-wrapper\n\ngo %s\n\nrequire github.com/versity/versitygw %s\n' \
  "$GO_MIN_VERSION" "$v" >"$wrap/go.mod"
printf 'package wrapper\n' >"$wrap/doc.go"
rm -rf "$out.tmp"
mkdir -p "$out.tmp"
(cd "$wrap" && go build -trimpath \
  -ldflags "-s -w -X main.Version=$v -X main.Build=$v -X main.BuildTime=$(date -u +%Y-%m-%dT%H:%M:%SZ)" \
  -o "$out.tmp/versitygw" github.com/versity/versitygw/cmd/versitygw) >&2 ||
  die "go build of github.com/versity/versitygw@$v failed (output above)."
rm -rf "$out"
mv "$out.tmp" "$out"
date -u +%Y-%m-%dT%H:%M:%SZ >"$out/.complete"
say "versitygw $v ready in $out ($((SECONDS - start))s)"
echo "$bin"
