#!/usr/bin/env bash
# Set up the environment (packages, deps, build) then run the test suite.
# Extra arguments are passed through to vitest. Exit code is vitest's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
set +e
npx vitest run "$@"
rc=$?
exit "$rc"
