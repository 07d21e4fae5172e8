"""A PostgreSQL server for tests: the one in ``GIST_TEST_POSTGRES_URI``, or a throwaway cluster.

Use the ``postgres_uri`` fixture (session scope). It yields the URI of a fresh, empty database
(``gist_test_<random>``) created on that server and dropped at the end, so tests never touch
whatever else lives there. Resolution order:

1. ``GIST_TEST_POSTGRES_URI`` (e.g. ``postgresql://postgres@127.0.0.1:55432/postgres``): CI starts
   the server; we only create/drop our database on it. A failure to connect is an error, not a skip.
2. Otherwise start a cluster from the PostgreSQL binaries (``GIST_TEST_POSTGRES_BIN``, else the newest
   ``/usr/lib/postgresql/*/bin``, else ``pg_ctl`` on PATH) in a temp dir, on 127.0.0.1 and a free
   port, trust auth, fsync off; stopped by ``pg_ctl stop`` and removed at session end. As root the
   server runs as the ``postgres`` OS user (it refuses root). No binaries -> the tests are skipped.

Register it from a conftest (``pytest_plugins = ["tests.helpers.postgres"]``) or import the fixture.
"""

from __future__ import annotations

import contextlib
import glob
import json
import os
import pwd
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import unquote, urlsplit, urlunsplit

import pytest

ENV_URI = "GIST_TEST_POSTGRES_URI"
ENV_BIN = "GIST_TEST_POSTGRES_BIN"
_PG_USER = "postgres"


def find_pg_bin() -> Path | None:
    """Directory holding ``initdb`` and ``pg_ctl``, or ``None``."""
    candidates: list[str] = []
    if os.environ.get(ENV_BIN):
        candidates.append(os.environ[ENV_BIN])
    candidates += sorted(
        glob.glob("/usr/lib/postgresql/*/bin"), key=lambda p: int(Path(p).parent.name or 0), reverse=True
    )
    on_path = shutil.which("pg_ctl")
    if on_path:
        candidates.append(str(Path(on_path).parent))
    for candidate in candidates:
        path = Path(candidate)
        if (path / "initdb").exists() and (path / "pg_ctl").exists():
            return path
    return None


def _free_port() -> int:
    with contextlib.closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@dataclass
class ThrowawayCluster:
    """A PostgreSQL cluster in a temp dir; ``stop()`` shuts it down and deletes it."""

    bin_dir: Path
    data_dir: Path
    port: int
    run_as: str | None  # OS user to run as, None = current user

    @property
    def uri(self) -> str:
        return f"postgresql://{_PG_USER}@127.0.0.1:{self.port}/postgres"

    def _cmd(self, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / args[0]), *args[1:]]
        if self.run_as:
            cmd = ["runuser", "-u", self.run_as, "--", *cmd]
        return subprocess.run(cmd, capture_output=True, text=True, timeout=120, check=False)

    def start(self) -> None:
        init = self._cmd(
            "initdb", "-D", str(self.data_dir), "-U", _PG_USER, "-A", "trust", "-E", "UTF8",
            "--locale=C", "--no-sync",
        )  # fmt: skip
        if init.returncode != 0:
            raise RuntimeError(f"initdb failed:\n{init.stdout}\n{init.stderr}")
        # Unix socket in the data dir (not /var/run), TCP on loopback only, no fsync: tests only.
        opts = f"-k {self.data_dir} -h 127.0.0.1 -p {self.port} -c fsync=off -c full_page_writes=off"
        log = self.data_dir / "server.log"
        started = self._cmd("pg_ctl", "-D", str(self.data_dir), "-o", opts, "-l", str(log), "-w", "start")
        if started.returncode != 0:
            text = log.read_text() if log.exists() else ""
            raise RuntimeError(f"pg_ctl start failed:\n{started.stdout}\n{started.stderr}\n{text}")

    def stop(self) -> None:
        self._cmd("pg_ctl", "-D", str(self.data_dir), "-m", "fast", "-w", "stop")
        shutil.rmtree(self.data_dir.parent, ignore_errors=True)


def start_throwaway_cluster(bin_dir: Path) -> ThrowawayCluster:
    """initdb + start a cluster owned by ``postgres`` (when root) or the current user."""
    parent = Path(tempfile.mkdtemp(prefix="gist-pg-"))
    data_dir = parent / "data"
    run_as: str | None = None
    if os.geteuid() == 0:
        # The server refuses to run as root; /tmp is world-traversable, the dir must be postgres'.
        run_as = _PG_USER
        entry = pwd.getpwnam(_PG_USER)
        os.chown(parent, entry.pw_uid, entry.pw_gid)
    cluster = ThrowawayCluster(bin_dir=bin_dir, data_dir=data_dir, port=_free_port(), run_as=run_as)
    try:
        cluster.start()
    except BaseException:
        cluster.stop()
        raise
    return cluster


def with_database(uri: str, database: str) -> str:
    """``uri`` pointing at another database on the same server."""
    parts = urlsplit(uri)
    return urlunsplit(parts._replace(path=f"/{database}"))


def _admin(uri: str, statement: str) -> None:
    import psycopg

    with psycopg.connect(uri, autocommit=True, connect_timeout=10) as conn:
        conn.execute(statement)


def airflow_conn_json(uri: str, *, password: str | None = None) -> str:
    """An ``AIRFLOW_CONN_<ID>`` value (JSON form) for a ``postgresql://`` URI.

    ``password`` overrides the URI's (trust auth ignores it; tests use that to check a password
    never shows up in logs, results or errors).
    """
    parts = urlsplit(uri)
    return json.dumps(
        {
            "conn_type": "postgres",
            "host": parts.hostname,
            "port": parts.port or 5432,
            "login": unquote(parts.username or ""),
            "password": password if password is not None else unquote(parts.password or ""),
            "schema": parts.path.lstrip("/") or "postgres",
        }
    )


@pytest.fixture(scope="session")
def postgres_uri() -> Iterator[str]:
    """URI of a fresh, empty test database (see the module docstring); skips if no server can exist."""
    cluster: ThrowawayCluster | None = None
    server_uri = os.environ.get(ENV_URI)
    if not server_uri:
        bin_dir = find_pg_bin()
        if bin_dir is None:
            reason = f"no PostgreSQL: set {ENV_URI} or install the server binaries (initdb, pg_ctl)"
            if os.environ.get("GIST_REQUIRE_POSTGRES") == "1":  # CI: a silent skip would hide a gap
                pytest.fail(reason)
            pytest.skip(reason)
        cluster = start_throwaway_cluster(bin_dir)
        server_uri = cluster.uri
    database = f"gist_test_{uuid.uuid4().hex[:12]}"
    try:
        _admin(server_uri, f"CREATE DATABASE {database} ENCODING 'UTF8' TEMPLATE template0")
        yield with_database(server_uri, database)
    finally:
        with contextlib.suppress(Exception):
            _admin(server_uri, f"DROP DATABASE IF EXISTS {database} WITH (FORCE)")
        if cluster is not None:
            cluster.stop()
