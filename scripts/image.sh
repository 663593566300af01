#!/usr/bin/env bash
# Build the Provender OCI image without any container registry (`make image`, `image-spark`, `image-kfp`).
#
#   scripts/image.sh [--spark|--kfp]
#
# 1. A Debian bookworm root filesystem from Debian packages (debootstrap minbase, with python3),
#    cached as a tarball under $PROVENDER_BUILD_CACHE (default /var/cache/provender-build).
# 2. Wheels of provender and its dependencies built on the host (pip cannot reach the index from
#    inside a build), the dependencies cached by a hash of pyproject.toml.
# 3. buildah: a base image of the root filesystem with a virtualenv at /opt/provender holding the
#    dependency wheels (--no-index), user 10001, cached under a tag naming its inputs; --spark adds
#    a Java runtime and pyspark (tag <version>-spark), --kfp kfp and scikit-learn (<version>-kfp).
# 4. On it, provender's wheel (pip check), then ensurepip's wheels and the apt lists removed (pip,
#    run from Debian's wheel of it, was never in the venv); entrypoint `provender`.
# 5. Smoke checks of the committed image: `provender --version`, the user, no build tools; the
#    image size is printed.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
CACHE=${PROVENDER_BUILD_CACHE:-/var/cache/provender-build}
# Wheels are built by the same interpreter as the image's (Debian bookworm's python3), in a build
# venv under the cache, so that environment markers (python_full_version < "3.11.3"...) agree.
BUILD_PY=${BUILD_PY:-/usr/bin/python3}
SPARK=0
KFP=0
case "${1:-}" in
  --spark) SPARK=1 ;;
  --kfp) KFP=1 ;;
  "") ;;
  *) echo "usage: scripts/image.sh [--spark|--kfp]"; exit 2 ;;
esac
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/deploy/podman/containers.conf}

VERSION=$(sed -n 's/^__version__ = "\(.*\)"$/\1/p' "$ROOT/src/provender/__init__.py")
[ -n "$VERSION" ] || { echo "no __version__ in src/provender/__init__.py"; exit 1; }
# delta and s3: the pods read Delta tables, and S3 Parquet through DuckDB over object_store (not the
# slower pyarrow path); neither pulls protobuf, so the Kubeflow image (protobuf < 7) has them too.
EXTRAS=redis,kafka,postgres,serving,delta,s3
TAG=localhost/provender:$VERSION
# Packages installed besides provender[EXTRAS] (the Kubeflow example's training step).
MORE=""
if [ "$SPARK" = 1 ]; then EXTRAS=$EXTRAS,spark; TAG=$TAG-spark; fi
# kfp pins protobuf < 7, which the serving extra cannot use: the Kubeflow image has no serving.
if [ "$KFP" = 1 ]; then EXTRAS=redis,kafka,postgres,delta,s3,kfp; MORE=scikit-learn; TAG=$TAG-kfp; fi
PACKAGES=python3,python3-venv,ca-certificates
# The image's own Java for Spark (the same major version the host tests Spark with).
SPARK_PACKAGES=openjdk-17-jre-headless

step() { printf '%-50s' "image: $1"; LOG=$WORK/$(echo "$1" | tr -c 'a-z0-9\n' '-').log; }
# Run a command with its output in the step's log; on failure print the log's tail and stop.
quiet() { "$@" >>"$LOG" 2>&1 || { echo "FAILED: $*"; tail -n 40 "$LOG"; exit 1; }; }
ok() { printf 'ok (%s s)\n' "$(( SECONDS - T0 ))"; }
T0=$SECONDS

