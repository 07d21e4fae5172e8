# Sourced by scripts/airflow-local.sh: the parts of `up --executor celery` that LocalExecutor
# does not have. PostgreSQL (metadata DB, Celery result backend, gist store), Redis (broker),
# and N Celery workers, each with its own AIRFLOW_HOME and TMPDIR and a log server on a
# loopback address of its own (127.0.0.2, 127.0.0.3, ...): that address is also the worker's
# hostname, so the UI tells the workers apart and fetches a task's log from the one that ran it.
#
# Settings (environment): GIST_PG_PORT (15432), GIST_PG_BIN (newest /usr/lib/postgresql/*/bin),
# GIST_REDIS_PORT (16379), GIST_CELERY_WORKERS (2), GIST_CELERY_CONCURRENCY (4 per worker),
# GIST_WORKER_LOG_PORT (8793), GIST_HEARTBEAT_TIMEOUT (300 s before a silent task counts as
# lost and is retried), GIST_QUEUED_TIMEOUT (600 s before a task taken by a lost worker but not
# started is queued again), GIST_LOCAL_STORE (none: configure no gist store).

PG_PORT="${GIST_PG_PORT:-15432}"
REDIS_PORT="${GIST_REDIS_PORT:-16379}"
WORKERS="${GIST_CELERY_WORKERS:-2}"
CONCURRENCY="${GIST_CELERY_CONCURRENCY:-4}"
WORKER_LOG_PORT="${GIST_WORKER_LOG_PORT:-8793}"
PG_DIR="$HOME_DIR/postgres"
PG_DATA="$PG_DIR/data"
REDIS_DIR="$HOME_DIR/redis"
WORKER_ROOT="$HOME_DIR/workers"

worker_names() {
    local i
    for ((i = 1; i <= WORKERS; i++)); do printf 'worker-%s worker-%s-logs ' "$i" "$i"; done
}

worker_address() { printf '127.0.0.%s' "$(($1 + 1))"; }

pg_bin() {
    local dir
    if [ -n "${GIST_PG_BIN:-}" ]; then
        printf '%s' "$GIST_PG_BIN"
        return
    fi
    dir="$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -t/ -k5 -n | tail -n1)"
    if [ -z "$dir" ] && command -v pg_ctl >/dev/null; then
        dir="$(dirname "$(command -v pg_ctl)")"
    fi
    [ -n "$dir" ] && [ -x "$dir/initdb" ] || die "PostgreSQL server binaries not found (apt-get install -y postgresql, or set GIST_PG_BIN)"
    printf '%s' "$dir"
}

# The server refuses to run as root: then the cluster belongs to the `postgres` OS user.
pg_run() {
    if [ "$(id -u)" = 0 ]; then
        runuser -u postgres -- "$@"
    else
        "$@"
    fi
}

pg_superuser() { if [ "$(id -u)" = 0 ]; then echo postgres; else id -un; fi; }

pg_running() { [ -f "$PG_DATA/PG_VERSION" ] && pg_run "$(pg_bin)/pg_ctl" -D "$PG_DATA" status >/dev/null 2>&1; }

# Alive and not a zombie waiting to be reaped.
pid_running() {
    local state
    state="$(sed 's/.*) //' "/proc/$1/stat" 2>/dev/null | cut -c1)" || return 1
    [ -n "$state" ] && [ "$state" != Z ] && [ "$state" != X ]
}

postmaster_pid() { [ -f "$PG_DATA/postmaster.pid" ] && head -n1 "$PG_DATA/postmaster.pid" || true; }

