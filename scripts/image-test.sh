#!/usr/bin/env bash
# Builds the container image as this machine can, then runs the image checks.
#
#   scripts/image-test.sh PYTEST-COMMAND...     (make image-test passes `uv run pytest -m image`)
#
# No registry image can be pulled here, so BASE_IMAGE is a Debian bookworm made with
# debootstrap and imported as a local image (cached: built once per machine). The image is
# built with `buildah bud --isolation=chroot`, which needs no daemon and no user namespaces.
set -euo pipefail
cd "$(dirname "$0")/.."

base=${BASE_IMAGE:-localhost/bulkwatch-base:bookworm}
image=${IMAGE:-localhost/bulkwatch:test}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}

scripts/install-deploy-tools.sh image

if ! podman image exists "$base"; then
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
  echo "building $base with debootstrap (a few minutes, once)" >&2
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$work/rootfs" "$mirror" >"$work/debootstrap.log" 2>&1 \
    || { tail -n 30 "$work/debootstrap.log" >&2; exit 1; }
  # This machine's trust store, so a build behind a TLS-inspecting proxy still reaches PyPI.
  cp /etc/ssl/certs/ca-certificates.crt "$work/rootfs/etc/ssl/certs/ca-certificates.crt"
  rm -rf "$work"/rootfs/var/cache/apt/archives/*.deb "$work"/rootfs/var/lib/apt/lists/*
  tar -C "$work/rootfs" -c . | podman import \
    --change "ENV SSL_CERT_FILE=/etc/ssl/certs/ca-certificates.crt" \
    --change "ENV PIP_CERT=/etc/ssl/certs/ca-certificates.crt" \
    - "$base" >/dev/null
fi

buildah bud --isolation=chroot --format docker --layers --quiet \
  --build-arg "BASE_IMAGE=$base" --tag "$image" .

BULKWATCH_TEST_IMAGE=$image "$@"
