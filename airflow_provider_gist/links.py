"""Extra links from a task to the objects it made or used, in the TwelveLabs web app.

As the Amazon and Google providers link to their consoles: the operator pushes the ids (and
the web app's base URL, from the connection's ``playground_url``) in one XCom, :data:`XCOM_KEY`;
each link's :meth:`get_link` formats its URL from that XCom alone. Airflow 3's task runner calls
:meth:`get_link` when the task ends (or defers) and stores the URL for the UI, so the link
outlives the connection. Only ids and a plain URL are ever stored: never the API key.

URL shapes: ``/indexes/{index_id}`` and ``/indexes/{index_id}/videos/{video_id}`` are the
Playground's pages for an index and a video in it (as linked from public TwelveLabs
samples). The Playground has no documented page for a bare asset or an analysis task: those
two links open the paths below, our choice, under the same configurable base.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any, ClassVar
from urllib.parse import quote

from airflow.sdk import BaseOperatorLink

if TYPE_CHECKING:
    from airflow.sdk import BaseOperator
    from airflow.sdk.types import TaskInstanceKey

#: The XCom the operators push: ``{"playground_url", "index_id"?, "asset_id"?,
#: "indexed_asset_id"?, "analysis_task_id"?}``.
XCOM_KEY = "twelvelabs_links"
#: The ids a link may carry (anything else handed to :func:`persist` is dropped).
ID_FIELDS = ("index_id", "asset_id", "indexed_asset_id", "analysis_task_id")


def persist(context: Any, playground_url: str, **ids: Any) -> dict[str, str]:
    """Push the ids the links need (empty ones dropped); returns what was pushed."""
    value = {"playground_url": playground_url.rstrip("/")}
    value.update({k: str(v) for k, v in ids.items() if k in ID_FIELDS and v})
    push = getattr(context.get("ti") if hasattr(context, "get") else None, "xcom_push", None)
    if callable(push):  # no task instance (a direct execute() call): nothing to link from
        try:
            push(key=XCOM_KEY, value=value)
        except Exception as err:  # a missing link must not fail the task that made the object
            logging.getLogger(__name__).warning("could not save the extra links' ids: %s", err)
    return value


def playground_url_of(hook: Any) -> str:
    """The connection's web-app base; the default when the connection cannot say."""
    from airflow_provider_gist.client.settings import DEFAULT_PLAYGROUND_URL

    try:
        return str(hook.settings.playground_url)
    except Exception:  # a link must never fail the task that made the object
        return DEFAULT_PLAYGROUND_URL


class _PlaygroundLink(BaseOperatorLink):
    """A URL formatted from the pushed ids; empty when the ids it needs were never pushed."""

    #: ids that must be present; the first alternative that is complete is used
    needs: ClassVar[tuple[tuple[str, ...], ...]] = ()
    #: ``str.format`` templates over ``base`` and the quoted ids, one per :attr:`needs`
    templates: ClassVar[tuple[str, ...]] = ()

    def format(self, value: Any) -> str:
        if not isinstance(value, dict) or not value.get("playground_url"):
            return ""
        ids = {k: quote(str(value[k]), safe="") for k in ID_FIELDS if value.get(k)}
        for needed, template in zip(self.needs, self.templates, strict=True):
            if all(k in ids for k in needed):
                return template.format(base=str(value["playground_url"]).rstrip("/"), **ids)
        return ""

    def get_link(self, operator: BaseOperator, *, ti_key: TaskInstanceKey) -> str:
        from airflow.sdk.execution_time.xcom import XCom

        return self.format(XCom.get_value(ti_key=ti_key, key=XCOM_KEY))


class TwelveLabsIndexLink(_PlaygroundLink):
    """The index the task indexed into, refreshed, or took its video from."""

    name = "TwelveLabs Index"
    needs = (("index_id",),)
    templates = ("{base}/indexes/{index_id}",)


class TwelveLabsVideoLink(_PlaygroundLink):
    """The video: its page in its index when indexed, else the asset."""

    name = "TwelveLabs Video"
    needs = (("index_id", "indexed_asset_id"), ("asset_id",))
    templates = ("{base}/indexes/{index_id}/videos/{indexed_asset_id}", "{base}/assets/{asset_id}")


class TwelveLabsAnalysisTaskLink(_PlaygroundLink):
    """The asynchronous analysis task a deferrable gist waited on."""

    name = "TwelveLabs Analysis Task"
    needs = (("analysis_task_id",),)
    templates = ("{base}/analyze/tasks/{analysis_task_id}",)


#: For ``get_provider_info()["extra-links"]``.
LINK_CLASSES = (
    "airflow_provider_gist.links.TwelveLabsIndexLink",
    "airflow_provider_gist.links.TwelveLabsVideoLink",
    "airflow_provider_gist.links.TwelveLabsAnalysisTaskLink",
)
