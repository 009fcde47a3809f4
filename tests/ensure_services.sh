#!/usr/bin/env bash
# Start the database servers the tests use if they are down (commands from the machine's page).
set -u
if ! pg_isready -h 127.0.0.1 -p 5432 -q 2>/dev/null; then
  echo "starting PostgreSQL"
  pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n1)" main start
  for _ in $(seq 1 50); do pg_isready -h 127.0.0.1 -p 5432 -q && break; sleep 0.2; done
fi
pg_isready -h 127.0.0.1 -p 5432 || { echo "PostgreSQL is not reachable on 127.0.0.1:5432" >&2; exit 1; }
# curl sends the seed's request in tests/test_seed_curl.py.
command -v curl >/dev/null || { apt-get update -qq && apt-get install -y -qq curl; }
# ip (iproute2) puts the monitor's test hosts in network namespaces (tests/netns.py).
command -v ip >/dev/null || { apt-get update -qq && apt-get install -y -qq iproute2; }
if ! mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1; then
  echo "starting MariaDB"
  start-stop-daemon --start --oknodo --background --exec /usr/sbin/mariadbd
  for _ in $(seq 1 50); do mysqladmin -h 127.0.0.1 -uroot ping >/dev/null 2>&1 && break; sleep 0.2; done
fi
mysqladmin -h 127.0.0.1 -uroot ping || { echo "MariaDB is not reachable on 127.0.0.1:3306" >&2; exit 1; }
