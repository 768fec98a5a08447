#!/usr/bin/env bash
# Install Debian's headless-capable Chromium and a font for the browser test of the HTML report
# (tests/integration/test_report.py drives it with scripts/browser_check.py over the DevTools pipe; nothing is
# downloaded at test time). Idempotent: apt runs only when a package is missing.
set -euo pipefail
PACKAGES=(chromium fonts-dejavu-core)
missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  echo "setup_browser: installing ${missing[*]}"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" > /dev/null
fi
chromium --version 2>/dev/null
