#!/usr/bin/env bash
# The compose test asks Debian's docker-compose (no Docker engine needed) to validate the compose files: install it
# if absent. Never fails the build: without it the test skips (and fails under CI=true).
set -u
command -v docker-compose >/dev/null && exit 0
if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends docker-compose >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends docker-compose >/dev/null; } && exit 0
fi
echo "ensure_compose.sh: docker-compose is missing (apt-get install docker-compose); its test will skip" >&2
