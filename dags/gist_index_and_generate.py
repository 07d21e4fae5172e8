"""Upload videos, index them, wait for indexing, generate each video's gist and store it.

One mapped lane per video: ingest -> wait for indexing (deferred: no worker slot while
waiting) -> generate the gist -> store it. A video that fails stops only its own lane; the
others are still stored. Rerunning is safe: ingest reuses what was already uploaded and
indexed, and the store upserts one row per (index, video), keeping the newer gist.

Gists go to the deployment's store, the connection ``gist_store_default`` (unset: the embedded
SQLite file ``$AIRFLOW_HOME/gists.db`` under LocalExecutor). Not a param: whoever may trigger a
run must not choose which database the workers write to.

Defaults work against the built-in emulator (``bash scripts/demo.sh``); point the
``twelvelabs_default`` connection at the real API to run it for real.
"""

from __future__ import annotations

import os
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, task, task_group

from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.operators.ingest import IngestVideoOperator
from airflow_provider_gist.operators.store import GISTS_ASSET, StoreGistsOperator
from airflow_provider_gist.sensors.indexing import IndexingCompleteSensor

# Indexing takes minutes on the real API; the emulator finishes in seconds, so the demo and
# the tests shorten the poll through the environment (read once, at parse time, no I/O).
POLL_SECONDS = float(os.environ.get("GIST_POLL_INTERVAL", "30"))

EXAMPLE_VIDEOS = [
    "https://videos.example.com/sunrise_harbour_fishing.mp4",
    "https://videos.example.com/mountain_trail_running.mp4",
    "https://videos.example.com/night_market_street_food.mp4",
]


with DAG(
    dag_id="gist_index_and_generate",
    description="Upload and index videos, then generate and store their gists.",
    schedule=None,
    catchup=False,
    tags=["twelvelabs", "gist", "example"],
    render_template_as_native_obj=True,
    default_args={"retries": 2, "retry_delay": timedelta(seconds=30)},
    params={
        "video_urls": Param(
            EXAMPLE_VIDEOS,
            type="array",
            items={"type": "string", "pattern": "^https?://"},
            minItems=1,
            title="Video URLs",
            description="Direct links to the raw video files (http or https).",
        ),
        "index_name": Param(
            "gist-demo",
            type="string",
            minLength=1,
            maxLength=200,
            title="Index name",
            description="Index to put the videos in (for search); created with Marengo 3.0 if missing.",
        ),
        "types": Param(
            ["title", "topic", "hashtag"],
            type="array",
            items={"type": "string", "enum": ["title", "topic", "hashtag"]},
            minItems=1,
            title="Gist types",
            description="Which parts of the gist to generate.",
        ),
    },
    doc_md=__doc__,
) as dag:

    @task
    def videos(params: dict[str, Any] | None = None) -> list[str]:
        """Check the run's input before anything is uploaded; return the URLs to ingest."""
        from airflow_provider_gist.ids import validate_index_name, validate_video_url
        from airflow_provider_gist.model import parse_types

        params = params or {}
        parse_types(params.get("types"), field_name="params.types")
        validate_index_name(params.get("index_name"), "params.index_name")
        urls = params.get("video_urls") or []
        return [validate_video_url(url, f"params.video_urls[{i}]") for i, url in enumerate(urls)]

    @task_group(group_id="video")
    def video_lane(video_url: str) -> None:
        """One video's lane; lanes are independent, so one failure stops only its own video."""
        ingested = IngestVideoOperator(
            task_id="ingest",
            video_url=video_url,
            index_name="{{ params.index_name }}",
            create_index_if_missing=True,
            poll_interval=POLL_SECONDS,
            multiple_outputs=True,
        )
        indexed = IndexingCompleteSensor(
            task_id="wait_for_indexing",
            index_id=ingested.output["index_id"],
            indexed_asset_id=ingested.output["indexed_asset_id"],
            poll_interval=POLL_SECONDS,
            poke_interval=POLL_SECONDS,
            timeout=int(timedelta(hours=2).total_seconds()),
            multiple_outputs=True,
        )
        gist = GenerateGistOperator(
            task_id="generate_gist",
            asset_id=indexed.output["asset_id"],
            index_id=indexed.output["index_id"],
            source_updated_at=indexed.output["updated_at"],
            duration=indexed.output["duration"],
            types="{{ params.types }}",
            # an analysis task, waited for in the triggerer: no worker slot while Pegasus works
            deferrable=True,
            poll_interval=POLL_SECONDS,
        )
        StoreGistsOperator(
            task_id="store_gist",
            gists=gist.output,
            # No store named: the deployment's (connection gist_store_default), never the form's.
            outlets=[GISTS_ASSET],
        )

    video_lane.expand(video_url=videos())
