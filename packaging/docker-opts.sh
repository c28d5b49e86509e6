#!/bin/sh
# Turns Rudder's subnet file into dockerd options (--bip, --mtu, and
# --ip-masq=false when RUDDER_IPMASQ=true), for Docker's unit.
#
#   docker-opts.sh [-f SUBNET_FILE] [-d DEST_FILE] [-k KEY]
#
#   -f  the subnet file (default /run/rudder/subnet.env)
#   -d  write KEY="OPTIONS" to DEST_FILE (atomically: temp file + rename), for
#       systemd's EnvironmentFile=; without -d, print the options on one line
#   -k  variable name for -d (default DOCKER_OPTS)
#
# One implementation: this script calls `rudder docker-opts`, found as
# $RUDDER_BIN, else bin/rudder of the checkout this script belongs to, else
# `rudder` on PATH. See docs/docker.md.
set -eu

subnet_file=/run/rudder/subnet.env
dest=
key=DOCKER_OPTS
usage() { echo "usage: $0 [-f SUBNET_FILE] [-d DEST_FILE] [-k KEY]" >&2; exit 2; }
while getopts f:d:k:h opt; do
  case $opt in
    f) subnet_file=$OPTARG ;;
    d) dest=$OPTARG ;;
    k) key=$OPTARG ;;
    *) usage ;;
  esac
done
shift $((OPTIND - 1))
[ $# -eq 0 ] || usage
case $key in
  ''|[0-9]*|*[!A-Za-z0-9_]*) echo "$0: -k $key: expected a variable name ([A-Za-z_][A-Za-z0-9_]*)" >&2; exit 2 ;;
esac

rudder=${RUDDER_BIN:-}
if [ -z "$rudder" ]; then
  here=$(cd "$(dirname "$0")" && pwd)
  if [ -x "$here/../bin/rudder" ]; then rudder=$here/../bin/rudder; else rudder=rudder; fi
fi

opts=$("$rudder" docker-opts -subnet-file="$subnet_file")

if [ -z "$dest" ]; then
  printf '%s\n' "$opts"
else
  tmp="$dest.$$.tmp"
  trap 'rm -f "$tmp"' EXIT
  printf '%s="%s"\n' "$key" "$opts" > "$tmp"
  mv -f "$tmp" "$dest"
  trap - EXIT
fi
