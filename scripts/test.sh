#!/usr/bin/env bash
# Set up the environment (packages, deps, build), check the tests' types, then run the test suite.
# Extra arguments are passed through to vitest. Exit code is vitest's.
set -euo pipefail
root="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$root"
"$root/scripts/setup.sh"
# vitest strips types without checking them: the tests are checked against the code here.
npx tsc -p test/tsconfig.json
set +e
npx vitest run "$@"
rc=$?
exit "$rc"
