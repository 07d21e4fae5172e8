"""Daily catalog refresh: keep a gist (title, topics, hashtags) stored for every ready video of an index.

``refresh_gists`` lists the index's ready videos (every page), skips those whose stored gist is
still current (same ``updated_at``, types, model and prompt version: no API call), generates the
rest with bounded concurrency paced by the API's rate-limit headers, and stores them in batches
as they finish. A killed run keeps its finished gists; the next run does only the rest.
``report`` logs the small summary and, if ``fail_on_error`` is set, fails the run when any
video got no gist (by default failures are reported and retried on the next run).

With ``analysis: batch`` (and ``model: pegasus1.5``) the same plan goes to ``/analyze/batches``
instead: up to 1,000 videos per call, processed on the API's capacity while the task waits in
the triggerer (docs/analysis.md).

Listing and planning run inside ``refresh_gists`` on purpose: the plan is made when the work
starts (a retry re-plans against what is already stored), and no list of a thousand videos
travels through XCom. See docs/performance.md.

Gists go to the deployment's store, the connection ``gist_store_default`` (unset: the embedded
SQLite file ``$AIRFLOW_HOME/gists.db`` under LocalExecutor; a clear error under a distributed
executor), read when the task runs. It is not a param on purpose: whoever may trigger a run must
not choose which database the workers write to.

Parsing this file is cheap: no connection, no API call, no Variable at import time.
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pendulum
from airflow.sdk import DAG, Param, task

from airflow_provider_gist.operators.refresh import DEFAULT_CONCURRENCY, RefreshGistsOperator
from airflow_provider_gist.operators.store import GISTS_ASSET

with DAG(
    dag_id="gist_catalog_refresh",
    schedule="@daily",
    start_date=pendulum.datetime(2026, 1, 1, tz="UTC"),
    catchup=False,
    max_active_runs=1,  # two refreshes of one index would pay twice for the same gists
    # Params render as real lists/ints/bools, not their string forms.
    render_template_as_native_obj=True,
    tags=["twelvelabs", "gist"],
    doc_md=__doc__,
    params={
        "index": Param("gist-catalog", type="string", minLength=1, description="Index name or id."),
        "types": Param(
            ["title", "topic", "hashtag"],
            type="array",
            items={"type": "string", "enum": ["title", "topic", "hashtag"]},
            minItems=1,
            description="Gist parts to generate.",
        ),
        "model": Param(
            None,
            type=["null", "string"],
            enum=[None, "pegasus1.2", "pegasus1.5"],
            description="Analysis model; empty = the connection's default model.",
        ),
        "max_videos": Param(
            1000,
            type=["null", "integer"],
            minimum=0,
            description="Most gists generated per run; the rest wait for the next run. Empty = no cap.",
        ),
        "concurrency": Param(
            DEFAULT_CONCURRENCY,
            type="integer",
            minimum=1,
            maximum=128,
            description="Most /analyze calls in flight at once (the rate limit still paces them).",
        ),
        "listing": Param(
            "indexed_assets",
            type="string",
            enum=["indexed_assets", "videos"],
            description="indexed_assets (current API) or videos (legacy list).",
        ),
        "analysis": Param(
            "sync",
            type="string",
            enum=["sync", "batch"],
            description="sync: one /analyze call per video, paced at the rate limit. batch: "
            "/analyze/batches, up to 1,000 videos a call, waited for in the triggerer "
            "(Pegasus 1.5 only: set model to pegasus1.5).",
        ),
        "fail_on_error": Param(False, type="boolean", description="Fail the run if any video got no gist."),
    },
) as dag:
    refresh = RefreshGistsOperator(
        task_id="refresh_gists",
        index="{{ params.index }}",
        types="{{ params.types }}",
        model_name="{{ params.model }}",
        max_videos="{{ params.max_videos }}",
        concurrency="{{ params.concurrency }}",
        listing="{{ params.listing }}",
        analysis="{{ params.analysis }}",
        # No store named: the deployment's (connection gist_store_default), never the trigger form's.
        # Two tries: a retry re-plans, so it only does what the first try did not store.
        retries=1,
        retry_delay=timedelta(minutes=5),
        execution_timeout=timedelta(hours=6),
    )

    @task
    def report(summary: dict[str, Any], fail_on_error: bool = False) -> dict[str, Any]:
        """Log the refresh summary; fail the run if asked to and any video failed."""
        from airflow.sdk.exceptions import AirflowFailException

        print(
            f"index {summary['index_id']}: listed {summary['listed']}, skipped {summary['skipped']} "
            f"unchanged, generated {summary['generated']}, stored {summary['stored']}, failed "
            f"{summary['failed']}, deferred {summary['deferred']}, output tokens {summary['output_tokens']}"
        )
        for failure in summary["failures"]:
            print(f"  failed {failure['video_ref']} [{failure['kind']}]: {failure['reason']}")
        if summary["failures_truncated"]:
            print(f"  ... and {summary['failures_truncated']} more")
        if fail_on_error and summary["failed"]:
            raise AirflowFailException(f"{summary['failed']} video(s) got no gist; see the list above")
        return {key: summary[key] for key in ("listed", "skipped", "generated", "failed")}

    @task(outlets=[GISTS_ASSET])
    def announce(summary: dict[str, Any], outlet_events: Any = None) -> int:
        """Emit the ``twelvelabs_gists`` asset event when this run stored new gists.

        A run that found nothing to refresh skips instead, so DAGs scheduled on the asset
        are not woken for nothing.
        """
        from airflow.sdk.exceptions import AirflowSkipException

        if not summary["stored"]:
            raise AirflowSkipException("no new gists stored: no asset event")
        outlet_events[GISTS_ASSET].extra = {"stored": summary["stored"], "index_id": summary["index_id"]}
        return int(summary["stored"])

    report(refresh.output, fail_on_error="{{ params.fail_on_error }}")
    announce(refresh.output)
