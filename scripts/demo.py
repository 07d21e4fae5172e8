"""Run the example DAG end to end against the built-in emulator and print the stored gists.

Uses its own Airflow home (``.airflow-demo/``, recreated each run) so it never touches a real
deployment's metadata DB; gists land in the embedded SQLite default, ``$AIRFLOW_HOME/gists.db``.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import warnings
from pathlib import Path

# Third-party deprecation chatter (starlette via Airflow's API server imports) is not news to a demo user.
warnings.filterwarnings("ignore", category=DeprecationWarning)

ROOT = Path(__file__).resolve().parents[1]
HOME = ROOT / ".airflow-demo"
API_KEY = "tlk_demo_key_not_a_real_secret"


def main() -> int:
    shutil.rmtree(HOME, ignore_errors=True)
    HOME.mkdir()
    os.environ.update(
        {
            "AIRFLOW_HOME": str(HOME),
            "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
            "AIRFLOW__CORE__DAGS_FOLDER": str(ROOT / "dags"),
            "AIRFLOW__DATABASE__SQL_ALCHEMY_CONN": f"sqlite:///{HOME / 'airflow.db'}",
            "AIRFLOW__LOGGING__LOGGING_LEVEL": os.environ.get("AIRFLOW__LOGGING__LOGGING_LEVEL", "WARNING"),
            "GIST_POLL_INTERVAL": "1",
        }
    )
    print(f"Airflow home: {HOME}", flush=True)
    subprocess.run([sys.executable, "-m", "airflow", "db", "migrate"], check=True, capture_output=True)

    from airflow_provider_gist.emulator.server import start_emulator

    with start_emulator(
        api_key=API_KEY,
        asset_ready_seconds=1.0,
        indexing_seconds=3.0,
        analysis_startup_seconds=1.0,
        analysis_seconds_per_minute=0.5,
    ) as emulator:
        print(f"TwelveLabs emulator: {emulator.url}", flush=True)
        os.environ["AIRFLOW_CONN_TWELVELABS_DEFAULT"] = json.dumps(
            {"conn_type": "twelvelabs", "host": emulator.url, "password": API_KEY}
        )
        from airflow.dag_processing.dagbag import DagBag

        bag = DagBag(dag_folder=str(ROOT / "dags"))
        if bag.import_errors:
            print(f"DAG import errors: {bag.import_errors}", file=sys.stderr)
            return 1
        dag = bag.dags["gist_index_and_generate"]
        print(
            "Running gist_index_and_generate (upload -> index -> wait -> generate -> store) ...", flush=True
        )
        run = dag.test()

    from airflow_provider_gist.storage.sql import SqlGistStore

    store = SqlGistStore()
    print(f"\nDAG run: {run.state}")
    print(f"Stored gists in {store.location}:\n")
    for row in store.list_gists():
        print(f"  {row['video_ref_type']} {row['video_ref']} (index {row['index_id']}, {row['model']})")
        if row.get("title") is not None:
            print(f"    title:    {row['title']}")
        if row.get("topics") is not None:
            print(f"    topics:   {', '.join(row['topics'])}")
        if row.get("hashtags") is not None:
            print(f"    hashtags: {' '.join('#' + tag for tag in row['hashtags'])}")
        print()
    return 0 if str(run.state) == "success" else 1


if __name__ == "__main__":
    sys.exit(main())
