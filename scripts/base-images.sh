#!/usr/bin/env bash
# Local stand-ins for the base images the stack is built on, for machines that reach no image registry.
#
# For each of the Python, PostgreSQL and nginx images the compose file names (PYTHON_IMAGE, POSTGRES_IMAGE,
# NGINX_IMAGE; defaults the official python:3.11-slim, postgres:15, nginx:1.25) that the Docker engine does not
# have and cannot pull, this builds an image of the same name from Debian 12 (bookworm) packages: debootstrap
# from the Debian mirror this machine's apt uses, `docker import`, then the packages and the behaviour of the
# official image that the stack relies on (deploy/standins/). Debian 12's python3 is 3.11; its PostgreSQL 15.
#
# The debootstrapped root file system is cached as a tarball (BASE_CACHE, default /var/cache/dicom-host-base)
# and reused by later runs. Images that exist are left alone; --force rebuilds the stand-ins.
#
# Usage: scripts/base-images.sh [--force]    (as root: debootstrap needs it)
set -euo pipefail
cd "$(dirname "$0")/.."

PYTHON_IMAGE=${PYTHON_IMAGE:-python:3.11-slim}
POSTGRES_IMAGE=${POSTGRES_IMAGE:-postgres:15}
NGINX_IMAGE=${NGINX_IMAGE:-nginx:1.25}
BASE_CACHE=${BASE_CACHE:-/var/cache/dicom-host-base}
SUITE=bookworm
ROOT_IMAGE=dicom-host-standin/debian:$SUITE
# Debian's docker client builds with BuildKit on its own; a newer client without the buildx plugin cannot
DOCKER=${DOCKER:-$( [ -x /usr/bin/docker ] && echo /usr/bin/docker || command -v docker )}
export DOCKER_BUILDKIT=1
force=0
[ "${1:-}" = "--force" ] && force=1

log() { echo "base-images: $*" >&2; }

# The mirror apt uses here for a suite: its first source (deb822 or one-line format), or nothing.
mirror_of() {
  local sources=() f
  for f in /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources; do
    [ -f "$f" ] && sources+=("$f")
  done
  [ ${#sources[@]} -gt 0 ] || return 0
  awk -v suite="$1" '
    /^[[:space:]]*deb[[:space:]]/ {
      n = split($0, w, /[[:space:]]+/); i = 2
      if (w[i] ~ /^\[/) { while (i <= n && w[i] !~ /\]$/) i++; i++ }
      if (w[i + 1] == suite) { print w[i]; exit }
    }
    /^URIs:/ { uri = $2 }
    /^Suites:/ { for (i = 2; i <= NF; i++) if ($i == suite && uri != "") { print uri; exit } }
    /^[[:space:]]*$/ { uri = "" }
  ' "${sources[@]}" | head -n1
}

have_image() { "$DOCKER" image inspect "$1" >/dev/null 2>&1; }

# debootstrap once, keep the root file system as a tarball, import it as the root of every stand-in
root_image() {
  have_image "$ROOT_IMAGE" && [ "$force" = 0 ] && return
  local tarball="$BASE_CACHE/debian-$SUITE-minbase.tar" mirror security
  mirror=$(mirror_of "$SUITE"); mirror=${mirror:-http://deb.debian.org/debian}
  if [ ! -s "$tarball" ]; then
    command -v debootstrap >/dev/null || {
      log "installing debootstrap"
      DEBIAN_FRONTEND=noninteractive apt-get install -y -q debootstrap >/dev/null
    }
    rootfs=$(mktemp -d /var/tmp/dicom-host-rootfs.XXXXXX)
    trap 'rm -rf "$rootfs" "$rootfs.log"' EXIT
    log "debootstrap $SUITE from $mirror (cached afterwards in $tarball)"
    debootstrap --variant=minbase --include=ca-certificates "$SUITE" "$rootfs" "$mirror" >"$rootfs.log" 2>&1 \
      || { tail -n 20 "$rootfs.log" >&2; exit 1; }
    rm -f "$rootfs.log"
    # the mirror, and the security suite beside it when this machine's apt has one
    printf 'deb %s %s main\ndeb %s %s-updates main\n' "$mirror" "$SUITE" "$mirror" "$SUITE" >"$rootfs/etc/apt/sources.list"
    security=$(mirror_of "$SUITE-security")
    [ -n "$security" ] && printf 'deb %s %s-security main\n' "$security" "$SUITE" >>"$rootfs/etc/apt/sources.list"
    rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/*
    mkdir -p "$BASE_CACHE"
    tar -C "$rootfs" --numeric-owner -cf "$tarball.part" . && mv "$tarball.part" "$tarball"
    rm -rf "$rootfs"
  fi
  log "docker import $tarball as $ROOT_IMAGE"
  "$DOCKER" import -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
    -c 'CMD ["bash"]' "$tarball" "$ROOT_IMAGE" >/dev/null
}

# name, stand-in Dockerfile: pull the real image if a registry answers, else build the stand-in
provide() {
  local name=$1 dockerfile=$2
  if [ "$force" = 0 ] && have_image "$name"; then
    log "$name: present"
    return
  fi
  if [ "$force" = 0 ] && timeout 60 "$DOCKER" pull -q "$name" >/dev/null 2>&1; then
    log "$name: pulled"
    return
  fi
  root_image
  log "$name: building a stand-in from Debian $SUITE ($dockerfile)"
  "$DOCKER" build -q --build-arg ROOT_IMAGE="$ROOT_IMAGE" -t "$name" -f "$dockerfile" deploy/standins >/dev/null
}

provide "$PYTHON_IMAGE" deploy/standins/python.Dockerfile
provide "$POSTGRES_IMAGE" deploy/standins/postgres.Dockerfile
provide "$NGINX_IMAGE" deploy/standins/nginx.Dockerfile
