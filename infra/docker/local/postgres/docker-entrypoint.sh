#!/usr/bin/env bash
# The official postgres image's entrypoint, in the parts compose relies on: as root, make PGDATA the
# server user's and start again as that user; on an empty PGDATA, initdb with POSTGRES_USER and the
# password (POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE), password authentication for every TCP
# client, POSTGRES_DB created by a first server that listens on its socket only (so a TCP health
# check stays unhealthy until the real start); then the server itself, as PID 1.
#
# The initialisation happens beside PGDATA and is renamed into place only when complete, so one
# that fails half-way is made again at the next start instead of being served half-made.
set -Eeuo pipefail

if [ "${1:0:1}" = "-" ]; then
  set -- postgres "$@"
fi

if [ "$1" = "postgres" ] && [ "$(id -u)" = "0" ]; then
  mkdir -p "$(dirname "$PGDATA")"
  chown postgres:postgres "$(dirname "$PGDATA")"
  if [ -d "$PGDATA" ]; then
    chown -R postgres:postgres "$PGDATA"
    chmod 700 "$PGDATA"
  fi
  exec setpriv --reuid=postgres --regid=postgres --init-groups "$0" "$@"
fi

if [ "$1" = "postgres" ] && [ ! -s "$PGDATA/PG_VERSION" ]; then
  if [ -n "${POSTGRES_PASSWORD_FILE:-}" ]; then
    POSTGRES_PASSWORD="$(< "$POSTGRES_PASSWORD_FILE")"
  fi
  auth="${POSTGRES_HOST_AUTH_METHOD:-scram-sha-256}"
  if [ -z "${POSTGRES_PASSWORD:-}" ] && [ "$auth" != "trust" ]; then
    echo "Error: the database is uninitialised and no password is given: set POSTGRES_PASSWORD or POSTGRES_PASSWORD_FILE" >&2
    exit 1
  fi
  user="${POSTGRES_USER:-postgres}"
  db="${POSTGRES_DB:-$user}"
  staging="$PGDATA.initialising"
  rm -rf "$staging"
  # shellcheck disable=SC2086  # POSTGRES_INITDB_ARGS is a list of arguments, as in the official image
  initdb -D "$staging" --username="$user" --pwfile=<(printf '%s\n' "${POSTGRES_PASSWORD:-}") \
    --encoding=UTF8 --locale=C.UTF-8 ${POSTGRES_INITDB_ARGS:-}
  printf "\nlisten_addresses = '*'\nunix_socket_directories = '/var/run/postgresql'\n" >> "$staging/postgresql.conf"
  printf '\nhost all all all %s\n' "$auth" >> "$staging/pg_hba.conf"
  pg_ctl -D "$staging" -o "-c listen_addresses=''" -w start
  if [ "$db" != "postgres" ]; then
    psql -v ON_ERROR_STOP=1 --username "$user" --dbname postgres --set db="$db" <<'SQL'
CREATE DATABASE :"db";
SQL
  fi
  pg_ctl -D "$staging" -m fast -w stop
  rm -rf "$PGDATA"
  mv "$staging" "$PGDATA"
  echo "PostgreSQL init process complete; ready for start up."
fi

exec "$@"
