# Sourced by scripts/demo and scripts/test: a virtual environment with the pinned stack.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
PYTHON="${PYTHON:-python3.11}"
command -v "$PYTHON" >/dev/null || PYTHON=python3
if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv with $("$PYTHON" --version)"
  "$PYTHON" -m venv .venv
fi
STAMP=.venv/.crm_pipeline-installed
if [ ! -f "$STAMP" ] || [ pyproject.toml -nt "$STAMP" ] || [ "${1:-}" = "--force" ]; then
  echo ">> installing the pinned stack (about a minute the first time)"
  .venv/bin/python -m pip install -q --upgrade pip
  # torch is pinned exactly: its CPU wheel is preinstalled here; ranges pull a CUDA build.
  .venv/bin/python -m pip install -q "torch==2.13.0"
  .venv/bin/python -m pip install -q -e ".[dev]"
  touch "$STAMP"
fi
