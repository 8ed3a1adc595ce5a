#!/bin/sh
# As the official image's: flags (`--configfile=...`) and Traefik's subcommands run Traefik.
set -e
case "$1" in
  -*) set -- traefik "$@" ;;
  healthcheck|version) set -- traefik "$@" ;;
esac
exec "$@"
