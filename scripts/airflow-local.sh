#!/usr/bin/env bash
# A real local Airflow deployment of this project, on loopback only.
#
#   scripts/airflow-local.sh up                     # LocalExecutor: emulator, api-server, scheduler,
#                                                   #   dag-processor, triggerer; SQLite metadata DB
#   scripts/airflow-local.sh up --executor celery   # the production shape: PostgreSQL, Redis and two
#                                                   #   Celery workers with a disk each (docs/deployment.md)
#   scripts/airflow-local.sh status                 # which processes run, and the API server's health
#   scripts/airflow-local.sh down                   # stop exactly what `up` started, by process id
#
# Everything lives in its own AIRFLOW_HOME (default .airflow-local/, never the tests' home):
# this repo's dags/, SimpleAuthManager with one admin user.
#
# The TwelveLabs connection: by default a local emulator of the API is started, seeded with a
# small catalog (index "gist-catalog", which the scheduled gist_catalog_refresh refreshes at
# once), and `twelvelabs_default` points at it. To use the real API instead, export the
# connection before `up` (the emulator is then not started, and the DAGs start paused: nothing
# spends your API budget until you unpause it):
#   export AIRFLOW_CONN_TWELVELABS_DEFAULT='{"conn_type": "twelvelabs",
#     "host": "https://api.twelvelabs.io", "password": "<your API key>"}'
#
# Settings (environment): GIST_LOCAL_HOME, GIST_LOCAL_PORT (8080), GIST_EMULATOR_PORT (8089),
# GIST_LOCAL_ADMIN_PASSWORD (generated once and kept in the home), GIST_EMULATOR_ARGS (extra
# emulator flags), GIST_EMULATOR_SEED (6 videos in "gist-catalog"; 0: none), GIST_VENV (default
# .venv, created on first use), GIST_HEALTH_TIMEOUT (180 s), GIST_LOCAL_DAGS_FOLDER (default:
# this repo's dags/), GIST_LOCAL_DAGS_PAUSED (True/False: DAGs paused when first parsed),
# GIST_STOP_GRACE (30 s between SIGTERM and SIGKILL). Celery's own: see scripts/local_celery.sh.
source "$(dirname "$0")/_env.sh"

HOME_DIR="${GIST_LOCAL_HOME:-$ROOT/.airflow-local}"
API_PORT="${GIST_LOCAL_PORT:-8080}"
EMU_PORT="${GIST_EMULATOR_PORT:-8089}"
HEALTH_TIMEOUT="${GIST_HEALTH_TIMEOUT:-180}"
STOP_GRACE="${GIST_STOP_GRACE:-30}"
PID_DIR="$HOME_DIR/pids"
LOG_DIR="$HOME_DIR/logs/components"
SECRETS="$HOME_DIR/local-secrets.env"
DEPLOYMENT="$HOME_DIR/deployment.env"
AIRFLOW_COMPONENTS=(api-server scheduler dag-processor triggerer)
SEED_INDEX="gist-catalog" # the default index of dags/gist_catalog_refresh.py
EXECUTOR=local

log() { printf '[airflow-local] %s\n' "$*" >&2; }
die() {
    log "error: $*"
    exit 1
}

# The process bookkeeping (start by pid, stop whole process trees) needs only the standard library.
procs() {
    local py="$PY"
    [ -x "$py" ] || py=python3
    "$py" "$ROOT/scripts/local_procs.py" "$1" --dir "$PID_DIR" "${@:2}"
}

port_free() {
    python3 - "$1" "${2:-127.0.0.1}" <<'EOF'
import socket, sys
s = socket.socket()
# A port that only has connections closing (TIME_WAIT) is free for a server that sets this too.
s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
try:
    s.bind((sys.argv[2], int(sys.argv[1])))
except OSError:
    sys.exit(1)
finally:
    s.close()
EOF
}

# The settings of the deployment that runs in this home: `status` and `down` must describe the
# deployment `up` started, whatever the environment says now.
load_deployment() {
    if [ -f "$DEPLOYMENT" ]; then
        # shellcheck disable=SC1090
        source "$DEPLOYMENT"
    fi
}