mirror() {  # the Debian mirror apt already uses here
  local uri
  uri=$(grep -hE '^(URIs:|deb )' /etc/apt/sources.list /etc/apt/sources.list.d/*.sources /etc/apt/sources.list.d/*.list \
          2>/dev/null | grep -v security | grep -oE 'https?://[^ ]+/debian/?' | head -n1 || true)
  echo "${uri:-http://deb.debian.org/debian}"
}

# The image is rebuilt only when what goes into it changed: the package's sources and metadata, the
# extras (FORCE=1 rebuilds anyway, e.g. after changing how this script builds).
SOURCE=$(cd "$ROOT" && { find src pyproject.toml -type f -not -path '*/__pycache__/*' -not -name '*.pyc' -print0 \
  | sort -z | xargs -0 sha256sum; echo "$EXTRAS $MORE"; } | sha256sum | cut -c1-16)
UP_TO_DATE=0
if [ "${FORCE:-0}" != 1 ] && [ "$(podman image inspect --format '{{index .Labels "dev.provender.source"}}' "$TAG" \
     2>/dev/null)" = "$SOURCE" ]; then
  UP_TO_DATE=1
fi

mkdir -p "$CACHE"
WORK=$(mktemp -d /tmp/provender-image.XXXXXX)
LOG=$WORK/build.log
CTR=""
cleanup() { [ -n "$CTR" ] && buildah rm "$CTR" >/dev/null 2>&1; rm -rf "$WORK"; }
trap cleanup EXIT

build() {
# 1. root filesystem -------------------------------------------------------------------------
ROOTFS=$CACHE/rootfs-bookworm-minbase-$(echo "$PACKAGES" | sha256sum | cut -c1-12).tar
step "root filesystem"
if [ -s "$ROOTFS" ]; then
  echo "cached ($(basename "$ROOTFS"))"
else
  quiet debootstrap --variant=minbase --include="$PACKAGES" bookworm "$WORK/rootfs" "$(mirror)"
  rm -rf "$WORK"/rootfs/var/cache/apt/archives/*.deb "$WORK"/rootfs/var/lib/apt/lists/*
  tar -C "$WORK/rootfs" -cf "$ROOTFS.part" . && mv "$ROOTFS.part" "$ROOTFS"
  rm -rf "$WORK/rootfs"
  ok
fi

# 2. wheels -------------------------------------------------------------------------------------
PY=$CACHE/build-venv/bin/python
if [ ! -x "$PY" ]; then
  step "build venv ($("$BUILD_PY" --version))"
  T0=$SECONDS
  quiet "$BUILD_PY" -m venv "$CACHE/build-venv"
  quiet "$PY" -m pip install -q --disable-pip-version-check --upgrade pip wheel
  ok
fi
DEPS=$CACHE/wheels-$(cat "$ROOT/pyproject.toml" <(echo "$EXTRAS $MORE") <("$PY" --version) | sha256sum | cut -c1-12)
step "dependency wheels"
if [ -f "$DEPS/.complete" ]; then
  echo "cached ($(basename "$DEPS"), $(find "$DEPS" -name '*.whl' | wc -l) wheels)"
else
  T0=$SECONDS
  rm -rf "$DEPS"
  quiet "$PY" -m pip wheel -q --disable-pip-version-check -w "$DEPS" "$ROOT[$EXTRAS]" $MORE
  rm -f "$DEPS"/provender-*.whl
  touch "$DEPS/.complete"
  ok
fi
step "provender wheel"
T0=$SECONDS
mkdir -p "$WORK/wheels"
quiet "$PY" -m pip wheel -q --disable-pip-version-check --no-deps -w "$WORK/wheels" "$ROOT"
ok

# 3. base image: the root filesystem and the dependencies, installed once --------------------------
# A layer of its own, cached under a tag naming what went into it (root filesystem, dependency wheels,
# Java, this recipe's version): a change of provender's sources rebuilds only the thin layer above.
FLAVOR=plain; [ "$SPARK" = 1 ] && FLAVOR=spark; [ "$KFP" = 1 ] && FLAVOR=kfp
BASE_RECIPE=2
PIP_IN_IMAGE='python3 "$(ls /usr/share/python-wheels/pip-*.whl)/pip" --python /opt/provender/bin/python'
BASE=localhost/provender-base:$FLAVOR-$(echo "$(basename "$ROOTFS") $(basename "$DEPS") $SPARK_PACKAGES $BASE_RECIPE" \
  | sha256sum | cut -c1-12)
step "base ${BASE#localhost/}"
if [ "${FORCE:-0}" != 1 ] && podman image exists "$BASE"; then
  echo "cached"
else
  T0=$SECONDS
  CTR=$(buildah from scratch)
  quiet buildah add "$CTR" "$ROOTFS" /
  quiet buildah copy "$CTR" "$DEPS" /tmp/wheels
  if [ "$SPARK" = 1 ]; then
    quiet buildah run --isolation chroot "$CTR" -- sh -euc "apt-get update -qq
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $SPARK_PACKAGES"
  fi
  # Every wheel pip resolved for provender[$EXTRAS] $MORE (provender's own comes in the next layer).
  # pip runs from Debian's wheel of it (python3-pip-whl), so the venv never holds pip or setuptools.
  quiet buildah run --isolation chroot "$CTR" -- sh -euc "
    python3 -m venv --without-pip /opt/provender
    $PIP_IN_IMAGE install -q --no-index --no-deps /tmp/wheels/*.whl
    apt-get clean
    rm -rf /tmp/wheels /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log \\
      /usr/share/doc/* /usr/share/man/* /usr/share/info/* /root/.cache
    echo 'provender:x:10001:10001:Provender:/home/provender:/usr/sbin/nologin' >>/etc/passwd
    echo 'provender:x:10001:' >>/etc/group
    mkdir -p /home/provender && chown 10001:10001 /home/provender
  "
  quiet buildah commit -q --rm "$CTR" "$BASE"
  CTR=""
  # Earlier bases of this flavour: removed unless an image still stands on them.
  for old in $(podman images --format '{{.Repository}}:{{.Tag}}' localhost/provender-base | grep ":$FLAVOR-"); do
    [ "$old" = "$BASE" ] || podman rmi "$old" >/dev/null 2>&1 || true
  done
  ok
fi

# 4. image: provender's wheel on the base; the venv tooling (and Debian's pip wheel) removed -------
step "build $TAG"
T0=$SECONDS
CTR=$(buildah from "$BASE")
quiet buildah copy "$CTR" "$WORK/wheels" /tmp/wheels
quiet buildah run --isolation chroot "$CTR" -- sh -euc "
  $PIP_IN_IMAGE install -q --no-index --no-deps /tmp/wheels/provender-*.whl
  $PIP_IN_IMAGE check
  DEBIAN_FRONTEND=noninteractive apt-get purge -y -q python3-venv python3.11-venv python3-pip-whl python3-setuptools-whl
  apt-get clean
  rm -rf /tmp/wheels /var/lib/apt/lists/* /var/cache/apt/* /var/log/apt /var/log/dpkg.log /root/.cache
"
quiet buildah config \
  --env PATH=/opt/provender/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
  --env PYTHONUNBUFFERED=1 --env HOME=/home/provender \
  --user 10001:10001 --workingdir /home/provender \
  --port 6565 --port 6566 --port 6567 \
  --entrypoint '["provender"]' --cmd '["--help"]' \
  --label org.opencontainers.image.title=provender --label dev.provender.source="$SOURCE" \
  --label org.opencontainers.image.version="$VERSION" \
  --label org.opencontainers.image.description="Provender feature store: core, serve, ingest, ingest-stream, jobs" \
  "$CTR"
previous=$(podman image inspect --format '{{.Id}}' "$TAG" 2>/dev/null || true)
quiet buildah commit -q --rm "$CTR" "$TAG"
# The image this one replaces keeps no name: remove it rather than let each rebuild pile up.
if [ -n "$previous" ] && [ "$(podman image inspect --format '{{.Id}}' "$TAG")" != "$previous" ]; then
  podman rmi "$previous" >/dev/null 2>&1 || true
fi
CTR=""
ok
}

if [ "$UP_TO_DATE" = 1 ]; then
  echo "image: $TAG is up to date (source $SOURCE)"
else
  build
fi

# 5. smoke checks -------------------------------------------------------------------------------
step "check $TAG"
T0=$SECONDS
version=$(podman run --rm "$TAG" --version 2>&1 | head -n1 || true)
[ "$version" = "provender $VERSION" ] || { echo "FAILED: --version said: $version"; exit 1; }
user=$(podman run --rm --entrypoint id "$TAG" -u 2>&1 || true)
[ "$user" = 10001 ] || { echo "FAILED: runs as uid $user"; exit 1; }
tools=$(podman run --rm --entrypoint sh "$TAG" -c \
  'for t in pip pip3 gcc cc make debootstrap; do command -v $t; done; ls /usr/share/python-wheels 2>/dev/null; true')
[ -z "$tools" ] || { echo "FAILED: build tools left in the image: $tools"; exit 1; }
if [ "$KFP" = 1 ]; then  # the Kubeflow steps import these inside the image
  kfp=$(podman run --rm --entrypoint python "$TAG" -c 'import kfp, sklearn, provender.kfp.components' 2>&1 || true)
  [ -z "$kfp" ] || { echo "FAILED: the Kubeflow components do not import: $kfp"; exit 1; }
fi
ok
size=$(podman image inspect --format '{{.Size}}' "$TAG")
echo "image: $TAG $(( size / 1000000 )) MB"
