# Sourced by scripts/demo.sh and scripts/test.sh: make (or reuse) .venv and install
# segtune into it. torch is pinned to the build this machine kind serves from local
# disk (an unpinned torch may download several GB).
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PY="${PYTHON:-python3}"
if [ ! -x .venv/bin/python ]; then
  echo "segtune: creating .venv" >&2
  "$PY" -m venv .venv
fi
VENV_PY="$ROOT/.venv/bin/python"
TORCH_PIN="${SEGTUNE_TORCH_PIN:-torch==2.14.1 torchvision==0.29.1}"
EXTRAS="${1:-}"
stamp=".venv/.segtune-installed${EXTRAS:+-$EXTRAS}"
if [ ! -f "$stamp" ] || [ pyproject.toml -nt "$stamp" ]; then
  echo "segtune: installing into .venv (${EXTRAS:-runtime})" >&2
  "$VENV_PY" -m pip install -q --upgrade pip
  # shellcheck disable=SC2086
  "$VENV_PY" -m pip install -q $TORCH_PIN
  "$VENV_PY" -m pip install -q -e ".${EXTRAS:+[$EXTRAS]}"
  touch "$stamp"
fi