ensure_secrets() {
    # Generated once per home (a key missing from an older home is added): the admin password,
    # the keys every component must share (tokens, encrypted trigger kwargs and log requests
    # cross processes and workers), and the local services' passwords.
    (
        umask 077
        python3 - "$SECRETS" <<'EOF'
import base64, os, secrets, sys
path = sys.argv[1]
have = {}
if os.path.exists(path):
    for line in open(path):
        if "=" in line:
            have[line.split("=", 1)[0]] = True
wanted = {
    "GIST_LOCAL_GENERATED_PASSWORD": lambda: secrets.token_urlsafe(12),
    "AIRFLOW__API_AUTH__JWT_SECRET": lambda: secrets.token_urlsafe(48),
    "AIRFLOW__CORE__FERNET_KEY": lambda: base64.urlsafe_b64encode(os.urandom(32)).decode(),
    "AIRFLOW__API__SECRET_KEY": lambda: secrets.token_urlsafe(32),
    "GIST_EMULATOR_KEY": lambda: f"tlk_local_{secrets.token_hex(12)}",
    "GIST_LOCAL_PG_PASSWORD": lambda: secrets.token_hex(16),
    "GIST_LOCAL_STORE_PASSWORD": lambda: secrets.token_hex(16),
    "GIST_LOCAL_REDIS_PASSWORD": lambda: secrets.token_hex(16),
}
with open(path, "a") as f:
    for key, make in wanted.items():
        if key not in have:
            f.write(f"{key}={make()}\n")
EOF
    )
    # Not `set -a`: only the Airflow keys go to every process; the services' passwords reach
    # only what needs them.
    # shellcheck disable=SC1090
    source "$SECRETS"
    export AIRFLOW__API_AUTH__JWT_SECRET AIRFLOW__CORE__FERNET_KEY AIRFLOW__API__SECRET_KEY
    ADMIN_PASSWORD="${GIST_LOCAL_ADMIN_PASSWORD:-$GIST_LOCAL_GENERATED_PASSWORD}"
    python3 - "$HOME_DIR/simple_auth_manager_passwords.json" "$ADMIN_PASSWORD" <<'EOF'
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

dags_paused() {
    # The first look: with the seeded emulator the scheduled refresh runs at once, and succeeds.
    # Against the real API nothing runs (and nothing is billed) until the user unpauses a DAG.
    case "${GIST_LOCAL_DAGS_PAUSED:-}" in
        1 | [Tt]rue | TRUE | yes) echo True ;;
        0 | [Ff]alse | FALSE | no) echo False ;;
        "") if [ -n "${AIRFLOW_CONN_TWELVELABS_DEFAULT:-}" ]; then echo True; else echo False; fi ;;
        *) die "GIST_LOCAL_DAGS_PAUSED must be True or False" ;;
    esac
}

ensure_plugin_registered() {
    # The gist view ships with the package (entry point `airflow.plugins`). Until an install
    # carries that entry point, a shim in this home's plugins folder loads it instead; never both.
    mkdir -p "$HOME_DIR/plugins"
    local shim="$HOME_DIR/plugins/gist_view_plugin.py"
    if "$PY" - <<'EOF'; then
import sys
from importlib.metadata import entry_points
ok = any(ep.value.startswith("airflow_provider_gist.") for ep in entry_points(group="airflow.plugins"))
sys.exit(0 if ok else 1)
EOF
        rm -f "$shim"
    else
        printf '%s\n' '"""Loads the gist view plugin (no airflow.plugins entry point installed)."""' \
            'from airflow_provider_gist.plugins.gist_view import GistViewPlugin  # noqa: F401' >"$shim"
    fi
}

start() {
    local name="$1"
    shift
    procs start --name "$name" --log "$LOG_DIR/$name.log" -- "$@" || die "could not start $name"
}

