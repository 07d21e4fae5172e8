#!/usr/bin/env bash
# Set up .venv and run the whole test suite: lint, types, then pytest (unit, contract,
# emulator, integration with dag.test(), SQLite and PostgreSQL storage).
source "$(dirname "$0")/_env.sh"
ensure_venv "test,dev"
cd "$ROOT"
"$VENV/bin/ruff" check .
"$VENV/bin/mypy"
exec "$PY" -m pytest -p no:cacheprovider "$@"
