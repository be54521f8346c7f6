#!/usr/bin/env bash
# Under CI=true the suite needs the machine's PostgreSQL and Redis; start them if they are down.
# Locally this only reports: the PostgreSQL runs are skipped when no server answers.
set -u
pg_host=127.0.0.1 pg_port=5432 redis_port=6379

pg_up() { pg_isready -q -h "$pg_host" -p "$pg_port" 2>/dev/null; }
redis_up() { redis-cli -h 127.0.0.1 -p "$redis_port" ping >/dev/null 2>&1; }

if [ "${CI:-}" = "true" ]; then
  if ! pg_up && command -v pg_ctlcluster >/dev/null; then
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start || true
  fi
  if ! redis_up && command -v redis-server >/dev/null; then
    redis-server --daemonize yes --bind 127.0.0.1 --port "$redis_port" --save "" --appendonly no || true
  fi
  for _ in $(seq 1 20); do pg_up && break; sleep 0.5; done
fi
pg_up && echo "PostgreSQL: up on $pg_host:$pg_port" || echo "PostgreSQL: not reachable on $pg_host:$pg_port"
redis_up && echo "Redis: up on 127.0.0.1:$redis_port" || echo "Redis: not reachable on 127.0.0.1:$redis_port"
exit 0