start_emulator() {
    local fresh=1 seed="${GIST_EMULATOR_SEED:-6}"
    procs alive emulator && fresh=0
    if [ "$fresh" = 1 ]; then
        port_free "$EMU_PORT" || die "port $EMU_PORT (emulator) is in use; set GIST_EMULATOR_PORT"
    fi
    # The key through the environment, not argv: it stays out of the process list.
    # shellcheck disable=SC2086
    TWELVELABS_EMULATOR_API_KEY="$GIST_EMULATOR_KEY" start emulator "$PY" -m airflow_provider_gist.emulator \
        --port "$EMU_PORT" ${GIST_EMULATOR_ARGS:-}
    # Under Celery the workers share one rate-limit window (connection gist_pacing, configured
    # with the store): docs/deployment.md, "One API budget across workers".
    local pacing=""
    [ "$EXECUTOR" = celery ] && pacing=', "extra": {"pacing_conn_id": "gist_pacing"}'
    export AIRFLOW_CONN_TWELVELABS_DEFAULT="{\"conn_type\": \"twelvelabs\", \"host\": \"http://127.0.0.1:$EMU_PORT\", \"password\": \"$GIST_EMULATOR_KEY\"$pacing}"
    # A fresh emulator is empty: give the scheduled refresh a small catalog to refresh (the
    # emulator keeps nothing across restarts, so this is once per start, before the scheduler).
    [ "$fresh" = 1 ] && [ "$seed" != 0 ] || seed=0
    "$PY" - "http://127.0.0.1:$EMU_PORT" "$SEED_INDEX" "$seed" <<'EOF' || die "the emulator did not start: $LOG_DIR/emulator.log"
import json, sys, time, urllib.request
url, index, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
deadline = time.monotonic() + 30
while True:
    try:
        urllib.request.urlopen(f"{url}/_emulator/health", timeout=2).close()
        break
    except OSError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
# Names the gists are made from (the emulator derives a video's gist from its filename).
names = [
    "alpine_lake_kayaking.mp4", "city_night_cycling.mp4", "desert_dune_sunset.mp4",
    "forest_trail_camping.mp4", "coral_reef_diving.mp4", "winter_market_cooking.mp4",
]
if count:
    body = json.dumps({"index_name": index, "count": count, "filenames": names[:count]}).encode()
    req = urllib.request.Request(f"{url}/_emulator/seed", data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=10) as resp:
        seeded = json.load(resp)
    print(f"[airflow-local] emulator seeded: index {index!r} with {seeded['count']} ready videos", file=sys.stderr)
EOF
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

record_deployment() {
    cat >"$DEPLOYMENT" <<EOF
EXECUTOR=$EXECUTOR
API_PORT=$API_PORT
EOF
    if [ "$EXECUTOR" = celery ]; then
        cat >>"$DEPLOYMENT" <<EOF
PG_PORT=$PG_PORT
REDIS_PORT=$REDIS_PORT
WORKERS=$WORKERS
WORKER_LOG_PORT=$WORKER_LOG_PORT
EOF
    fi
}

cmd_up() {
    local running_executor
    if [ -f "$DEPLOYMENT" ] && procs alive scheduler; then
        running_executor="$(sed -n 's/^EXECUTOR=//p' "$DEPLOYMENT")"
        [ "$running_executor" = "$EXECUTOR" ] ||
            die "a $running_executor deployment is running in $HOME_DIR; stop it first: $0 down"
    fi
    if [ "$EXECUTOR" = celery ]; then
        ensure_venv "test,dev,celery"
    else
        ensure_venv "test,dev"
    fi
    mkdir -p "$HOME_DIR" "$PID_DIR" "$LOG_DIR"
    ensure_secrets
    export_airflow_env
    [ "$EXECUTOR" = celery ] && export_celery_env
    AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION="$(dags_paused)"
    export AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION
    record_deployment
    ensure_plugin_registered

    if [ -n "${AIRFLOW_CONN_TWELVELABS_DEFAULT:-}" ]; then
        log "using AIRFLOW_CONN_TWELVELABS_DEFAULT from the environment (emulator not started, DAGs start paused)"
        rm -f "$PID_DIR/emulator.pid"
    else
        start_emulator
    fi
    if [ "$EXECUTOR" = celery ]; then
        ensure_postgres
        ensure_redis
    fi

    if ! procs alive api-server; then
        port_free "$API_PORT" || die "port $API_PORT (API server) is in use; set GIST_LOCAL_PORT"
    fi
    log "migrating the metadata DB ..."
    "$VENV/bin/airflow" db migrate >"$LOG_DIR/db-migrate.log" 2>&1 || die "db migrate failed: $LOG_DIR/db-migrate.log"
    [ "$EXECUTOR" = celery ] && configure_store

    start api-server "$VENV/bin/airflow" api-server --host 127.0.0.1 --port "$API_PORT"
    start scheduler "$VENV/bin/airflow" scheduler --skip-serve-logs
    start dag-processor "$VENV/bin/airflow" dag-processor
    start triggerer "$VENV/bin/airflow" triggerer --skip-serve-logs
    [ "$EXECUTOR" = celery ] && start_workers

    if ! wait_healthy || { [ "$EXECUTOR" = celery ] && ! wait_workers; }; then
        log "see the logs in $LOG_DIR; stopping what was started"
        cmd_down
        exit 1
    fi
    cat <<EOF

Airflow is up ($EXECUTOR executor):  http://127.0.0.1:$API_PORT
  login:        admin / $ADMIN_PASSWORD
  manual run:   http://127.0.0.1:$API_PORT/dags/gist_manual  (Trigger)
  gist view:    http://127.0.0.1:$API_PORT/plugin/gists  (Browse > Gists)
  home:         $HOME_DIR   (logs in $LOG_DIR)
  stop with:    scripts/airflow-local.sh down
EOF
    if [ "$EXECUTOR" = celery ]; then
        cat <<EOF
  workers:      $(for ((i = 1; i <= WORKERS; i++)); do printf 'worker-%s (%s) ' "$i" "$(worker_address "$i")"; done)
  metadata DB:  PostgreSQL on 127.0.0.1:$PG_PORT, broker: Redis on 127.0.0.1:$REDIS_PORT
EOF
    fi
    if [ "$AIRFLOW__CORE__DAGS_ARE_PAUSED_AT_CREATION" = True ]; then
        echo "  DAGs start paused: unpause one to run it (gist_catalog_refresh refreshes index \"$SEED_INDEX\" daily)"
    fi
}

all_components() {
    printf '%s ' emulator "${AIRFLOW_COMPONENTS[@]}"
    [ "$EXECUTOR" = celery ] && worker_names
    return 0
}

cmd_down() {
    load_deployment
    local -a names
    read -r -a names <<<"$(all_components)"
    procs stop --grace "$STOP_GRACE" "${names[@]}" || log "some processes could not be stopped (see above)"
    [ "$EXECUTOR" = celery ] && stop_backends
    log "stopped"
}

cmd_status() {
    load_deployment
    local -a names
    read -r -a names <<<"$(all_components)"
    [ "$EXECUTOR" = celery ] && names+=(redis)
    procs status "${names[@]}"
    [ "$EXECUTOR" = celery ] && status_backends
    if procs alive api-server; then
        python3 - "http://127.0.0.1:$API_PORT/api/v2/monitor/health" <<'EOF' || true
import json, sys, urllib.request
try:
    with urllib.request.urlopen(sys.argv[1], timeout=5) as resp:
        health = json.load(resp)
    print("health:", ", ".join(f"{k}={(v or {}).get('status')}" for k, v in health.items()))
except Exception as err:
    print("health: unavailable", type(err).__name__)
EOF
        printf 'URL: http://127.0.0.1:%s (%s executor)\n' "$API_PORT" "$EXECUTOR"
    fi
}

source "$ROOT/scripts/local_celery.sh"

command="${1:-}"
shift || true
while [ $# -gt 0 ]; do
    case "$1" in
        --executor)
            EXECUTOR="${2:-}"
            shift 2 || die "--executor needs a value: local or celery"
            ;;
        --executor=*)
            EXECUTOR="${1#--executor=}"
            shift
            ;;
        *) die "unknown option: $1 (usage: $0 up [--executor local|celery] | status | down)" ;;
    esac
done
case "$EXECUTOR" in
    local | LocalExecutor) EXECUTOR=local ;;
    celery | CeleryExecutor) EXECUTOR=celery ;;
    *) die "--executor must be local or celery, got '$EXECUTOR'" ;;
esac

case "$command" in
    up) cmd_up ;;
    down) cmd_down ;;
    status) cmd_status ;;
    *)
        echo "usage: $0 up [--executor local|celery] | status | down" >&2
        exit 2
        ;;
esac
