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
  node --test --test-concurrency="$conc" "${files[@]}" || status=1
done
exit $status
