#!/usr/bin/env bash
# The tests: set up .venv with the dev extra (first time only) and run pytest.
# Extra arguments go to pytest (e.g. -m "not slow", -k sweep).
source "$(dirname "$0")/env.sh" dev
set +e
"$ROOT/.venv/bin/python" -m pytest "$@"
code=$?
set -e
if [ "$code" -eq 5 ]; then
  echo "segtune: pytest collected no tests — failing on purpose" >&2
  exit 1
fi
exit "$code"
