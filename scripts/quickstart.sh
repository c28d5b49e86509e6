#!/usr/bin/env bash
# Quick start on a fresh Debian/Ubuntu machine, as root: installs and builds
# everything (./build), then runs a whole local Rudder cluster — real etcd,
# real daemons, pods — in network namespaces (`rudder sandbox`). Ctrl-C
# removes everything it made. Extra arguments go to the sandbox
# (e.g. --hosts 4 --backend vxlan, or --check to verify and exit).
set -euo pipefail
cd "$(dirname "$0")/.."
say() { printf 'quickstart: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  say "needs root (it installs Debian packages and creates network namespaces): sudo $0 $*"
  exit 1
fi
if ! command -v node >/dev/null 2>&1 || ! command -v npm >/dev/null 2>&1; then
  say "needs Node.js 20 or later with npm (e.g. apt-get install nodejs npm on Debian 13 / Ubuntu 24.04, or https://nodejs.org)"
  exit 1
fi
major=$(node -p 'process.versions.node.split(".")[0]')
if [ "$major" -lt 20 ]; then
  say "needs Node.js 20 or later, found $(node --version)"
  exit 1
fi

./build
exec bin/rudder sandbox "$@"