ensure_postgres() {
    local bin dir
    bin="$(pg_bin)"
    mkdir -p "$PG_DIR"
    if [ "$(id -u)" = 0 ]; then
        # `postgres` must reach its data dir: the home gets o+x (enter, not list); any other
        # folder on the way is the user's to open.
        chmod o+x "$HOME_DIR" "$PG_DIR"
        dir="$HOME_DIR"
        while [ "$dir" != / ]; do
            dir="$(dirname "$dir")"
            runuser -u postgres -- test -x "$dir" ||
                die "the postgres user cannot enter $dir (chmod o+x it, or set GIST_LOCAL_HOME elsewhere)"
        done
        chown postgres: "$PG_DIR"
    fi
    if [ ! -f "$PG_DATA/PG_VERSION" ]; then
        log "creating a PostgreSQL cluster in $PG_DATA ..."
        pg_run "$bin/initdb" -D "$PG_DATA" -U "$(pg_superuser)" --auth-local=peer \
            --auth-host=scram-sha-256 -E UTF8 --locale=C >"$LOG_DIR/initdb.log" 2>&1 ||
            die "initdb failed: $LOG_DIR/initdb.log"
    fi
    if ! pg_running; then
        port_free "$PG_PORT" || die "port $PG_PORT (PostgreSQL) is in use; set GIST_PG_PORT"
        # TCP on loopback only; the Unix socket in the data dir, not /var/run.
        pg_run "$bin/pg_ctl" -D "$PG_DATA" -o "-k $PG_DATA -h 127.0.0.1 -p $PG_PORT" \
            -l "$PG_DIR/server.log" -w -t 60 start >/dev/null || die "PostgreSQL did not start: $PG_DIR/server.log"
        log "started postgres (pid $(postmaster_pid), port $PG_PORT)"
    fi
    # Roles and databases, idempotent; the SQL (with the passwords) goes through stdin, never argv.
    pg_run "$bin/psql" -X -q -v ON_ERROR_STOP=1 -h "$PG_DATA" -p "$PG_PORT" -U "$(pg_superuser)" -d postgres \
        >"$LOG_DIR/pg-setup.log" 2>&1 <<EOF || die "PostgreSQL setup failed: $LOG_DIR/pg-setup.log"
SELECT 'CREATE ROLE airflow LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'airflow') \gexec
ALTER ROLE airflow PASSWORD '$GIST_LOCAL_PG_PASSWORD';
SELECT 'CREATE DATABASE airflow OWNER airflow' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'airflow') \gexec
SELECT 'CREATE ROLE gist_store LOGIN' WHERE NOT EXISTS (SELECT FROM pg_roles WHERE rolname = 'gist_store') \gexec
ALTER ROLE gist_store PASSWORD '$GIST_LOCAL_STORE_PASSWORD';
SELECT 'CREATE DATABASE gists OWNER gist_store' WHERE NOT EXISTS (SELECT FROM pg_database WHERE datname = 'gists') \gexec
EOF
}

ensure_redis() {
    local server
    server="$(command -v redis-server || true)"
    [ -n "$server" ] || die "redis-server not found (apt-get install -y redis-server)"
    procs alive redis && return
    port_free "$REDIS_PORT" || die "port $REDIS_PORT (Redis) is in use; set GIST_REDIS_PORT"
    mkdir -p "$REDIS_DIR"
    # A config file, not flags: the password stays out of the process list.
    (
        umask 077
        cat >"$REDIS_DIR/redis.conf" <<EOF
bind 127.0.0.1
port $REDIS_PORT
protected-mode yes
daemonize no
save ""
appendonly no
dir $REDIS_DIR
logfile ""
requirepass $GIST_LOCAL_REDIS_PASSWORD
EOF
    )
    procs start --name redis --log "$LOG_DIR/redis.log" -- "$server" "$REDIS_DIR/redis.conf" ||
        die "Redis did not start: $LOG_DIR/redis.log"
    "$PY" - <<'EOF' || die "Redis does not answer: $LOG_DIR/redis.log"
import os, time
import redis
client = redis.Redis.from_url(os.environ["AIRFLOW__CELERY__BROKER_URL"], socket_timeout=2)
deadline = time.monotonic() + 20
while True:
    try:
        client.ping()
        break
    except redis.RedisError:
        if time.monotonic() > deadline:
            raise
        time.sleep(0.2)
EOF
}

