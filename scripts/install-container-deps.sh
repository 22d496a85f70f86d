#!/usr/bin/env bash
# Installs the Debian packages `make test-containers` needs, only when they are missing: podman and
# the runc runtime (crun does not run on hosts with hybrid cgroups), podman-compose (drives
# compose.yaml), and debootstrap (builds the debian:bookworm-slim base when no registry is reachable).
set -euo pipefail

need=()
command -v podman >/dev/null 2>&1 || need+=(podman)
command -v runc >/dev/null 2>&1 || need+=(runc)
command -v podman-compose >/dev/null 2>&1 || need+=(podman-compose)
command -v debootstrap >/dev/null 2>&1 || need+=(debootstrap)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} — install them with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
