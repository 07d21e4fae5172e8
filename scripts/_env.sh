# Sourced by the scripts: one virtual environment in .venv with the project installed.
set -euo pipefail
ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${GIST_VENV:-$ROOT/.venv}"
PY="$VENV/bin/python"

ensure_venv() {
    local extras="$1"
    if [ ! -x "$PY" ]; then
        python3 -m venv "$VENV"
    fi
    if [ ! -x "$VENV/bin/uv" ]; then
        "$PY" -m pip install --quiet --disable-pip-version-check uv
    fi
    # uv resolves the Airflow dependency tree in seconds where pip takes most of a minute.
    "$VENV/bin/uv" pip install --quiet --python "$PY" -e "$ROOT[$extras]"
}
