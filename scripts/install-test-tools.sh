#!/usr/bin/env bash
# Debian tools some tests drive: Chromium and its driver (the board's browser tests), docker-compose
# v1 (`config` validates compose.yaml, no engine needed) and caddy (validates deploy/Caddyfile).
# Installs what is missing. Never fails: each test decides (under CI=true it fails without its
# tool, else it skips).
set -u
missing=()
for tool in chromium:/usr/bin/chromium chromium-driver:/usr/bin/chromedriver \
  docker-compose:/usr/bin/docker-compose caddy:/usr/bin/caddy; do
  [ -x "${tool#*:}" ] || missing+=("${tool%%:*}")
done

if [ "${#missing[@]}" -eq 0 ]; then
  echo "Test tools: chromium, chromedriver, docker-compose and caddy present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Test tools: ${missing[*]} missing and no apt-get to install them"
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Test tools: ${missing[*]} missing; installing needs root (apt-get install ${missing[*]})"
  exit 0
fi

install_missing() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
# The package lists may be stale or absent on a fresh machine: update only when the install fails.
if install_missing || { ${as_root[@]+"${as_root[@]}"} apt-get update -q >/dev/null 2>&1 && install_missing; }; then
  echo "Test tools: installed ${missing[*]} with apt-get"
else
  echo "Test tools: apt-get could not install ${missing[*]}"
fi
exit 0
