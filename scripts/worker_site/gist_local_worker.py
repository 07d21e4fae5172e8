"""``[core] hostname_callable`` of the local Celery deployment's workers.

Two workers on one machine would both report the machine's name as ``task_instance.hostname``
(``celery worker --celery-hostname`` names the Celery node, not the task instance), so the UI
could not tell them apart nor fetch a task's log from the worker that wrote it. Each worker of
``scripts/airflow-local.sh up --executor celery`` gets its own loopback address in
``GIST_WORKER_HOSTNAME``, where its log server listens; this hands it to Airflow.
"""

from __future__ import annotations

import os
import socket


def hostname() -> str:
    """This worker's name (``GIST_WORKER_HOSTNAME``), else the machine's, as Airflow's default."""
    return os.environ.get("GIST_WORKER_HOSTNAME") or socket.getfqdn()
