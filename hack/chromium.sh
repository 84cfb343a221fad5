#!/usr/bin/env bash
# Makes sure the Chromium the HTML report's tests open the page in (harness/chromium.ts) is
# installed: Debian's package chromium (/usr/bin/chromium, or $MODELPLANE_CHROMIUM), with a
# font to draw text in (fonts-dejavu-core; chromium only recommends one). As root it installs
# the packages with apt-get when they are missing; otherwise it fails, naming them.
#
# Usage: hack/chromium.sh [--print-path | --check]
#   (none)         install when needed; progress on stderr
#   --print-path   print the executable's path (installing first when needed)
#   --check        print the path if it is installed; otherwise say how to install it and
#                  exit 3 (installs nothing)
set -euo pipefail

package=chromium
font=/usr/share/fonts/truetype/dejavu/DejaVuSans.ttf
exe="${MODELPLANE_CHROMIUM:-/usr/bin/chromium}"
mode="${1:-}"
case "$mode" in
  "" | --print-path | --check) ;;
  *) echo "chromium.sh: error: unknown flag $mode (use --print-path or --check)" >&2; exit 2 ;;
esac

die() { echo "chromium.sh: error: $*" >&2; exit 1; }
installed() { [[ -x "$exe" && ( -n "${MODELPLANE_CHROMIUM:-}" || -f "$font" ) ]]; }
how="install the Debian/Ubuntu packages $package and fonts-dejavu-core (apt-get install -y $package fonts-dejavu-core), or set MODELPLANE_CHROMIUM to a Chromium executable"

if installed; then
  [[ "$mode" == "" ]] || echo "$exe"
  exit 0
fi
if [[ "$mode" == "--check" ]]; then
  echo "chromium.sh: Chromium or its font is not installed (no $exe or $font): run \`make chromium\`, or $how." >&2
  exit 3
fi
[[ -z "${MODELPLANE_CHROMIUM:-}" ]] || die "MODELPLANE_CHROMIUM=$exe is not an executable."
[[ "$(id -u)" == 0 ]] || die "Chromium or its font is not installed (no $exe or $font), and only root installs packages: $how."
command -v apt-get >/dev/null 2>&1 || die "Chromium or its font is not installed (no $exe or $font), and there is no apt-get here: $how."
echo "chromium.sh: installing $package and fonts-dejavu-core with apt-get" >&2
export DEBIAN_FRONTEND=noninteractive
{ apt-get update -qq >&2 && apt-get install -y --no-install-recommends "$package" fonts-dejavu-core >&2; } ||
  die "apt-get could not install $package: $how."
installed || die "the packages are installed but $exe or $font is not there: set MODELPLANE_CHROMIUM."
[[ "$mode" == "" ]] || echo "$exe"
