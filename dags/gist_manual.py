"""gist_manual: gists for a few videos, started by hand from the Trigger form.

Fill in the form (video URLs, file paths and/or asset ids, the parts to generate, the model)
and trigger. The run:

1. ``validate``   checks the form (at least one video across the lists, ids, URLs, file paths,
                  types) and fails with a message naming the field;
2. ``index``      finds the index by name (creating it) or checks the given index id;
3. one lane per video, independent of the others (a mapped task group, as in
   ``gist_index_and_generate``): ``upload.ingest`` uploads a URL or file that is new and indexes
   it (a URL an earlier run uploaded is reused; two runs at once may both upload it, see
   docs/ui.md), or ``asset.index`` indexes a given asset id;
   then ``*.wait_indexed`` waits for indexing in the triggerer (deferrable sensor) and
   ``*.gist`` generates the video's gist;
4. ``store``      stores the gists of every lane that finished (the connection
                  ``gist_store_default``, or SQLite under $AIRFLOW_HOME by default) and updates
                  the ``twelvelabs_gists`` asset, even when other lanes failed;
5. ``summarize``  writes a readable summary (title, topics, hashtags per video) to its log and to
                  the run's *Gists* tab (XCom ``gist_summary``); it fails the run, after the
                  summary, if any video got no gist.

File paths from the form must lie under one of the locations in ``ALLOWED_FILE_PREFIXES``
(the deployment sets ``GIST_MANUAL_FILE_PREFIXES``); with none configured, the form takes no
file paths. Signed URLs: the query string is masked in task logs, rendered fields and map
index labels; it is still part of the run's conf, which users who may read the DAG run see.

Parsing stays cheap: only operator classes are imported here; hooks, the store and HTTP are
used inside tasks.
"""

from __future__ import annotations

import logging
import os
import re
from datetime import timedelta
from typing import Any

from airflow.sdk import DAG, Param, TriggerRule, task, task_group

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
#: Where file paths from the form may point (absolute folders or storage URLs such as
#: ``s3://aws_default@bucket/videos/``), comma-separated in ``GIST_MANUAL_FILE_PREFIXES``. Set by
#: whoever deploys this DAG, never by the form: without it, anyone who may trigger the DAG could
#: upload any file the workers can read. Empty: the form takes no file paths.
ALLOWED_FILE_PREFIXES: tuple[str, ...] = tuple(
    prefix.strip() for prefix in os.environ.get("GIST_MANUAL_FILE_PREFIXES", "").split(",") if prefix.strip()
)

log = logging.getLogger(__name__)


def each(results: Any) -> list[Any]:
    """The results of a task in a mapped task group, pulled from outside it, as a list.

    Airflow hands back a list with one entry per lane that pushed a result (failed lanes push
    none), but a single lane's result on its own, and ``None`` for none.
    """
    if results is None:
        return []
    if isinstance(results, dict):
        return [results]
    return [item for item in results if item]


