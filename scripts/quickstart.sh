#!/usr/bin/env bash
# Quick start on a fresh Debian/Ubuntu machine, as root: installs and builds
# everything (./build), then runs a whole local Rudder cluster — real etcd,
# real daemons, pods — in network namespaces (`rudder sandbox`). Ctrl-C
# removes everything it made. Extra arguments go to the sandbox
# (e.g. --hosts 4 --backend vxlan).
set -euo pipefail
cd "$(dirname "$0")/.."
./build
exec bin/rudder sandbox "$@"
