#!/usr/bin/env bash
# Installs the Debian packages Keyhall's test peers need, only when they are missing:
# Node.js and npm (the OIDC and SAML IdPs), OpenLDAP's slapd and ldap-utils (the directory), xmlsec1
# (pysaml2 signs the development-mode test IdP's SAML responses with it), and Chromium (the browser
# tests drive /usr/bin/chromium with Playwright; never `playwright install`, which downloads a
# browser of its own).
set -euo pipefail

need=()
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
[ -x /usr/bin/chromium ] || need+=(chromium)
[ -x /usr/sbin/slapd ] || need+=(slapd)
command -v ldapadd >/dev/null 2>&1 || need+=(ldap-utils)
command -v xmlsec1 >/dev/null 2>&1 || need+=(xmlsec1)

if [ ${#need[@]} -eq 0 ]; then
  exit 0
fi
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "missing system packages: ${need[*]} — install them with your package manager" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
if printf '%s\n' "${need[@]}" | grep -qx slapd; then
  # The tests run their own slapd; the package must not create a system directory of its own.
  echo 'slapd slapd/no_configuration boolean true' | debconf-set-selections
fi
apt-get update -qq
apt-get install -y -qq --no-install-recommends "${need[@]}"
