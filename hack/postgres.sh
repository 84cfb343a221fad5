#!/usr/bin/env bash
# Makes sure the PostgreSQL server the tests, the benchmarks and `modelplane dev --store
# postgres` start (harness/postgres.ts) is installed: Debian's package postgresql-15, whose
# binaries are in /usr/lib/postgresql/15/bin (or $MODELPLANE_POSTGRES_BIN). As root it
# installs the package with apt-get when it is missing; otherwise it fails, naming it.
#
# Usage: hack/postgres.sh [--print-dir | --check]
#   (none)        install when needed; progress on stderr
#   --print-dir   print the bin directory (installing first when needed)
#   --check       print the bin directory if it is installed; otherwise say how to install
#                 it and exit 3 (installs nothing)
set -euo pipefail

package=postgresql-15
bindir="${MODELPLANE_POSTGRES_BIN:-/usr/lib/postgresql/15/bin}"
mode="${1:-}"
case "$mode" in
  "" | --print-dir | --check) ;;
  *) echo "postgres.sh: error: unknown flag $mode (use --print-dir or --check)" >&2; exit 2 ;;
esac

die() { echo "postgres.sh: error: $*" >&2; exit 1; }
installed() { [[ -x "$bindir/postgres" && -x "$bindir/initdb" ]]; }
how="install the Debian/Ubuntu package $package (apt-get install -y $package), or set MODELPLANE_POSTGRES_BIN to the bin directory of a PostgreSQL >= 14"

if installed; then
  [[ "$mode" == "" ]] || echo "$bindir"
  exit 0
fi
if [[ "$mode" == "--check" ]]; then
  echo "postgres.sh: PostgreSQL is not installed (no $bindir/postgres): run \`make postgres\`, or $how." >&2
  exit 3
fi
[[ -z "${MODELPLANE_POSTGRES_BIN:-}" ]] || die "MODELPLANE_POSTGRES_BIN=$bindir holds no postgres and initdb."
[[ "$(id -u)" == 0 ]] || die "PostgreSQL is not installed (no $bindir/postgres), and only root installs packages: $how."
command -v apt-get >/dev/null 2>&1 || die "PostgreSQL is not installed (no $bindir/postgres), and there is no apt-get here: $how."
echo "postgres.sh: installing $package with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get install -y --no-install-recommends "$package" >&2 ||
  { apt-get update -qq >&2 && apt-get install -y --no-install-recommends "$package" >&2; } ||
  die "apt-get could not install $package: $how."
installed || die "the package $package is installed but $bindir/postgres is not there: set MODELPLANE_POSTGRES_BIN."
[[ "$mode" == "" ]] || echo "$bindir"
