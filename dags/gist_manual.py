"""gist_manual: gists for a few videos, started by hand from the Trigger form.

Fill in the form (video URLs and/or asset ids, the parts to generate, the model) and trigger.
The run:

1. ``validate``     checks the form (at least one video across both lists, ids, URLs, types)
                    and fails with a message naming the field;
2. ``index``        finds the index by name (creating it) or checks the given index id;
3. ``ingest_url``   uploads each URL that is new and indexes it (mapped, one task per URL; a
                    URL this DAG already uploaded is reused, never uploaded twice);
   ``index_asset``  indexes each given asset id (mapped);
4. ``wait_indexed`` waits for indexing in the triggerer (deferrable sensor, mapped);
5. ``gist``         generates each video's gist (mapped);
6. ``store``        stores the gists (SQLite under $AIRFLOW_HOME by default) and updates the
                    ``twelvelabs_gists`` asset;
7. ``summarize``    writes a readable summary (title, topics, hashtags per video) to its log
                    and to the run's *Gists* tab (XCom ``gist_summary``).

Parsing stays cheap: only operator classes are imported here; hooks, the store and HTTP are
used inside tasks.
"""

from __future__ import annotations

import logging
import re
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, task

from airflow_provider_gist.operators.gist import GenerateGistOperator
from airflow_provider_gist.operators.ingest import IndexAssetOperator, IngestVideoOperator
from airflow_provider_gist.operators.store import GISTS_ASSET, StoreGistsOperator
from airflow_provider_gist.sensors.indexing import IndexingCompleteSensor

#: The provider's id rule (airflow_provider_gist.ids), repeated for the form's own validation.
ID_PATTERN = "^[A-Za-z0-9][A-Za-z0-9_-]{0,63}$"
#: A TwelveLabs index id (24 hex characters): "index" is taken as an id, anything else as a name.
INDEX_ID_PATTERN = "^[0-9a-f]{24}$"
GIST_TYPES = ["title", "topic", "hashtag"]
MODELS = ["pegasus1.2", "pegasus1.5"]
MAX_VIDEOS = 50

log = logging.getLogger(__name__)

