"""The example DAG files import cleanly and do no network work at parse time."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap

from tests.conftest import REPO

PARSE_WITHOUT_NETWORK = textwrap.dedent(
    """
    import socket, sys

    def refuse(*args, **kwargs):
        raise RuntimeError(f"network access at DAG parse time: {args!r}")

    socket.socket.connect = refuse
    socket.create_connection = refuse
    socket.getaddrinfo = refuse

    from airflow.dag_processing.dagbag import DagBag

    bag = DagBag(dag_folder=sys.argv[1])
    if bag.import_errors:
        print(bag.import_errors)
        sys.exit(1)
    print(" ".join(sorted(bag.dag_ids)))
    """
)


def test_example_dags_import_without_errors_or_network():
    out = subprocess.run(
        [sys.executable, "-c", PARSE_WITHOUT_NETWORK, str(REPO / "dags")],
        env={**os.environ, "AIRFLOW_CONN_TWELVELABS_DEFAULT": ""},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    dag_ids = set(out.stdout.strip().splitlines()[-1].split())
    assert "gist_index_and_generate" in dag_ids
    present = {p.stem for p in (REPO / "dags").glob("gist_*.py")}
    assert present <= dag_ids
