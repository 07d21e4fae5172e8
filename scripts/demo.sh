#!/usr/bin/env bash
# Set up .venv and run the example DAG end to end against the built-in emulator,
# storing into the embedded SQLite default, then print the stored gists.
source "$(dirname "$0")/_env.sh"
ensure_venv ""
exec "$PY" "$ROOT/scripts/demo.py" "$@"
