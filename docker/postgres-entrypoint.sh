#!/bin/sh
# The PostgreSQL container: make the cluster in $PGDATA on first start (the role and
# database POSTGRES_USER/POSTGRES_DB, default callcontrol, with POSTGRES_PASSWORD; the
# role is not a superuser), then run postgres on POSTGRES_LISTEN:POSTGRES_PORT (default
# 127.0.0.1:5432). TCP logins need the password (scram-sha-256); only the postgres
# system user inside the container logs in without one, over the Unix socket.
set -eu

: "${POSTGRES_PASSWORD:?set POSTGRES_PASSWORD (docker/.env); there is no default}"
user=${POSTGRES_USER:-callcontrol}
db=${POSTGRES_DB:-callcontrol}
listen=${POSTGRES_LISTEN:-127.0.0.1}
port=${POSTGRES_PORT:-5432}
: "${PGDATA:=/var/lib/postgresql/data}"

# The password goes into SQL and into the app's database URL: URL-safe characters only.
case "$POSTGRES_PASSWORD" in
  *[!A-Za-z0-9._~-]*) echo "POSTGRES_PASSWORD may hold only letters, digits and . _ ~ - (e.g. openssl rand -hex 24)" >&2; exit 64 ;;
esac
[ ${#POSTGRES_PASSWORD} -ge 12 ] || { echo "POSTGRES_PASSWORD must be at least 12 characters" >&2; exit 64; }
for name in "$user" "$db"; do
  case "$name" in
    ''|[!a-z_]*|*[!a-z0-9_]*) echo "POSTGRES_USER/POSTGRES_DB must be lower-case letters, digits and _" >&2; exit 64 ;;
  esac
done
case "$port" in ''|*[!0-9]*) echo "POSTGRES_PORT must be a port number" >&2; exit 64 ;; esac
case "$listen" in ''|*[!0-9A-Za-z.:,*-]*) echo "POSTGRES_LISTEN must be addresses separated by commas" >&2; exit 64 ;; esac

bin=$(ls -d /usr/lib/postgresql/*/bin | sort -V | tail -n 1)
if [ ! -s "$PGDATA/PG_VERSION" ]; then
  echo "creating the cluster in $PGDATA (role $user, database $db)"
  "$bin/initdb" --pgdata="$PGDATA" --username=postgres --encoding=UTF8 --locale=C.UTF-8 \
    --auth-local=peer --auth-host=scram-sha-256 >/dev/null
  # Single-user mode: nothing listens yet. One statement per line.
  "$bin/postgres" --single -D "$PGDATA" postgres >/dev/null <<SQL
CREATE ROLE "$user" LOGIN PASSWORD '$POSTGRES_PASSWORD';
CREATE DATABASE "$db" OWNER "$user";
SQL
fi
exec "$bin/postgres" -D "$PGDATA" -c "listen_addresses=$listen" -c "port=$port" \
  -c unix_socket_directories=/run/postgresql
