"""Triggers that wait for a TwelveLabs asset, indexed asset or legacy indexing task to finish.

One polling loop (:class:`TwelveLabsStatusTrigger`) and three thin subclasses that only say
which object to ``GET`` and which ids name it. Triggers make idempotent GETs only, so running
twice or restarting from :meth:`~TwelveLabsStatusTrigger.serialize` is harmless; the absolute
``deadline`` (epoch seconds, computed by the operator) survives a triggerer restart, and
``dag.test()`` (which enforces no deferral timeout) still ends.

Every trigger yields exactly one event and returns. The payload (plain JSON) is::

    {"status": "ready" | "failed" | "timeout" | "error",
     "resource": "asset" | "indexed_asset" | "indexing_task",
     <the ids>, "remote_status": <last status the API reported, or None>,
     "message": <why it ended: the API's failure reason for "failed">,
     "waited_seconds": <float>,
     <for "ready": the fields of :func:`~airflow_provider_gist.waits.ready_fields`>,
     <for "error" after an HTTP error: "http_status" and the API's "code">}

:func:`~airflow_provider_gist.waits.ready_fields` is also what the sensors push to XCom, in both
poke and deferrable mode.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import AsyncIterator, Mapping
from typing import TYPE_CHECKING, Any, ClassVar

from airflow.triggers.base import BaseTrigger, TriggerEvent

from airflow_provider_gist.client.retry import RetryPolicy
from airflow_provider_gist.client.settings import DEFAULT_CONN_ID
from airflow_provider_gist.errors import GistApiError, GistError, GistRateLimitedError, GistTransientError
from airflow_provider_gist.waits import describe, failure_reason, ready_fields

if TYPE_CHECKING:
    from airflow_provider_gist.hooks.gist_async import GistAsyncHook

#: The smallest time a poll may take once the deadline is (nearly) due: one last look is allowed.
_LAST_POLL_BUDGET = 5.0


class TwelveLabsStatusTrigger(BaseTrigger):
    """Poll one TwelveLabs object until it is ``ready`` or ``failed``, or the deadline passes.

    Subclasses set :attr:`resource` and :attr:`id_fields` and implement :meth:`fetch` (one GET).
    Polls every ``poll_interval`` seconds (jittered by 10%). Transient failures (429, 5xx,
    connection errors) are tolerated up to ``max_errors`` in a row, waiting for the server's
    ``Retry-After``/``X-Ratelimit-Reset`` hint or an exponential backoff (never less than the
    backoff, so a ``Retry-After: 0`` cannot make a tight loop); one more ends with an
    ``error`` event, as do auth, not-found and configuration errors at once.

    :param deadline: absolute end of the wait, epoch seconds (computed by the operator, so a
        restarted trigger does not wait afresh).
    :param twelvelabs_conn_id: connection id (its API key never enters the kwargs or events).
    :param poll_interval: seconds between polls.
    :param max_errors: consecutive transient errors tolerated.
    :param started_at: epoch seconds the wait began (for ``waited_seconds``); defaults to now.
    """

    #: Event ``resource`` value and key of :data:`READY_FIELDS`.
    resource: ClassVar[str] = ""
    #: Constructor arguments that name the awaited object.
    id_fields: ClassVar[tuple[str, ...]] = ()
    #: Remote statuses that end the wait with a ``ready`` event, and with a ``failed`` one;
    #: any other status is polled again.
    done_statuses: ClassVar[frozenset[str]] = frozenset({"ready"})
    failed_statuses: ClassVar[frozenset[str]] = frozenset({"failed"})

    def __init__(
        self,
        *,
        deadline: float,
        twelvelabs_conn_id: str = DEFAULT_CONN_ID,
        poll_interval: float = 30.0,
        max_errors: int = 5,
        started_at: float | None = None,
    ) -> None:
        super().__init__()
        if poll_interval <= 0:
            raise ValueError("poll_interval must be positive")
        if max_errors < 0:
            raise ValueError("max_errors must not be negative")
        self.deadline = float(deadline)
        self.twelvelabs_conn_id = twelvelabs_conn_id
        self.poll_interval = float(poll_interval)
        self.max_errors = int(max_errors)
        self.started_at = float(started_at) if started_at is not None else time.time()

    @property
    def ids(self) -> dict[str, str]:
        """The ids naming the awaited object, as given."""
        return {name: getattr(self, name) for name in self.id_fields}

    def serialize(self) -> tuple[str, dict[str, Any]]:
        return (
            f"{type(self).__module__}.{type(self).__qualname__}",
            {
                **self.ids,
                "deadline": self.deadline,
                "twelvelabs_conn_id": self.twelvelabs_conn_id,
                "poll_interval": self.poll_interval,
                "max_errors": self.max_errors,
                "started_at": self.started_at,
            },
        )

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        """One GET of the awaited object."""
        raise NotImplementedError

    def _hook(self) -> GistAsyncHook:
        from airflow_provider_gist.hooks.gist_async import GistAsyncHook

        # One attempt per poll: this loop counts errors and waits itself, so the hook's own
        # retries would only multiply the waits and could overrun the deadline.
        return GistAsyncHook(self.twelvelabs_conn_id, retry_policy=RetryPolicy(max_attempts=1))

    def _event(self, status: str, remote_status: str | None, message: str, /, **more: Any) -> TriggerEvent:
        # positional-only: ``more`` (a summary) carries its own "status", overridden below
        payload: dict[str, Any] = {
            **self.ids,
            **more,
            "status": status,
            "resource": self.resource,
            "remote_status": remote_status,
            "message": message,
            "waited_seconds": round(max(0.0, time.time() - self.started_at), 1),
        }
        return TriggerEvent(payload)

    async def run(self) -> AsyncIterator[TriggerEvent]:
        """Poll until a terminal status, the deadline or a fatal error; yield one event."""
        what = describe(self.resource, self.ids)
        hook = self._hook()
        backoff = RetryPolicy()
        errors = 0
        last_status: str | None = None
        self.log.info("Waiting for %s (deadline in %.0fs)", what, self.deadline - time.time())
        while True:
            remaining = self.deadline - time.time()
            try:
                remote = await asyncio.wait_for(self.fetch(hook), timeout=max(remaining, _LAST_POLL_BUDGET))
            except TimeoutError:
                # only when the request outlived the deadline: the wait is over
                yield self._timeout_event(what, last_status, "a status request was still running")
                return
            except (GistRateLimitedError, GistTransientError) as err:
                errors += 1
                if errors > self.max_errors:
                    yield self._event(
                        "error",
                        last_status,
                        f"gave up after {errors} failed status requests in a row; the last: {err}",
                    )
                    return
                wait = max(err.retry_after or 0.0, backoff.backoff(errors))
                remaining = self.deadline - time.time()
                if wait >= remaining:
                    # the server (or the backoff) asks for more time than is left: honour it and stop
                    self.log.warning("%s: %s; the deadline comes first", what, err)
                    await asyncio.sleep(max(0.0, remaining))
                    yield self._timeout_event(what, last_status, f"the last status request failed: {err}")
                    return
                self.log.warning(
                    "%s: %s; retrying in %.1fs (error %d of %d tolerated)",
                    what,
                    err,
                    wait,
                    errors,
                    self.max_errors,
                )
                await asyncio.sleep(wait)
                continue
            except GistApiError as err:  # 401/403, 404, 400: the same request cannot succeed later
                yield self._event("error", last_status, str(err), http_status=err.status, code=err.code)
                return
            except GistError as err:  # configuration: missing connection or API key, bad id
                yield self._event("error", last_status, str(err))
                return

            errors = 0
            status = remote.get("status") if isinstance(remote, Mapping) else None
            previous, last_status = last_status, status if isinstance(status, str) else None
            if last_status != previous:  # changes only: an hour's wait must not log every poll
                self.log.info(
                    "%s is %s (was %s) after %.0fs",
                    what,
                    last_status or "unknown",
                    previous or "not yet seen",
                    max(0.0, time.time() - self.started_at),
                )
            if last_status in self.done_statuses:
                summary = ready_fields(self.resource, remote, self.ids)
                yield self._event("ready", last_status, f"{what} is {last_status}", **summary)
                return
            if last_status in self.failed_statuses:
                yield self._event("failed", last_status, failure_reason(self.resource, remote, self.ids))
                return
            remaining = self.deadline - time.time()
            if remaining <= 0:
                yield self._timeout_event(what, last_status, None)
                return
            self.log.debug("%s is %s; next poll in about %.0fs", what, last_status, self.poll_interval)
            await asyncio.sleep(min(_jittered(self.poll_interval), remaining))

    def _timeout_event(self, what: str, last_status: str | None, detail: str | None) -> TriggerEvent:
        waited = max(0.0, time.time() - self.started_at)
        message = f"{what} was not ready after {waited:.0f}s; last status: {last_status or 'unknown'}"
        if detail:
            message += f" ({detail})"
        return self._event("timeout", last_status, message)


class AssetReadyTrigger(TwelveLabsStatusTrigger):
    """Wait for an asset (``GET /assets/{asset_id}``) to finish processing: ``ready`` or ``failed``.

    A failed event's ``message`` is the asset's ``error.message``.
    """

    resource = "asset"
    id_fields = ("asset_id",)

    def __init__(self, *, asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.asset_id = asset_id

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        return await hook.get_asset(self.asset_id)


class IndexedAssetReadyTrigger(TwelveLabsStatusTrigger):
    """Wait for an indexed asset (``GET /indexes/{index_id}/indexed-assets/{id}``) to be indexed."""

    resource = "indexed_asset"
    id_fields = ("index_id", "indexed_asset_id")

    def __init__(self, *, index_id: str, indexed_asset_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.index_id = index_id
        self.indexed_asset_id = indexed_asset_id

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        return await hook.get_indexed_asset(self.index_id, self.indexed_asset_id)


class IndexingTaskTrigger(TwelveLabsStatusTrigger):
    """Wait for a legacy video indexing task (``GET /tasks/{indexing_task_id}``) to finish."""

    resource = "indexing_task"
    id_fields = ("indexing_task_id",)

    def __init__(self, *, indexing_task_id: str, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.indexing_task_id = indexing_task_id

    async def fetch(self, hook: GistAsyncHook) -> dict[str, Any]:
        return await hook.get_task(self.indexing_task_id)


def _jittered(value: float, spread: float = 0.1) -> float:
    """``value`` spread by up to ``spread`` either way, so parallel pollers do not march in step."""
    return value * (1 + spread * (2 * random.random() - 1))
