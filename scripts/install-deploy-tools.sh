#!/usr/bin/env bash
# Installs the Debian packages the deployment checks need, only those whose command is
# missing (so a second run costs nothing): promtool and prometheus (package prometheus),
# systemd-analyze (systemd), shellcheck. `image` adds buildah, podman and debootstrap;
# `browser` Debian's chromium, for the status page's browser tests.
# hadolint, kubernetes-validate, check-jsonschema (the compose specification's schema) and
# yamllint come from the venv (`make` syncs them).
set -euo pipefail

declare -A package_of=(
  [promtool]=prometheus
  [prometheus]=prometheus
  [systemd-analyze]=systemd
  [shellcheck]=shellcheck
)
if [[ "${1:-}" == image ]]; then
  package_of=([buildah]=buildah [podman]=podman [debootstrap]=debootstrap)
elif [[ "${1:-}" == browser ]]; then
  package_of=([chromium]=chromium)
fi

missing=()
for command in "${!package_of[@]}"; do
  if ! command -v "$command" >/dev/null 2>&1; then
    missing+=("${package_of[$command]}")
  fi
done
if ((${#missing[@]} == 0)); then
  exit 0
fi
mapfile -t packages < <(printf '%s\n' "${missing[@]}" | sort -u)
echo "installing: ${packages[*]}" >&2
sudo=()
if ((EUID != 0)); then
  sudo=(sudo)
fi
"${sudo[@]}" apt-get update -q
DEBIAN_FRONTEND=noninteractive "${sudo[@]}" apt-get install -y -q --no-install-recommends \
  "${packages[@]}"
