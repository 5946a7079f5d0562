#!/usr/bin/env bash
# The Debian packages `make test` needs beyond Python: espeak-ng synthesizes the KWS recipe's speech
# (examples/kws, and the test that runs the recipe). Installed when missing and we are root;
# otherwise the command to run is printed and `make test` stops, rather than the test skipping.
set -euo pipefail
need=()
command -v espeak-ng >/dev/null || need+=(espeak-ng)
[ ${#need[@]} -eq 0 ] && exit 0
if [ "$(id -u)" -ne 0 ] || ! command -v apt-get >/dev/null; then
    echo "make test: needs the system package(s) ${need[*]}: run 'sudo apt-get install ${need[*]}' (or your distribution's equivalent), then make again" >&2
    exit 1
fi
echo "== apt-get install ${need[*]}"
apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${need[@]}" >/dev/null
