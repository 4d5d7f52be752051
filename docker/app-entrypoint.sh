#!/bin/sh
# The app container: migrate the schema, then run `callcontrol "$@"` (default: serve).
# Compose starts the database beside the app, so it may not answer yet: the migration
# (idempotent) is retried for up to DB_WAIT seconds (default 60) before giving up.
set -eu
wait_s=${DB_WAIT:-60}
case "$wait_s" in ''|*[!0-9]*) echo "DB_WAIT must be a number of seconds" >&2; exit 64 ;; esac
started=$(date +%s)
until callcontrol db upgrade; do
  if [ $(($(date +%s) - started)) -ge "$wait_s" ]; then
    echo "the database did not answer within DB_WAIT=$wait_s s" >&2
    exit 1
  fi
  sleep 1
done
[ $# -gt 0 ] || set -- serve
exec callcontrol "$@"