export_celery_env() {
    local db="airflow:$GIST_LOCAL_PG_PASSWORD@127.0.0.1:$PG_PORT/airflow"
    export AIRFLOW__CORE__EXECUTOR=CeleryExecutor
    export AIRFLOW__DATABASE__SQL_ALCHEMY_CONN="postgresql+psycopg://$db"
    export AIRFLOW__CELERY__BROKER_URL="redis://:$GIST_LOCAL_REDIS_PASSWORD@127.0.0.1:$REDIS_PORT/0"
    export AIRFLOW__CELERY__RESULT_BACKEND="db+postgresql+psycopg://$db"
    export AIRFLOW__CELERY__WORKER_CONCURRENCY="$CONCURRENCY"
    # Redelivery of an unacknowledged task (a lost worker's) after a day: Airflow's own default,
    # set so Celery does not warn; the scheduler retries a lost task long before (below).
    export AIRFLOW__CELERY_BROKER_TRANSPORT_OPTIONS__VISIBILITY_TIMEOUT=86400
    export AIRFLOW__CORE__PARALLELISM=$((WORKERS * CONCURRENCY))
    export AIRFLOW__LOGGING__WORKER_LOG_SERVER_PORT="$WORKER_LOG_PORT"
    # A task whose worker died stops heartbeating; after this long it is failed and retried
    # (on a worker that is alive). Airflow's default is 300 s; the tests use 30.
    export AIRFLOW__SCHEDULER__TASK_INSTANCE_HEARTBEAT_TIMEOUT="${GIST_HEARTBEAT_TIMEOUT:-300}"
    # A task a lost worker had taken but not started yet never heartbeats: it stays queued until
    # this timeout, then is revoked and queued again. Airflow's default is 600 s (checked every
    # 120 s); the tests use 60.
    if [ -n "${GIST_QUEUED_TIMEOUT:-}" ]; then
        export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT="$GIST_QUEUED_TIMEOUT"
        export AIRFLOW__SCHEDULER__TASK_QUEUED_TIMEOUT_CHECK_INTERVAL=$(((GIST_QUEUED_TIMEOUT + 3) / 4))
    fi
    local i addresses=""
    for ((i = 1; i <= WORKERS; i++)); do addresses+=",$(worker_address "$i")"; done
    export NO_PROXY="$NO_PROXY$addresses"
}

configure_store() {
    configure_connection gist_pacing "The workers' shared rate-limit windows (scripts/airflow-local.sh)"
    # gist_store_default: every store task, the refresh and the gist view use it (docs/storage.md).
    if [ "${GIST_LOCAL_STORE:-}" = none ]; then
        log "GIST_LOCAL_STORE=none: no gist store configured; store tasks fail until gist_store_default is set"
        return
    fi
    if [ -n "${AIRFLOW_CONN_GIST_STORE_DEFAULT:-}" ]; then
        log "gist store: AIRFLOW_CONN_GIST_STORE_DEFAULT from the environment"
        return
    fi
    configure_connection gist_store_default "The deployment's gist store (scripts/airflow-local.sh)"
    log "gist store: connection gist_store_default (PostgreSQL database gists, unless you changed it)"
}

configure_connection() {
    # A PostgreSQL connection to the gists database, in the metadata DB, unless it exists already.
    local conn_id="$1" description="$2"
    GIST_CONN_ID="$conn_id" GIST_CONN_DESCRIPTION="$description" GIST_STORE_PORT="$PG_PORT" \
        GIST_LOCAL_STORE_PASSWORD="$GIST_LOCAL_STORE_PASSWORD" "$PY" - >>"$LOG_DIR/db-migrate.log" 2>&1 <<'EOF' ||
import os
from airflow.models.connection import Connection
from airflow.utils.session import create_session

conn_id = os.environ["GIST_CONN_ID"]
with create_session() as session:
    if session.query(Connection).filter(Connection.conn_id == conn_id).first() is None:
        session.add(
            Connection(
                conn_id=conn_id,
                conn_type="postgres",
                description=os.environ["GIST_CONN_DESCRIPTION"],
                host="127.0.0.1",
                port=int(os.environ["GIST_STORE_PORT"]),
                login="gist_store",
                password=os.environ["GIST_LOCAL_STORE_PASSWORD"],
                schema="gists",
            )
        )
        print(f"{conn_id}: created")
    else:
        print(f"{conn_id}: kept as it is")
EOF
        die "could not configure $conn_id: $LOG_DIR/db-migrate.log"
}

