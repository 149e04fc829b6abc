#!/usr/bin/env bash
# The main job: set up .venv (first time only) and run `segtune demo`.
# Extra arguments go to `segtune demo` (e.g. --out DIR, --workers 2).
source "$(dirname "$0")/env.sh"
exec "$ROOT/.venv/bin/segtune" demo "$@"