with DAG(
    dag_id="gist_manual",
    schedule=None,
    catchup=False,
    max_active_runs=4,
    tags=["twelvelabs", "gist"],
    doc_md=__doc__,
    default_args={"retries": 1, "retry_delay": timedelta(seconds=30)},
    params={
        "index_name": Param(
            "gist-manual",
            type="string",
            minLength=1,
            maxLength=200,
            title="Index",
            description=(
                "Name of the TwelveLabs index to put the videos in (created if it does not exist), "
                "or the 24-character id of an existing index."
            ),
        ),
        "video_urls": Param(
            [],
            type=["array", "null"],  # optional: the form then accepts an empty list
            items={"type": "string", "pattern": "^https?://"},
            maxItems=MAX_VIDEOS,
            title="Video URLs",
            description=(
                "Public direct links to video files (http or https), one per line. New videos are "
                "uploaded and indexed; a URL this DAG already uploaded is reused. Give at least one "
                "video here or in 'Asset ids'."
            ),
        ),
        "asset_ids": Param(
            [],
            type=["array", "null"],
            items={"type": "string", "pattern": ID_PATTERN},
            maxItems=MAX_VIDEOS,
            title="Asset ids",
            description=(
                "Ids of videos already uploaded to TwelveLabs, one per line (letters, digits, '_' "
                "and '-', up to 64 characters)."
            ),
        ),
        "types": Param(
            GIST_TYPES,
            type="array",
            items={"type": "string", "enum": GIST_TYPES},
            examples=GIST_TYPES,
            values_display={"title": "Title", "topic": "Topics", "hashtag": "Hashtags"},
            minItems=1,
            title="Gist parts",
            description="What to generate for each video.",
        ),
        "model": Param(
            "pegasus1.2",
            type="string",
            enum=MODELS,
            values_display={"pegasus1.2": "Pegasus 1.2", "pegasus1.5": "Pegasus 1.5"},
            title="Model",
            description="The Pegasus model that writes the gists.",
        ),
        "poll_interval": Param(
            30,
            type="integer",
            minimum=1,
            maximum=600,
            title="Indexing poll interval (seconds)",
            description="How often the triggerer asks whether indexing has finished.",
            section="Advanced",
        ),
    },
) as dag:

    @task(multiple_outputs=True)
    def validate(params: dict[str, Any] | None = None) -> dict[str, Any]:
        """Check the form again (API and CLI triggers skip the form) and return the run's plan.

        Raises naming the field, e.g. ``asset_ids[1]: 'bad id!' is not a valid id``.
        """
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_gist.errors import GistValidationError
        from airflow_provider_gist.ids import validate_id, validate_index_name, validate_video_url
        from airflow_provider_gist.model import parse_types

        p = params or {}

        def as_list(name: str) -> list[Any]:
            value = p.get(name)
            if value is None or value == "":
                return []
            if not isinstance(value, list):
                raise AirflowFailException(f"{name} must be a list, got {type(value).__name__}")
            return [item.strip() if isinstance(item, str) else item for item in value if item != ""]

        try:
            urls = [validate_video_url(u, f"video_urls[{i}]") for i, u in enumerate(as_list("video_urls"))]
            assets = [validate_id(a, f"asset_ids[{i}]") for i, a in enumerate(as_list("asset_ids"))]
            index = validate_index_name(p.get("index_name"), "index_name")
            types = [t.value for t in parse_types(p.get("types") or GIST_TYPES, "types")]
        except GistValidationError as err:
            raise AirflowFailException(str(err)) from None
        if not urls and not assets:
            raise AirflowFailException("give at least one video: video_urls and asset_ids are both empty")
        if len(urls) + len(assets) > MAX_VIDEOS:
            raise AirflowFailException(f"video_urls and asset_ids: at most {MAX_VIDEOS} videos per run")
        model = p.get("model")
        if model not in MODELS:
            raise AirflowFailException(f"model {model!r} is not supported: use one of {MODELS}")
        is_id = re.fullmatch(INDEX_ID_PATTERN, index) is not None
        return {
            "index_id": index if is_id else None,
            "index_name": None if is_id else index,
            # dict.fromkeys: drop duplicates, keep the order
            "video_urls": list(dict.fromkeys(urls)),
            "asset_ids": list(dict.fromkeys(assets)),
            "types": types,
            "model": model,
        }

    @task
    def index(plan: dict[str, Any]) -> str:
        """The index id: the given one (checked to exist) or the named index (created if missing)."""
        from airflow_provider_gist.hooks.gist import GistHook

        hook = GistHook()
        try:
            if plan["index_id"]:
                return str(hook.get_index(plan["index_id"])["_id"])
            return hook.ensure_index(plan["index_name"])
        finally:
            hook.close()

    @task
    def urls_to_ingest(plan: dict[str, Any]) -> list[str]:
        """The video URLs of the form (mapping needs a task's own list)."""
        return list(plan["video_urls"])

    @task
    def assets_to_index(plan: dict[str, Any]) -> list[str]:
        """The asset ids of the form."""
        return list(plan["asset_ids"])

    # XComArgs at parse time, plain values at run time: typed as Any for the type checker.
    plan: Any = validate()
    index_id: Any = index(plan)

    from_urls = IngestVideoOperator.partial(
        task_id="ingest_url",
        index_id=index_id,
        poll_interval=5,  # asset processing checks: a person is waiting for this run
        map_index_template="{{ task.video_url }}",
    ).expand(video_url=urls_to_ingest(plan))

    from_assets = IndexAssetOperator.partial(
        task_id="index_asset",
        index_id=index_id,
        poll_interval=5,
        map_index_template="{{ task.asset_id }}",
    ).expand(asset_id=assets_to_index(plan))

    @task(trigger_rule=TriggerRule.NONE_FAILED_MIN_ONE_SUCCESS)
    def collect(url_results: Any, asset_results: Any, params: dict[str, Any] | None = None) -> list[dict]:
        """The sensor's kwargs, one dict per indexed video from both sources (an empty one is skipped)."""
        poll_interval = int((params or {}).get("poll_interval") or 30)
        return [
            {
                "index_id": r["index_id"],
                "indexed_asset_id": r["indexed_asset_id"],
                "poll_interval": poll_interval,
            }
            for results in (url_results, asset_results)
            for r in (results or [])
            if r
        ]

    videos = collect(from_urls.output, from_assets.output)

    indexed = IndexingCompleteSensor.partial(
        task_id="wait_indexed",
        deferrable=True,
        timeout=60 * 60,
        map_index_template="{{ task.indexed_asset_id }}",
    ).expand_kwargs(videos)

    def _gist_kwargs(ready: dict[str, Any]) -> dict[str, Any]:
        return {
            "asset_id": ready["asset_id"],
            "index_id": ready["index_id"],
            "source_updated_at": ready.get("updated_at"),
        }

    gists = GenerateGistOperator.partial(
        task_id="gist",
        types=plan["types"],
        model_name=plan["model"],
        map_index_template="{{ task.asset_id }}",
    ).expand_kwargs(indexed.output.map(_gist_kwargs))

    stored: Any = StoreGistsOperator(task_id="store", gists=gists.output, outlets=[GISTS_ASSET])

    @task(trigger_rule=TriggerRule.NONE_FAILED)
    def summarize(gists: Any, stored: dict[str, Any] | None, url_results: Any, ti: Any = None) -> None:
        """Log a readable summary and push it (XCom ``gist_summary``) for the run's Gists tab."""
        from airflow_provider_gist.plugins.summary import SUMMARY_XCOM_KEY, build_summary, format_summary

        urls = {r["asset_id"]: r["video_url"] for r in (url_results or []) if r and r.get("video_url")}
        summary = build_summary(list(gists or []), video_urls=urls, stored=(stored or {}).get("stored"))
        log.info("Gist summary\n%s", format_summary(summary))
        ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)

    summarize(gists.output, stored.output, from_urls.output)
