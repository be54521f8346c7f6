#!/usr/bin/env bash
# The board's browser test drives Debian's Chromium and its driver: install them when missing.
# Never fails: the test itself decides (it fails under CI=true without a browser, else skips).
set -u
chromium=/usr/bin/chromium driver=/usr/bin/chromedriver

if [ -x "$chromium" ] && [ -x "$driver" ]; then
  echo "Browser: Chromium and chromedriver present"
  exit 0
fi
if ! command -v apt-get >/dev/null; then
  echo "Browser: Chromium or chromedriver missing and no apt-get to install them"
  exit 0
fi
if [ "$(id -u)" = "0" ]; then
  as_root=()
elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
  as_root=(sudo -n)
else
  echo "Browser: Chromium or chromedriver missing; installing needs root (apt-get install chromium chromium-driver)"
  exit 0
fi

install_browser() { ${as_root[@]+"${as_root[@]}"} env DEBIAN_FRONTEND=noninteractive apt-get install -y -q chromium chromium-driver >/dev/null 2>&1; }
# The package lists may be stale or absent on a fresh machine: update only when the install fails.
if install_browser || { ${as_root[@]+"${as_root[@]}"} apt-get update -q >/dev/null 2>&1 && install_browser; }; then
  echo "Browser: installed chromium and chromium-driver with apt-get"
else
  echo "Browser: apt-get could not install chromium chromium-driver"
fi
exit 0