def plan_from_params(params: dict[str, Any] | None) -> dict[str, Any]:
    """The run's plan from the form, checked again (API and CLI triggers skip the form).

    Raises ``AirflowFailException`` naming the field, e.g. ``asset_ids[1]: 'bad id!' is not a
    valid id``. Every task that needs the video lists calls this on ``params`` itself rather than
    taking the plan as an argument: a task's arguments are stored as its rendered fields, and
    signed URLs must not be.
    """
    from airflow.sdk.exceptions import AirflowFailException

    from airflow_provider_gist.errors import GistValidationError
    from airflow_provider_gist.ids import validate_id, validate_index_name, validate_video_url
    from airflow_provider_gist.ingest.sources import check_allowed_path, resolve_storage_path
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
        files = []
        for i, path in enumerate(as_list("file_paths")):
            field = f"file_paths[{i}]"
            check_allowed_path(resolve_storage_path(path, field), ALLOWED_FILE_PREFIXES, field)
            files.append(str(path))
        assets = [validate_id(a, f"asset_ids[{i}]") for i, a in enumerate(as_list("asset_ids"))]
        index = validate_index_name(p.get("index_name"), "index_name")
        types = [t.value for t in parse_types(p.get("types") or GIST_TYPES, "types")]
    except GistValidationError as err:
        raise AirflowFailException(str(err)) from None
    # dict.fromkeys: drop duplicates, keep the order
    urls, files, assets = list(dict.fromkeys(urls)), list(dict.fromkeys(files)), list(dict.fromkeys(assets))
    if not urls and not files and not assets:
        raise AirflowFailException(
            "give at least one video: video_urls, file_paths and asset_ids are all empty"
        )
    if len(urls) + len(files) + len(assets) > MAX_VIDEOS:
        raise AirflowFailException(
            f"video_urls, file_paths and asset_ids: at most {MAX_VIDEOS} videos per run"
        )
    model = p.get("model")
    if model not in MODELS:
        raise AirflowFailException(f"model {model!r} is not supported: use one of {MODELS}")
    is_id = re.fullmatch(INDEX_ID_PATTERN, index) is not None
    return {
        "index_id": index if is_id else None,
        "index_name": None if is_id else index,
        "uploads": [{"video_url": url, "file_path": None} for url in urls]
        + [{"video_url": None, "file_path": path} for path in files],
        "asset_ids": assets,
        "types": types,
        "model": model,
    }


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
                "uploaded and indexed; a URL an earlier run of this DAG uploaded is reused (two runs "
                "at once with the same URL may both upload it). Give at least one video here, in "
                "'File paths' or in 'Asset ids'."
            ),
        ),
        "file_paths": Param(
            [],
            type=["array", "null"],
            items={"type": "string", "minLength": 1},
            maxItems=MAX_VIDEOS,
            title="File paths",
            description=(
                "Video files the workers can read, one per line: absolute paths or storage URLs "
                "under "
                + (
                    ", ".join(ALLOWED_FILE_PREFIXES)
                    if ALLOWED_FILE_PREFIXES
                    else "no location (none is allowed)"
                )
                + ". Set GIST_MANUAL_FILE_PREFIXES where the DAG is deployed to allow some."
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
        """Check the form again (API and CLI triggers skip the form); return what later tasks need.

        Raises naming the field, e.g. ``asset_ids[1]: 'bad id!' is not a valid id``. The video
        lists stay out of the result: the lanes read them from ``params`` (see
        :func:`plan_from_params`).
        """
        plan = plan_from_params(params)
        return {
            "index_id": plan["index_id"],
            "index_name": plan["index_name"],
            "types": plan["types"],
            "model": plan["model"],
            "video_count": len(plan["uploads"]) + len(plan["asset_ids"]),
        }

    @task
    def index(index_id: str | None, index_name: str | None) -> str:
        """The index id: the given one (checked to exist) or the named index (created if missing)."""
        from airflow_provider_gist.hooks.gist import GistHook

        hook = GistHook()
        try:
            if index_id:
                return str(hook.get_index(index_id)["_id"])
            return hook.ensure_index(str(index_name))
        finally:
            hook.close()

    @task
    def uploads(params: dict[str, Any] | None = None) -> list[dict[str, Any]]:
        """One ``{video_url, file_path}`` per URL or file of the form: the upload lanes."""
        return list(plan_from_params(params)["uploads"])

    @task
    def assets(params: dict[str, Any] | None = None) -> list[dict[str, str]]:
        """One ``{asset_id}`` per asset id of the form: the asset lanes."""
        return [{"asset_id": asset_id} for asset_id in plan_from_params(params)["asset_ids"]]

    # XComArgs at parse time, plain values at run time: typed as Any for the type checker.
    plan: Any = validate()
    index_id: Any = index(plan["index_id"], plan["index_name"])
    upload_specs: Any = uploads()
    asset_specs: Any = assets()
    plan >> [upload_specs, asset_specs]  # the form is checked (and its errors named) first

    def wait_and_generate(ready: Any) -> Any:
        """The rest of a lane: wait for indexing (in the triggerer), then generate the gist."""
        indexed = IndexingCompleteSensor(
            task_id="wait_indexed",
            index_id=ready["index_id"],
            indexed_asset_id=ready["indexed_asset_id"],
            deferrable=True,
            timeout=60 * 60,
            poll_interval="{{ params.poll_interval or 30 }}",
            multiple_outputs=True,
            map_index_template="{{ task.indexed_asset_id }}",
        )
        return GenerateGistOperator(
            task_id="gist",
            asset_id=indexed.output["asset_id"],
            index_id=indexed.output["index_id"],
            source_updated_at=indexed.output["updated_at"],
            duration=indexed.output["duration"],
            types=plan["types"],
            model_name=plan["model"],
            # an analysis task, waited for in the triggerer: no worker slot while Pegasus works
            deferrable=True,
            poll_interval="{{ params.poll_interval or 30 }}",
            map_index_template="{{ task.asset_id }}",
        ).output

    lane_tasks: dict[str, Any] = {}

    @task_group(group_id="upload")
    def upload_lane(video_url: str | None, file_path: str | None) -> Any:
        """One URL or file: upload it if new, index it, wait, generate. A failure stops only this lane."""
        ingested = IngestVideoOperator(
            task_id="ingest",
            video_url=video_url,
            file_path=file_path,
            index_id=index_id,
            # form paths only under the deployment's locations (DAG code, not templated)
            allowed_path_prefixes=ALLOWED_FILE_PREFIXES,
            poll_interval=5,  # asset processing checks: a person is waiting for this run
            multiple_outputs=True,
            # the URL without its query (a signed URL's signature), or the file's name
            map_index_template="{{ task.source_label }}",
        )
        lane_tasks["ingest"] = ingested
        return wait_and_generate(ingested.output)

    @task_group(group_id="asset")
    def asset_lane(asset_id: str) -> Any:
        """One uploaded asset: index it, wait, generate. A failure stops only this lane."""
        indexed = IndexAssetOperator(
            task_id="index",
            asset_id=asset_id,
            index_id=index_id,
            poll_interval=5,
            multiple_outputs=True,
            map_index_template="{{ task.asset_id }}",
        )
        return wait_and_generate(indexed.output)

    from_uploads = upload_lane.expand_kwargs(upload_specs)
    from_assets = asset_lane.expand_kwargs(asset_specs)

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def gather(upload_gists: Any, asset_gists: Any) -> list[dict[str, Any]]:
        """The gists of every lane that got one; a failed or skipped lane left none."""
        return [*each(upload_gists), *each(asset_gists)]

    gists: Any = gather(from_uploads, from_assets)
    stored: Any = StoreGistsOperator(
        task_id="store", gists=gists, outlets=[GISTS_ASSET]
    )

    @task(trigger_rule=TriggerRule.ALL_DONE)
    def summarize(
        gists: Any, stored: dict[str, Any] | None, url_results: Any, video_count: int | None, ti: Any = None
    ) -> None:
        """Log a readable summary and push it (XCom ``gist_summary``) for the run's Gists tab.

        Then fail the run if any video got no gist (or the gists were not stored): the lanes
        are not the run's last tasks, so without this a run with a failed video would succeed.
        """
        from airflow.sdk.exceptions import AirflowFailException

        from airflow_provider_gist.plugins.summary import SUMMARY_XCOM_KEY, build_summary, format_summary

        urls = {r["asset_id"]: r["video_url"] for r in each(url_results) if r.get("video_url")}
        summary = build_summary(list(gists or []), video_urls=urls, stored=(stored or {}).get("stored"))
        log.info("Gist summary\n%s", format_summary(summary))
        ti.xcom_push(key=SUMMARY_XCOM_KEY, value=summary)
        if video_count is None:
            raise AirflowFailException("the form was refused (see the validate task): no video was processed")
        missing = int(video_count) - summary["count"]
        if missing > 0:
            raise AirflowFailException(
                f"{missing} of {video_count} video(s) got no gist (see the failed tasks); "
                f"the other {summary['count']} are stored"
                if stored
                else f"{missing} of {video_count} video(s) got no gist (see the failed tasks)"
            )
        if summary["count"] and not stored:
            raise AirflowFailException("the gists were generated but not stored (see the store task)")

    summarize(gists, stored.output, lane_tasks["ingest"].output, plan["video_count"])
