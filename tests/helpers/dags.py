"""Running a DAG in a test: the one ``dag.test()`` helper every DAG test uses.

``run_dag(dag, conf=...)`` is ``dag.test(run_conf=conf)`` on a DAG that is first written to the
metadata DB. Why: Airflow 3.3's ``dag.test()`` only runs a DAG whose serialized version it finds in
the metadata DB. It fills the DB itself by parsing the configured DAG bundles (in the tests only
``dags-folder``, i.e. this repo's ``dags/``, see tests/conftest.py) until a version of the DAG
exists. A DAG built inside a test, or parsed from a file a test wrote, is in no bundle, so
``dag.test()`` alone cannot run it.

So ``run_dag`` first writes the very DAG object it is given to the DB under the ``dags-folder``
bundle, as the DAG processor would (``sync_bag_to_db``), then calls ``dag.test()``. That works the
same for the example DAGs of ``dags/`` and for any DAG a test builds or parses, with no extra bundle
to configure (``AIRFLOW__DAG_PROCESSOR__DAG_BUNDLE_CONFIG_LIST``) and no ``DAGS_FOLDER`` to patch.
The tasks that run are those of the object passed: ``dag.test()`` runs them in-process from
``dag.task_dict`` (task callables may close over test locals).

``load_dag(dag_id)`` parses an example DAG from ``dags/`` (or from any file or folder given) afresh:
a new DAG object per call, so no state of an earlier run carries over.

Needs a migrated metadata DB: request the ``airflow_db`` fixture of tests/conftest.py. This module
does not import tests.conftest, so a child interpreter with an environment of its own (the SIGKILL
test) can use it too.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow.models.dagrun import DagRun
    from airflow.sdk import DAG

REPO = Path(__file__).resolve().parents[2]
#: The example DAGs: the ``dags-folder`` bundle of the tests (AIRFLOW__CORE__DAGS_FOLDER).
DAGS_DIR = REPO / "dags"
#: The bundle every DAG run by ``run_dag`` is registered under (Airflow's default local bundle).
BUNDLE = "dags-folder"


def load_dags(path: str | os.PathLike[str] = DAGS_DIR) -> dict[str, DAG]:
    """Every DAG of a DAG file or folder, parsed afresh; fails on any import error."""
    from airflow.dag_processing.dagbag import DagBag

    path = Path(path).resolve()
    # Under dags/ the DAGs get the relative file locations the dags-folder bundle gives them.
    in_bundle = path == DAGS_DIR or DAGS_DIR in path.parents
    bag = DagBag(
        dag_folder=str(path),
        bundle_path=DAGS_DIR if in_bundle else None,
        bundle_name=BUNDLE if in_bundle else None,
    )
    assert bag.import_errors == {}, bag.import_errors
    return dict(bag.dags)


def load_dag(dag_id: str, path: str | os.PathLike[str] | None = None) -> DAG:
    """The DAG ``dag_id``, parsed afresh from ``path`` (a file or folder).

    By default from ``dags/<dag_id>.py`` when that file exists (each example DAG file is named
    after its DAG), else from the whole ``dags/`` folder.
    """
    if path is None:
        own_file = DAGS_DIR / f"{dag_id}.py"
        path = own_file if own_file.is_file() else DAGS_DIR
    dags = load_dags(path)
    assert dag_id in dags, f"no DAG {dag_id!r} in {path}: {sorted(dags)}"
    return dags[dag_id]


def register_dag(dag: DAG) -> None:
    """Write ``dag`` (this very object) to the metadata DB under the ``dags-folder`` bundle."""
    from airflow.dag_processing.bundles.manager import DagBundlesManager
    from airflow.dag_processing.dagbag import DagBag, sync_bag_to_db

    DagBundlesManager().sync_bundles_to_db()  # the bundle row the DAG's row refers to
    bag = DagBag(collect_dags=False)  # an empty bag, nothing parsed: only ``dag`` goes in
    bag.bag_dag(dag)
    sync_bag_to_db(bag, BUNDLE, None)


def run_dag(dag: DAG | str, *, conf: dict[str, Any] | None = None, **test_kwargs: Any) -> DagRun:
    """``dag.test(run_conf=conf, **test_kwargs)`` for any DAG: an example DAG (an object from
    ``load_dag`` or its dag_id) or one built or parsed in a test. Returns the finished DAG run."""
    if isinstance(dag, str):
        dag = load_dag(dag)
    register_dag(dag)
    return dag.test(run_conf=conf, **test_kwargs)
