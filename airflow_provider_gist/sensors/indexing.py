"""Sensors that wait for TwelveLabs assets to be processed and videos to be indexed.

Both sensors work in three modes with one set of rules: ``poke`` and ``reschedule`` poll with
the sync :class:`~airflow_provider_gist.hooks.gist.GistHook`; deferrable mode checks once in
the worker and, unless the object is already finished, hands the wait to a trigger from
:mod:`airflow_provider_gist.triggers.indexing`. Either way the sensor returns (pushes to XCom)
the same small dict, built by :func:`~airflow_provider_gist.waits.ready_fields`.

Deferrable is the default here, unlike most Airflow operators: see :func:`default_deferrable`.
"""

from __future__ import annotations

import configparser
import os
import time
from collections.abc import Sequence
from datetime import timedelta
from functools import cached_property
from typing import TYPE_CHECKING, Any

from airflow.sdk import BaseSensorOperator, Context, PokeReturnValue, conf
from airflow.sdk.exceptions import (
    AirflowException,
    AirflowFailException,
    AirflowSensorTimeout,
    AirflowSkipException,
)

from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.errors import GistRateLimitedError, GistTransientError, GistValidationError
from airflow_provider_gist.ids import validate_id
from airflow_provider_gist.waits import READY_FIELDS, describe, failure_reason, ready_fields

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist import GistHook
    from airflow_provider_gist.triggers.indexing import TwelveLabsStatusTrigger

_DEFERRABLE_SECTION, _DEFERRABLE_KEY = "operators", "default_deferrable"
#: task_state_store key: when the first try of this task instance started waiting (epoch
#: seconds). Renaming it gives in-flight waits a fresh timeout.
STATE_KEY_STARTED_AT = "gist_sensor_started_at"


def default_deferrable() -> bool:
    """Whether our sensors defer when ``deferrable`` is not passed: yes, unless configured.

    Airflow's ``[operators] default_deferrable`` ships with the default ``False``, so the usual
    ``conf.getboolean(..., fallback=True)`` could never take effect. We therefore honour the
    option only when it is *explicitly* set (environment variable, its ``_CMD``/``_SECRET``
    variants, or ``airflow.cfg``), and otherwise defer: a sensor that waits minutes for indexing
    should not hold a worker slot. Evaluated once, at import, like the stock pattern.
    """
    env = f"AIRFLOW__{_DEFERRABLE_SECTION.upper()}__{_DEFERRABLE_KEY.upper()}"
    explicitly_set = any(f"{env}{suffix}" in os.environ for suffix in ("", "_CMD", "_SECRET")) or (
        # the stdlib parser view holds only values read from airflow.cfg or set in code, not defaults
        configparser.ConfigParser.has_option(conf, _DEFERRABLE_SECTION, _DEFERRABLE_KEY)
    )
    if explicitly_set:
        return conf.getboolean(_DEFERRABLE_SECTION, _DEFERRABLE_KEY)
    return True


def _seconds(value: object, field_name: str) -> float:
    """A positive number of seconds; templated values arrive as strings (``"30"``)."""
    try:
        number = float(value) if isinstance(value, int | float | str) and not isinstance(value, bool) else 0.0
    except ValueError:
        number = 0.0
    if not 0 < number < float("inf"):
        raise GistValidationError(f"{field_name} must be a positive number of seconds, got {value!r}")
    return number


