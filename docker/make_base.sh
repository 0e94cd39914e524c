#!/usr/bin/env bash
# Makes a local Debian bookworm + Python 3.11 base image with debootstrap and imports it into podman, for machines
# that reach Debian's archive but no container registry (the upstream `python:3.11-slim` and `redis:7-alpine` cannot
# be pulled there). Build the images FROM it with `--build-arg BASE_IMAGE=localhost/dfi-base:bookworm-py311`
# (docker-compose.local.yml passes it). Run as root (debootstrap and podman's root storage need it):
#   sudo bash docker/make_base.sh                     # → localhost/dfi-base:bookworm-py311
#   IMAGE=localhost/other:tag MIRROR=http://deb.debian.org/debian bash docker/make_base.sh
# What it holds, and why:
#   python3 + python3-venv         Python 3.11 as `python3` (as in python:3.11-slim); ensurepip makes /opt/venv
#   redis-server                   Debian's redis (7.0 in bookworm), so the compose override can run Redis FROM this
#                                  base instead of pulling redis:7-alpine; ~2 MB
#   ca-certificates                pip's TLS to PyPI inside the build, plus the host's own local CAs
#                                  ($EXTRA_CA_DIR, default /usr/local/share/ca-certificates, Debian's place for them):
#                                  where egress goes through a TLS-inspecting proxy, pip in the build must trust what
#                                  the host trusts (here it fails with CERTIFICATE_VERIFY_FAILED otherwise)
# Security and point-release updates (bookworm-security, bookworm-updates) are applied on top of the release.
# PIP_CERT points pip (whose vendored certifi knows only the public CAs) at the system bundle with those CAs in it.
# Everything else (apt lists, docs, man pages, locales but C.UTF-8) is removed: the base is ~130 MB instead of ~300.
set -euo pipefail
IMAGE=${IMAGE:-localhost/dfi-base:bookworm-py311}
MIRROR=${MIRROR:-http://deb.debian.org/debian}
SUITE=${SUITE:-bookworm}
ENGINE=${ENGINE:-podman}
SECURITY_MIRROR=${SECURITY_MIRROR:-http://deb.debian.org/debian-security}
EXTRA_CA_DIR=${EXTRA_CA_DIR:-/usr/local/share/ca-certificates}
command -v debootstrap >/dev/null || { echo "make_base: debootstrap missing: apt-get install -y debootstrap" >&2; exit 1; }
command -v "$ENGINE" >/dev/null || { echo "make_base: $ENGINE missing: apt-get install -y podman runc" >&2; exit 1; }
[[ $(id -u) == 0 ]] || { echo "make_base: run as root (debootstrap needs it)" >&2; exit 1; }

rootfs=$(mktemp -d /tmp/dfi-base-rootfs.XXXXXX)
# --one-file-system: never follow into the chroot's /proc should the umount have failed.
trap 'umount "$rootfs/proc" 2>/dev/null || true; rm -rf --one-file-system "$rootfs"' EXIT
start=$(date +%s)
# --variant=minbase: essential packages + apt only (no init, no systemd).
debootstrap --variant=minbase --include=python3,python3-venv,redis-server,ca-certificates \
  "$SUITE" "$rootfs" "$MIRROR"

cat > "$rootfs/etc/apt/sources.list" <<SOURCES
deb $MIRROR $SUITE main
deb $MIRROR $SUITE-updates main
deb $SECURITY_MIRROR $SUITE-security main
SOURCES
if compgen -G "$EXTRA_CA_DIR/*.crt" >/dev/null; then
  cp "$EXTRA_CA_DIR"/*.crt "$rootfs/usr/local/share/ca-certificates/"
fi
mount -t proc proc "$rootfs/proc"
# No daemon starts inside the chroot (redis-server's maintainer scripts would try on upgrade).
printf '#!/bin/sh\nexit 101\n' > "$rootfs/usr/sbin/policy-rc.d" && chmod +x "$rootfs/usr/sbin/policy-rc.d"
# The same conventions as the official python images: `python3` on PATH, UTF-8 locale, no apt caches.
chroot "$rootfs" /bin/sh -ec '
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -q && apt-get upgrade -y -q
  update-ca-certificates
  apt-get clean
  rm -rf /var/lib/apt/lists/* /var/cache/apt/*.bin /var/log/apt/* /var/log/dpkg.log /usr/share/doc/* /usr/share/man/* /usr/share/info/*
  find /usr/share/locale -mindepth 1 -maxdepth 1 ! -name "C.UTF-8" -exec rm -rf {} +
  python3.11 -c "import ensurepip, venv, ssl, sqlite3"
'
umount "$rootfs/proc"
rm "$rootfs/usr/sbin/policy-rc.d"
# debootstrap leaves the host's resolv.conf; the container runtime mounts its own.
: > "$rootfs/etc/resolv.conf"

# --change: image config that `podman import` can set (the rootfs has no metadata of its own).
tar --numeric-owner -C "$rootfs" -c . | "$ENGINE" import \
  --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  --change 'ENV LANG=C.UTF-8' \
  --change 'ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt' \
  --change 'CMD ["python3.11"]' \
  - "$IMAGE"
"$ENGINE" run --rm "$IMAGE" python3 --version
echo "make_base: $IMAGE ready in $(( $(date +%s) - start )) s ($("$ENGINE" image inspect --format '{{.Size}}' "$IMAGE") bytes)"
