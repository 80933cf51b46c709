#!/usr/bin/env bash
# Start the local services the tests talk to (Redis, PostgreSQL) when they are installed but not answering.
set -u
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if ! answers 6379 && command -v redis-server >/dev/null; then
  mkdir -p /var/lib/redis /var/log/redis
  redis-server --daemonize yes --bind 127.0.0.1 -::1 --port 6379 --save "" --appendonly no \
    --dir /var/lib/redis --logfile /var/log/redis/ci.log || true
fi
if ! answers 5432 && command -v pg_ctlcluster >/dev/null; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -1)" main start || true
fi
for _ in $(seq 1 20); do
  answers 6379 && answers 5432 && exit 0
  sleep 0.5
done
echo "services.sh: Redis or PostgreSQL is not answering; tests that need them will skip (or fail under CI=true)" >&2
