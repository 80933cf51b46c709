#!/usr/bin/env bash
# The browser tests drive Debian's chromium with Playwright (never a downloaded browser): install it if absent.
set -u
[ -x /usr/bin/chromium ] && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq --no-install-recommends chromium >/dev/null && exit 0
fi
echo "ensure_chromium.sh: /usr/bin/chromium is missing (apt-get install chromium); browser tests will skip" >&2
