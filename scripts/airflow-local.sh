#!/usr/bin/env bash
# A real local Airflow deployment of this project, on 127.0.0.1 only.
#
#   scripts/airflow-local.sh up       # emulator + api-server, scheduler, dag-processor, triggerer
#   scripts/airflow-local.sh status   # which processes run, and the API server's health
#   scripts/airflow-local.sh down     # SIGTERM exactly the processes `up` started, then wait
#
# Everything lives in its own AIRFLOW_HOME (default .airflow-local/, never the tests' home):
# SQLite metadata DB + LocalExecutor, this repo's dags/, SimpleAuthManager with one admin user.
#
# The TwelveLabs connection: by default a local emulator of the API is started and
# `twelvelabs_default` points at it. To use the real API instead, export the connection before
# `up` (nothing else changes; the emulator is then not started):
#   export AIRFLOW_CONN_TWELVELABS_DEFAULT='{"conn_type": "twelvelabs",
#     "host": "https://api.twelvelabs.io", "password": "<your API key>"}'
#
# Settings (environment): GIST_LOCAL_HOME, GIST_LOCAL_PORT (8080), GIST_EMULATOR_PORT (8089),
# GIST_LOCAL_ADMIN_PASSWORD (generated once and kept in the home), GIST_EMULATOR_ARGS (extra
# emulator flags), GIST_VENV (default .venv, created on first use), GIST_HEALTH_TIMEOUT (180 s),
# GIST_LOCAL_DAGS_FOLDER (default: this repo's dags/).
source "$(dirname "$0")/_env.sh"

HOME_DIR="${GIST_LOCAL_HOME:-$ROOT/.airflow-local}"
API_PORT="${GIST_LOCAL_PORT:-8080}"
EMU_PORT="${GIST_EMULATOR_PORT:-8089}"
HEALTH_TIMEOUT="${GIST_HEALTH_TIMEOUT:-180}"
PID_DIR="$HOME_DIR/pids"
LOG_DIR="$HOME_DIR/logs/components"
SECRETS="$HOME_DIR/local-secrets.env"
COMPONENTS=(emulator api-server scheduler dag-processor triggerer)

log() { printf '[airflow-local] %s\n' "$*" >&2; }
die() { log "error: $*"; exit 1; }

pid_of() { [ -f "$PID_DIR/$1.pid" ] && cat "$PID_DIR/$1.pid" || true; }

# True if PID is alive AND is still the process we started (guards against PID reuse).
is_ours() {
    local pid="$1" name="$2"
    [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
    local cmd
    cmd="$(tr '\0' ' ' <"/proc/$pid/cmdline" 2>/dev/null || true)"
    case "$name" in
        emulator) [[ "$cmd" == *airflow_provider_gist.emulator* ]] ;;
        # the API server retitles itself "airflow api_server -- ..."
        *) [[ "$cmd" == *airflow* && ( "$cmd" == *"$name"* || "$cmd" == *"${name//-/_}"* ) ]] ;;
    esac
}

