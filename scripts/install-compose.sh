#!/usr/bin/env bash
# The container-files test validates compose.yaml with Debian's docker-compose (v1, `config` only:
# no engine needed) and deploy/Caddyfile with Debian's caddy: install them when missing.
# Never fails: the test itself decides (it fails under CI=true without them, else skips).
set -u
missing=()
[ -x /usr/bin/docker-compose ] || missing+=(docker-compose)
[ -x /usr/bin/caddy ] || missing+=(caddy)

if [ "${#missing[@]}" -eq 0 ]; then
  echo "Compose: docker-compose and caddy present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Compose: ${missing[*]} missing and no apt-get to install them"
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Compose: ${missing[*]} missing; installing needs root (apt-get install ${missing[*]})"
  exit 0
fi

install_missing() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/dev/null 2>&1; }
# The package lists may be stale or absent on a fresh machine: update only when the install fails.
if install_missing || { ${as_root[@]+"${as_root[@]}"} apt-get update -q >/dev/null 2>&1 && install_missing; }; then
  echo "Compose: installed ${missing[*]} with apt-get"
else
  echo "Compose: apt-get could not install ${missing[*]}"
fi
exit 0
