#!/usr/bin/env bash
# Makes sure the Chromium the HTML report's tests open the page in (harness/chromium.ts) is
# installed: Debian's package chromium (/usr/bin/chromium, or $MODELPLANE_CHROMIUM). As root
# it installs the package with apt-get when it is missing; otherwise it fails, naming it.
#
# Usage: hack/chromium.sh [--print-path | --check]
#   (none)         install when needed; progress on stderr
#   --print-path   print the executable's path (installing first when needed)
#   --check        print the path if it is installed; otherwise say how to install it and
#                  exit 3 (installs nothing)
set -euo pipefail

package=chromium
exe="${MODELPLANE_CHROMIUM:-/usr/bin/chromium}"
mode="${1:-}"
case "$mode" in
  "" | --print-path | --check) ;;
  *) echo "chromium.sh: error: unknown flag $mode (use --print-path or --check)" >&2; exit 2 ;;
esac

die() { echo "chromium.sh: error: $*" >&2; exit 1; }
installed() { [[ -x "$exe" ]]; }
how="install the Debian/Ubuntu package $package (apt-get install -y $package), or set MODELPLANE_CHROMIUM to a Chromium executable"

if installed; then
  [[ "$mode" == "" ]] || echo "$exe"
  exit 0
fi
if [[ "$mode" == "--check" ]]; then
  echo "chromium.sh: Chromium is not installed (no $exe): run \`make chromium\`, or $how." >&2
  exit 3
fi
[[ -z "${MODELPLANE_CHROMIUM:-}" ]] || die "MODELPLANE_CHROMIUM=$exe is not an executable."
[[ "$(id -u)" == 0 ]] || die "Chromium is not installed (no $exe), and only root installs packages: $how."
command -v apt-get >/dev/null 2>&1 || die "Chromium is not installed (no $exe), and there is no apt-get here: $how."
echo "chromium.sh: installing $package with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq >&2 && apt-get install -y --no-install-recommends "$package" >&2; } ||
  die "apt-get could not install $package: $how."
installed || die "the package $package is installed but $exe is not there: set MODELPLANE_CHROMIUM."
[[ "$mode" == "" ]] || echo "$exe"
