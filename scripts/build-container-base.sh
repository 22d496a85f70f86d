#!/usr/bin/env bash
# Makes the base image docker.io/library/debian:bookworm-slim locally when it is missing (no registry
# of container images is reachable where the tests run): a minimal Debian bookworm from debootstrap,
# imported under the official name, so `FROM debian:bookworm-slim` builds unchanged. Where a registry
# is reachable, `podman pull docker.io/library/debian:bookworm-slim` does the same.
set -euo pipefail

image=docker.io/library/debian:bookworm-slim
if podman image exists "$image"; then
  exit 0
fi
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
root=$(mktemp -d /var/tmp/keyhall-debootstrap.XXXXXX)
trap 'rm -rf "$root"' EXIT
debootstrap --variant=minbase bookworm "$root" "$mirror" >/dev/null
# Like the official slim image: no downloaded packages, package lists, documentation or locales, and
# dpkg told to leave those out of every package installed later.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/cache/apt/*.bin "$root"/var/lib/apt/lists/* \
  "$root"/usr/share/doc/* "$root"/usr/share/man/* "$root"/usr/share/info/* "$root"/usr/share/locale/*
cat > "$root"/etc/dpkg/dpkg.cfg.d/slim <<'CONF'
path-exclude /usr/share/doc/*
path-include /usr/share/doc/*/copyright
path-exclude /usr/share/man/*
path-exclude /usr/share/info/*
path-exclude /usr/share/locale/*
CONF
# ... and apt told to delete the packages it downloaded, as the official image's docker-clean does.
cat > "$root"/etc/apt/apt.conf.d/docker-clean <<'CONF'
DPkg::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
APT::Update::Post-Invoke { "rm -f /var/cache/apt/archives/*.deb /var/cache/apt/archives/partial/*.deb /var/cache/apt/*.bin || true"; };
Dir::Cache::pkgcache "";
Dir::Cache::srcpkgcache "";
Acquire::Languages "none";
CONF
tar -C "$root" -c . | podman import --change 'CMD ["bash"]' - "$image" >/dev/null
echo "built $image"
