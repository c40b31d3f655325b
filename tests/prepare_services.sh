#!/usr/bin/env bash
# What the tests need from this machine beyond the venv, set up idempotently (`make test` runs it):
# PostgreSQL and RabbitMQ running, RabbitMQ's consistent-hash exchange plugin, Debian's Chromium.
# Each step is skipped where the machine cannot take it (not root, no such service); the tests
# then fail with a message that names what is missing.
set -uo pipefail
if command -v pg_isready >/dev/null && ! pg_isready -q -h 127.0.0.1 -p 5432; then
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql)" main start || true
fi
if command -v rabbitmqctl >/dev/null; then
  rabbitmqctl -q status >/dev/null 2>&1 || { rabbitmq-server -detached && sleep 5; }
  rabbitmqctl -q await_startup >/dev/null 2>&1 || true
  rabbitmq-plugins -q is_enabled rabbitmq_consistent_hash_exchange >/dev/null 2>&1 \
    || rabbitmq-plugins -q enable rabbitmq_consistent_hash_exchange || true
fi
if [ ! -x /usr/bin/chromium ] && [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null; then
  apt-get install -y -q chromium >/dev/null 2>&1 \
    || { apt-get update -q >/dev/null 2>&1 && apt-get install -y -q chromium >/dev/null 2>&1; } || true
fi
exit 0
