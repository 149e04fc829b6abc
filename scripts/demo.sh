#!/usr/bin/env bash
# The main job: set up .venv (first time only) and run `segtune demo`.
# Extra arguments go to `segtune demo` (e.g. --out DIR, --workers 2).
# An empty first argument: the runtime install (without it, bash would hand env.sh
# this script's own arguments, and `--out DIR` would be taken for an extra to install).
source "$(dirname "$0")/env.sh" ""
exec "$ROOT/.venv/bin/segtune" demo "$@"
