#!/usr/bin/env bash
# The whole test suite, from a fresh machine (`npm test`): builds everything
# (./build installs what is missing), then runs unit, integration (real etcd)
# and end-to-end tests (network namespaces; needs root) with node's test runner,
# after the lint (typescript-eslint, and scripts/check-c.sh for native/).
#   npm test                 lint and all suites
#   npm test -- unit e2e     chosen suites (lint | unit | integration | e2e)
set -euo pipefail
cd "$(dirname "$0")/.."
./build
suites=("$@")
[ ${#suites[@]} -eq 0 ] && suites=(lint unit integration e2e)
status=0
for s in "${suites[@]}"; do
  if [ "$s" = lint ]; then
    echo "=== lint ==="
    npm run --silent lint || status=1
    continue
  fi
  shopt -s nullglob
  files=(dist/test/"$s"/*.test.js)
  shopt -u nullglob
  [ ${#files[@]} -eq 0 ] && { echo "test: no $s tests"; continue; }
  echo "=== $s tests ==="
  conc=1
  [ "$s" = unit ] && conc=2
  if [ "$s" = e2e ]; then
    # Two files at a time: most e2e time is waiting (lease TTLs, an etcd or API
    # server kept down), and every file builds its own namespaces under its own
    # run tag. The slowest start first so that both lanes end together.
    conc=2
    slow=() rest=()
    for f in "${files[@]}"; do
      case "$(basename "$f")" in
        faults.* | kube.* | wireguard-security.* | dataplane.* | wireguard-backend.*) slow+=("$f") ;;
        *) rest+=("$f") ;;
      esac
    done
    files=("${slow[@]}" "${rest[@]}")
  fi
  node --test --test-concurrency="$conc" "${files[@]}" || status=1
done
exit $status