class TwelveLabsStatusSensor(BaseSensorOperator):
    """Base of the TwelveLabs sensors: wait until a remote object is ``ready``; fail on ``failed``.

    Returns (XCom) the object's summary dict (ids, ``status`` and the useful fields listed in
    :data:`~airflow_provider_gist.triggers.indexing.READY_FIELDS`). ``failed`` raises
    :class:`AirflowFailException` with the API's reason (no retries: the same object stays
    failed); running out of ``timeout`` raises :class:`AirflowSensorTimeout` naming the wait and
    the last status; API errors that survive the hook's retries raise typed ``GistError``\\ s.

    :param twelvelabs_conn_id: connection id (templated), default ``twelvelabs_default``.
    :param deferrable: hand the wait to the triggerer (default: :func:`default_deferrable`).
    :param poll_interval: seconds between the trigger's polls in deferrable mode (default 30,
        templated); poke and reschedule modes use ``poke_interval`` as usual.
    :param max_errors: consecutive transient API errors the trigger tolerates (default 5).

    ``timeout`` is one deadline for the task instance, not per try (as Airflow documents for
    sensors: retrying does not reset the timeout): in deferrable and poke mode it counts from
    when the *first* try started, kept in ``task_state_store``. Reschedule mode follows
    Airflow's own reschedule bookkeeping.
    """

    template_fields: Sequence[str] = ("twelvelabs_conn_id", "poll_interval")
    ui_color = "#d9ecf2"

    #: Key of READY_FIELDS and of the trigger's ``resource`` (set per instance when it varies).
    resource: str = ""

    def __init__(
        self,
        *,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        deferrable: bool = default_deferrable(),
        poll_interval: float = 30.0,
        max_errors: int = 5,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self.deferrable = deferrable
        self.poll_interval = poll_interval
        self.max_errors = max_errors
        self._last_status: str | None = None
        if deferrable and self.mode == "reschedule":
            # deferral frees the worker slot too; say so rather than surprise the user
            self.log.info("%s: deferrable=True takes precedence over mode='reschedule'", self.task_id)

    # --------------------------------------------------------------- what subclasses define

    def remote_ids(self) -> dict[str, str]:
        """The validated ids naming the awaited object (raises naming the bad field)."""
        raise NotImplementedError

    def fetch(self, hook: GistHook, ids: dict[str, str]) -> dict[str, Any]:
        """One sync GET of the awaited object."""
        raise NotImplementedError

    def build_trigger(self, ids: dict[str, str], **common: Any) -> TwelveLabsStatusTrigger:
        """The trigger that waits for the same object."""
        raise NotImplementedError

    # --------------------------------------------------------------- shared behaviour

    @cached_property
    def hook(self) -> GistHook:
        """One hook (and HTTP session) for every poke of this task instance."""
        from airflow_provider_gist.hooks.gist import GistHook

        return GistHook(twelvelabs_conn_id=self.twelvelabs_conn_id)

    def _fetch(self, ids: dict[str, str]) -> dict[str, Any]:
        try:
            return self.fetch(self.hook, ids)
        finally:
            self.hook.close()  # pooled connections are not kept between pokes (reschedule mode)

    def _check(self, remote: dict[str, Any], ids: dict[str, str]) -> PokeReturnValue:
        """Judge one remote object: done (with the XCom summary), not yet, or raise on failure."""
        status = remote.get("status")
        self._last_status = status if isinstance(status, str) else None
        if status == "ready":
            return PokeReturnValue(is_done=True, xcom_value=ready_fields(self.resource, remote, ids))
        if status == "failed":
            raise AirflowFailException(
                f"{describe(self.resource, ids)} failed: {failure_reason(self.resource, remote, ids)}"
            )
        self.log.info("%s is %s", describe(self.resource, ids), status)
        return PokeReturnValue(is_done=False)

    def poke(self, context: Context) -> PokeReturnValue:
        ids = self.remote_ids()
        return self._check(self._fetch(ids), ids)

    def _first_started_at(self, context: Context) -> float:
        """When the first try of this task instance started waiting (this try's start if unknown).

        Kept in ``task_state_store``, which survives retries: a retry then waits only for what
        is left of ``timeout`` instead of a fresh one.
        """
        now = time.time()
        store = context.get("task_state_store")
        if store is None:
            self.log.warning("task_state_store is not in the context: the timeout counts from this try")
            return now
        try:
            first = store.get(STATE_KEY_STARTED_AT)
            if isinstance(first, int | float) and not isinstance(first, bool) and first <= now:
                return float(first)
            store.set(STATE_KEY_STARTED_AT, now)
        except Exception as err:  # a broken store must not fail the wait; it only loses the deadline
            self.log.warning(
                "task_state_store failed (%s): the timeout counts from this try", type(err).__name__
            )
        return now

    def execute(self, context: Context) -> Any:
        ids = self.remote_ids()  # bad ids fail here, before any HTTP call, in every mode
        poll_interval = _seconds(self.poll_interval, "poll_interval")
        if not self.deferrable:
            if self.mode == "poke":
                # Airflow's poke loop times from this try: give it only what is left.
                self.timeout = max(0.0, self._first_started_at(context) + self.timeout - time.time())
            try:
                return super().execute(context)
            except AirflowSensorTimeout as err:
                raise AirflowSensorTimeout(
                    f"{err} Waited for {describe(self.resource, ids)}; "
                    f"last status: {self._last_status or 'unknown'}."
                ) from err
        started_at = self._first_started_at(context)
        deadline = started_at + self.timeout
        try:
            done = self._check(self._fetch(ids), ids)
        except (GistRateLimitedError, GistTransientError) as err:
            # the trigger tolerates these too; waiting there beats failing the task now
            self.log.warning("First status check failed (%s); deferring anyway", err)
        except AirflowFailException as err:
            if self.soft_fail or self.never_fail:  # as BaseSensorOperator.execute does for pokes
                raise AirflowSkipException(f"Skipping: {err}") from err
            raise
        else:
            if done.is_done:
                self.log.info("%s is already ready; not deferring", describe(self.resource, ids))
                return done.xcom_value
        remaining = deadline - time.time()
        if remaining <= 0:  # an earlier try used up the wait
            raise AirflowSensorTimeout(
                f"Sensor timed out: {self.timeout:.0f}s have passed since the first try started "
                f"waiting for {describe(self.resource, ids)}; last status: {self._last_status or 'unknown'}."
            )
        self.defer(
            trigger=self.build_trigger(
                ids,
                deadline=deadline,
                twelvelabs_conn_id=self.twelvelabs_conn_id,
                poll_interval=poll_interval,
                max_errors=self.max_errors,
                started_at=started_at,
            ),
            method_name="execute_complete",
            timeout=timedelta(seconds=remaining),
        )

    def execute_complete(self, context: Context, event: dict[str, Any] | None = None) -> dict[str, Any]:
        """Resume after the trigger: return the summary on ``ready``, raise on anything else."""
        if not isinstance(event, dict):
            raise AirflowException(f"the trigger ended without a usable event: {event!r}")
        status = event.get("status")
        resource = event.get("resource") or self.resource
        what = describe(resource, event)
        message = event.get("message") or "no details"
        if status == "ready" and resource in READY_FIELDS:
            return {key: event.get(key) for key in READY_FIELDS[resource]}
        if status == "failed":
            raise AirflowFailException(f"{what} failed: {message}")
        if status == "timeout":
            raise AirflowSensorTimeout(
                f"Sensor timed out after waiting {float(event.get('waited_seconds') or 0):.0f}s "
                f"(timeout {self.timeout:.0f}s) for {what}; last status: "
                f"{event.get('remote_status') or 'unknown'}. {message}"
            )
        if status == "error":
            raise AirflowException(f"waiting for {what} failed: {message}")
        raise AirflowException(f"unexpected trigger event status {status!r} for {what}")


class IndexingCompleteSensor(TwelveLabsStatusSensor):
    """Wait until a video is indexed: an indexed asset, or a legacy indexing task.

    Give either ``index_id`` and ``indexed_asset_id`` (current API:
    ``GET /indexes/{index_id}/indexed-assets/{indexed_asset_id}``) or ``indexing_task_id``
    (legacy ``GET /tasks/{indexing_task_id}``), never both. All ids are templated.

    Returns for an indexed asset ``{"index_id", "indexed_asset_id", "video_id", "asset_id",
    "status", "filename", "duration", "updated_at", "indexed_at"}`` and for a task
    ``{"indexing_task_id", "index_id", "video_id", "status", "filename", "duration",
    "updated_at"}``. See :class:`TwelveLabsStatusSensor` for modes and failures.
    """

    template_fields: Sequence[str] = (
        "index_id",
        "indexed_asset_id",
        "indexing_task_id",
        "twelvelabs_conn_id",
        "poll_interval",
    )

    def __init__(
        self,
        *,
        index_id: str | None = None,
        indexed_asset_id: str | None = None,
        indexing_task_id: str | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.index_id = index_id
        self.indexed_asset_id = indexed_asset_id
        self.indexing_task_id = indexing_task_id
        # Only the shape is checked here (values may still be templates); ids are checked in execute.
        self.resource = self._form()

    def _form(self) -> str:
        asset_form = self.index_id is not None or self.indexed_asset_id is not None
        task_form = self.indexing_task_id is not None
        if asset_form and task_form:
            raise GistValidationError(
                "give either index_id and indexed_asset_id, or indexing_task_id, not both"
            )
        if task_form:
            return "indexing_task"
        if self.index_id is None or self.indexed_asset_id is None:
            missing = "indexed_asset_id" if self.index_id is not None else "index_id"
            raise GistValidationError(
                f"{missing} is required: give index_id and indexed_asset_id, or indexing_task_id"
            )
        return "indexed_asset"

    def remote_ids(self) -> dict[str, str]:
        if self._form() == "indexing_task":
            return {"indexing_task_id": validate_id(self.indexing_task_id, "indexing_task_id")}
        return {
            "index_id": validate_id(self.index_id, "index_id"),
            "indexed_asset_id": validate_id(self.indexed_asset_id, "indexed_asset_id"),
        }

    def fetch(self, hook: GistHook, ids: dict[str, str]) -> dict[str, Any]:
        if "indexing_task_id" in ids:
            return hook.get_task(ids["indexing_task_id"])
        return hook.get_indexed_asset(ids["index_id"], ids["indexed_asset_id"])

    def build_trigger(self, ids: dict[str, str], **common: Any) -> TwelveLabsStatusTrigger:
        from airflow_provider_gist.triggers.indexing import IndexedAssetReadyTrigger, IndexingTaskTrigger

        if "indexing_task_id" in ids:
            return IndexingTaskTrigger(indexing_task_id=ids["indexing_task_id"], **common)
        return IndexedAssetReadyTrigger(
            index_id=ids["index_id"], indexed_asset_id=ids["indexed_asset_id"], **common
        )


class AssetReadySensor(TwelveLabsStatusSensor):
    """Wait until an asset (``GET /assets/{asset_id}``) has been processed and is ``ready``.

    A ``failed`` asset fails the task with the API's ``error.message``. Returns ``{"asset_id",
    "status", "filename", "file_type", "duration", "created_at"}``. ``asset_id`` is templated.
    See :class:`TwelveLabsStatusSensor` for modes and failures.
    """

    template_fields: Sequence[str] = ("asset_id", "twelvelabs_conn_id", "poll_interval")
    resource = "asset"

    def __init__(self, *, asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id

    def remote_ids(self) -> dict[str, str]:
        return {"asset_id": validate_id(self.asset_id, "asset_id")}

    def fetch(self, hook: GistHook, ids: dict[str, str]) -> dict[str, Any]:
        return hook.get_asset(ids["asset_id"])

    def build_trigger(self, ids: dict[str, str], **common: Any) -> TwelveLabsStatusTrigger:
        from airflow_provider_gist.triggers.indexing import AssetReadyTrigger

        return AssetReadyTrigger(asset_id=ids["asset_id"], **common)
