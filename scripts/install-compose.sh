#!/usr/bin/env bash
# The container-files test validates compose.yaml with Debian's docker-compose (v1, `config` only:
# no engine needed): install it when missing.
# Never fails: the test itself decides (it fails under CI=true without it, else skips).
set -u
compose=/usr/bin/docker-compose

if [ -x "$compose" ]; then
  echo "Compose: docker-compose present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Compose: docker-compose missing and no apt-get to install it"
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Compose: docker-compose missing; installing needs root (apt-get install docker-compose)"
  exit 0
fi

install_compose() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends docker-compose >/dev/null 2>&1; }
# The package lists may be stale or absent on a fresh machine: update only when the install fails.
if install_compose || { ${as_root[@]+"${as_root[@]}"} apt-get update -q >/dev/null 2>&1 && install_compose; }; then
  echo "Compose: installed docker-compose with apt-get"
else
  echo "Compose: apt-get could not install docker-compose"
fi
exit 0