port_free() {
    "$PY" - "$1" <<'EOF'
import socket, sys
s = socket.socket()
try:
    s.bind(("127.0.0.1", int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

ensure_secrets() {
    # Generated once per home: the admin password, the JWT secret and the Fernet key must be
    # the same for every component (tokens and encrypted trigger kwargs cross processes).
    if [ ! -f "$SECRETS" ]; then
        umask 077
        "$PY" - >"$SECRETS" <<'EOF'
import base64, os, secrets
print(f"GIST_LOCAL_GENERATED_PASSWORD={secrets.token_urlsafe(12)}")
print(f"AIRFLOW__API_AUTH__JWT_SECRET={secrets.token_urlsafe(48)}")
print(f"AIRFLOW__CORE__FERNET_KEY={base64.urlsafe_b64encode(os.urandom(32)).decode()}")
print(f"GIST_EMULATOR_KEY=tlk_local_{secrets.token_hex(12)}")
EOF
    fi
    set -a
    # shellcheck disable=SC1090
    source "$SECRETS"
    set +a
    ADMIN_PASSWORD="${GIST_LOCAL_ADMIN_PASSWORD:-$GIST_LOCAL_GENERATED_PASSWORD}"
    "$PY" - "$HOME_DIR/simple_auth_manager_passwords.json" "$ADMIN_PASSWORD" <<'EOF'
import json, os, sys
path, password = sys.argv[1], sys.argv[2]
fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
with os.fdopen(fd, "w") as f:
    json.dump({"admin": password}, f)
EOF
}

export_airflow_env() {
    export AIRFLOW_HOME="$HOME_DIR"
    export AIRFLOW__CORE__DAGS_FOLDER="${GIST_LOCAL_DAGS_FOLDER:-$ROOT/dags}"
    export AIRFLOW__CORE__LOAD_EXAMPLES=False
    export AIRFLOW__CORE__EXECUTOR=LocalExecutor
    export AIRFLOW__CORE__PARALLELISM=4
    export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION=False
    export AIRFLOW__CORE__TEST_CONNECTION=Enabled
    export AIRFLOW__CORE__AUTH_MANAGER=airflow.api_fastapi.auth.managers.simple.simple_auth_manager.SimpleAuthManager
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS=admin:admin
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_ALL_ADMINS=False
    export AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE="$HOME_DIR/simple_auth_manager_passwords.json"
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="sqlite:///$HOME_DIR/airflow.db"
    export AIRFLOW__API__HOST=127.0.0.1
    export AIRFLOW__API__PORT="$API_PORT"
    export AIRFLOW__API__BASE_URL="http://127.0.0.1:$API_PORT"
    export AIRFLOW__CORE__EXECUTION_API_SERVER_URL="http://127.0.0.1:$API_PORT/execution/"
    export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$HOME_DIR/logs"
    # No proxies for loopback traffic between components.
    export NO_PROXY="127.0.0.1,localhost${NO_PROXY:+,$NO_PROXY}"
}

ensure_plugin_registered() {
    # The gist view ships with the package (entry point `airflow.plugins`). Until an install
    # carries that entry point, a shim in this home's plugins folder loads it instead; never both.
    mkdir -p "$HOME_DIR/plugins"
    local shim="$HOME_DIR/plugins/gist_view_plugin.py"
    if "$PY" - <<'EOF'
import sys
from importlib.metadata import entry_points
ok = any(ep.value.startswith("airflow_provider_gist.") for ep in entry_points(group="airflow.plugins"))
sys.exit(0 if ok else 1)
EOF
    then
        rm -f "$shim"
    else
        printf '%s\n' '"""Loads the gist view plugin (no airflow.plugins entry point installed)."""' \
            'from airflow_provider_gist.plugins.gist_view import GistViewPlugin  # noqa: F401' >"$shim"
    fi
}

start() {
    local name="$1"
    shift
    local pid
    pid="$(pid_of "$name")"
    if is_ours "$pid" "$name"; then
        log "$name already running (pid $pid)"
        return
    fi
    nohup "$@" >"$LOG_DIR/$name.log" 2>&1 </dev/null &
    echo $! >"$PID_DIR/$name.pid"
    log "started $name (pid $!, log $LOG_DIR/$name.log)"
}

wait_healthy() {
    log "waiting for health (up to ${HEALTH_TIMEOUT}s) ..."
    "$PY" - "http://127.0.0.1:$API_PORT/api/v2/monitor/health" "$HEALTH_TIMEOUT" <<'EOF' || return 1
import json, sys, time, urllib.request
url, deadline = sys.argv[1], time.monotonic() + float(sys.argv[2])
needed = ("metadatabase", "scheduler", "triggerer", "dag_processor")
last = "no answer"
while time.monotonic() < deadline:
    try:
        with urllib.request.urlopen(url, timeout=5) as resp:
            health = json.load(resp)
        bad = [k for k in needed if (health.get(k) or {}).get("status") != "healthy"]
        if not bad:
            sys.exit(0)
        last = "not healthy yet: " + ", ".join(bad)
    except Exception as err:
        last = f"{type(err).__name__}"
    time.sleep(1)
print(f"[airflow-local] health timeout: {last}", file=sys.stderr)
sys.exit(1)
EOF
}

cmd_up() {
    ensure_venv "test,dev"
    mkdir -p "$HOME_DIR" "$PID_DIR" "$LOG_DIR"
    ensure_secrets
    export_airflow_env
    ensure_plugin_registered

    if [ -n "${AIRFLOW_CONN_TWELVELABS_DEFAULT:-}" ]; then
        log "using AIRFLOW_CONN_TWELVELABS_DEFAULT from the environment (emulator not started)"
        rm -f "$PID_DIR/emulator.pid"
    else
        if ! is_ours "$(pid_of emulator)" emulator; then
            port_free "$EMU_PORT" || die "port $EMU_PORT (emulator) is in use; set GIST_EMULATOR_PORT"
        fi
        # shellcheck disable=SC2086
        start emulator "$PY" -m airflow_provider_gist.emulator --port "$EMU_PORT" \
            --api-key "$GIST_EMULATOR_KEY" ${GIST_EMULATOR_ARGS:-}
        export AIRFLOW_CONN_TWELVELABS_DEFAULT="{\"conn_type\": \"twelvelabs\", \"host\": \"http://127.0.0.1:$EMU_PORT\", \"password\": \"$GIST_EMULATOR_KEY\"}"
    fi

    if ! is_ours "$(pid_of api-server)" api-server; then
        port_free "$API_PORT" || die "port $API_PORT (API server) is in use; set GIST_LOCAL_PORT"
    fi
    log "migrating the metadata DB in $HOME_DIR ..."
    "$VENV/bin/airflow" db migrate >"$LOG_DIR/db-migrate.log" 2>&1 || die "db migrate failed: $LOG_DIR/db-migrate.log"

    start api-server "$VENV/bin/airflow" api-server --host 127.0.0.1 --port "$API_PORT"
    start scheduler "$VENV/bin/airflow" scheduler --skip-serve-logs
    start dag-processor "$VENV/bin/airflow" dag-processor
    start triggerer "$VENV/bin/airflow" triggerer --skip-serve-logs

    if ! wait_healthy; then
        log "see the logs in $LOG_DIR; stopping what was started"
        cmd_down
        exit 1
    fi
    cat <<EOF

Airflow is up:  http://127.0.0.1:$API_PORT
  login:        admin / $ADMIN_PASSWORD
  manual run:   http://127.0.0.1:$API_PORT/dags/gist_manual  (Trigger)
  gist view:    http://127.0.0.1:$API_PORT/plugin/gists  (Browse > Gists)
  home:         $HOME_DIR   (logs in $LOG_DIR)
  stop with:    scripts/airflow-local.sh down
EOF
}

cmd_down() {
    local name pid waited
    local -a stopping=()
    for name in "${COMPONENTS[@]}"; do
        pid="$(pid_of "$name")"
        if is_ours "$pid" "$name"; then
            kill -TERM "$pid" 2>/dev/null && stopping+=("$name:$pid") && log "SIGTERM $name (pid $pid)"
        elif [ -n "$pid" ]; then
            rm -f "$PID_DIR/$name.pid"
        fi
    done
    for entry in "${stopping[@]}"; do
        name="${entry%%:*}"
        pid="${entry##*:}"
        waited=0
        while kill -0 "$pid" 2>/dev/null && [ "$waited" -lt 60 ]; do
            sleep 0.5
            waited=$((waited + 1))
        done
        if kill -0 "$pid" 2>/dev/null; then
            log "$name (pid $pid) ignored SIGTERM for 30s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
        rm -f "$PID_DIR/$name.pid"
    done
    log "stopped"
}

cmd_status() {
    local name pid running=0
    for name in "${COMPONENTS[@]}"; do
        pid="$(pid_of "$name")"
        if is_ours "$pid" "$name"; then
            printf '%-14s running (pid %s)\n' "$name" "$pid"
            running=1
        else
            printf '%-14s stopped\n' "$name"
        fi
    done
    if [ "$running" = 1 ] && [ -x "$PY" ]; then
        "$PY" - "http://127.0.0.1:$API_PORT/api/v2/monitor/health" <<'EOF' || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
        health = json.load(resp)
    print("health:", ", ".join(f"{k}={(v or {}).get('status')}" for k, v in health.items()))
except Exception as err:
    print("health: unavailable", type(err).__name__)
EOF
        printf 'URL: http://127.0.0.1:%s\n' "$API_PORT"
    fi
}

case "${1:-}" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up|down|status" >&2
        exit 2
        ;;
esac
