#!/usr/bin/env bash
# The C check of `npm run lint` (part of `npm test`): every C file under native/
# is formatted as .clang-format says, and compiles alone with -Wall -Wextra
# -Werror (the addon's flags), whether or not a build or a test includes it.
set -euo pipefail
cd "$(dirname "$0")/.."
mapfile -t files < <(find native -name '*.[ch]' -not -path 'native/build/*' | sort)
status=0
if command -v clang-format >/dev/null; then
  clang-format --dry-run --Werror "${files[@]}" || { echo "check-c: run clang-format -i on the files above" >&2; status=1; }
else
  echo "check-c: clang-format missing (./build installs it)" >&2; status=1
fi
node_inc=""
for d in /usr/include/node "$HOME/.cache/node-gyp/$(node -p process.versions.node)/include/node"; do
  [ -f "$d/node_api.h" ] && { node_inc=$d; break; }
done
[ -n "$node_inc" ] || { echo "check-c: node_api.h not found (./build fetches the headers)" >&2; exit 1; }
for f in "${files[@]}"; do
  [[ $f == *.c ]] || continue
  gcc -std=gnu11 -fsyntax-only -Wall -Wextra -Werror -pthread -DNAPI_VERSION=8 -I native -I "$node_inc" "$f" || status=1
done
[ $status -eq 0 ] && echo "check-c: ${#files[@]} files formatted and warning-free"
exit $status