start_workers() {
    local i name addr dir
    for ((i = 1; i <= WORKERS; i++)); do
        name="worker-$i"
        addr="$(worker_address "$i")"
        dir="$WORKER_ROOT/$name"
        mkdir -p "$dir/home" "$dir/tmp"
        if ! procs alive "$name-logs"; then
            port_free "$WORKER_LOG_PORT" "$addr" || die "port $addr:$WORKER_LOG_PORT is in use; set GIST_WORKER_LOG_PORT"
        fi
        (
            # Nothing on this worker's disk is another's: its own home, logs and temp folder.
            # The DAGs folder is the one shared thing, as a synced DAG bundle would be.
            export AIRFLOW_HOME="$dir/home" TMPDIR="$dir/tmp"
            export AIRFLOW__LOGGING__BASE_LOG_FOLDER="$dir/home/logs"
            export GIST_WORKER_HOSTNAME="$addr"
            export AIRFLOW__CORE__HOSTNAME_CALLABLE=gist_local_worker.hostname
            export PYTHONPATH="$ROOT/scripts/worker_site${PYTHONPATH:+:$PYTHONPATH}"
            export PYTHONDONTWRITEBYTECODE=1 # no __pycache__ in the shared DAGs folder
            unset AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE
            # Airflow's own log server binds every interface: this one only the worker's address.
            procs start --name "$name-logs" --log "$LOG_DIR/$name-logs.log" -- "$VENV/bin/uvicorn" \
                airflow.utils.serve_logs.log_server:get_app --factory --host "$addr" \
                --port "$WORKER_LOG_PORT" --no-access-log --log-level warning || exit 1
            procs start --name "$name" --log "$LOG_DIR/$name.log" -- "$VENV/bin/airflow" celery worker \
                --concurrency "$CONCURRENCY" --celery-hostname "$name@%h" --skip-serve-logs \
                --without-mingle --without-gossip || exit 1
        ) || die "could not start $name (logs in $LOG_DIR)"
    done
}

wait_workers() {
    # A worker is ready once Celery says so in its log; its log server once it accepts.
    "$PY" - "$LOG_DIR" "$WORKERS" "$WORKER_LOG_PORT" "$HEALTH_TIMEOUT" <<'EOF' || return 1
import re, socket, sys, time
from pathlib import Path
log_dir, workers, port, timeout = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
deadline = time.monotonic() + timeout
waiting = {f"worker-{i}": f"127.0.0.{i + 1}" for i in range(1, workers + 1)}
while waiting and time.monotonic() < deadline:
    for name, addr in list(waiting.items()):
        log = log_dir / f"{name}.log"
        text = log.read_text(errors="replace") if log.exists() else ""
        if not re.search(rf"{name}@\S+ ready\.", text):
            continue
        try:
            socket.create_connection((addr, port), timeout=1).close()
        except OSError:
            continue
        del waiting[name]
    time.sleep(0.5)
if waiting:
    print(f"[airflow-local] not ready: {', '.join(sorted(waiting))}", file=sys.stderr)
    sys.exit(1)
EOF
}

stop_backends() {
    # After the Airflow components: Redis, then PostgreSQL (fast mode: clients are cut off).
    procs stop --grace "$STOP_GRACE" redis || true
    if [ -f "$PG_DATA/PG_VERSION" ] && pg_running; then
        local pid bin
        pid="$(postmaster_pid)"
        bin="$(pg_bin)"
        log "stopping postgres (pid $pid)"
        pg_run "$bin/pg_ctl" -D "$PG_DATA" -m fast -w -t 30 stop >/dev/null 2>&1 ||
            pg_run "$bin/pg_ctl" -D "$PG_DATA" -m immediate -w -t 30 stop >/dev/null 2>&1 || true
        # pg_ctl returns once the pid file is gone; the postmaster itself may take a moment more.
        local waited=0
        while [ -n "$pid" ] && pid_running "$pid" && [ "$waited" -lt 50 ]; do
            sleep 0.2
            waited=$((waited + 1))
        done
        if [ -n "$pid" ] && pid_running "$pid"; then
            log "postgres (pid $pid) did not stop; SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
        fi
    fi
}

status_backends() {
    if [ -f "$PG_DATA/PG_VERSION" ] && pg_running; then
        printf '%-16s%s\n' postgres "running (pid $(postmaster_pid), port $PG_PORT)"
    elif [ -d "$PG_DATA" ]; then
        printf '%-16s%s\n' postgres stopped
    fi
}
