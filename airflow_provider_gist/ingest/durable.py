"""Durable creates: never upload, index or bill twice for one task instance.

The TwelveLabs API has no idempotency keys: a retried ``POST /assets``, ``POST
/indexes/{id}/indexed-assets`` or ``POST /tasks`` creates a second resource and bills again.
Every create therefore goes through :func:`obtain`, which tries, in this order:

1. the id saved in ``context["task_state_store"]`` by an earlier try of the same task instance
   (reconnect, unless that resource has ``failed``: then a fresh one is created, as
   :class:`airflow.sdk.ResumableJobMixin` does);
2. a lookup by a deterministic *ingest key* that every create call puts in ``user_metadata``
   (``{"gist_ingest_key": key}``): used when ``reuse_existing`` is on, when the state store is
   unavailable, and on every retry (it also covers a create whose response was lost, which the
   state store cannot);
3. the create call, whose id is written to the state store at once, before any waiting. A
   create that failed in a way that may have created the resource all the same (a 5xx, a
   timeout, a garbled answer) is looked up by its ingest key, with backoff, for longer than
   the API's listing lag before anything is created again (:func:`_create`).

Airflow-free apart from reading the task context's ``task_state_store`` and ``ti``.
See docs/ingest.md for the guarantees and their limits.
"""

from __future__ import annotations

import hashlib
import json
import time
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from airflow_provider_gist.errors import GistApiError, GistNotFoundError, GistTransientError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: task_state_store keys. Renaming one breaks in-flight retries (the old key is already stored).
STATE_KEY_ASSET = "gist_asset"
STATE_KEY_INDEXED_ASSET = "gist_indexed_asset"
STATE_KEY_INDEXING_TASK = "gist_indexing_task"
#: A multipart upload in progress: upload id, reserved asset id, chunk size, reported chunks.
STATE_KEY_MULTIPART = "gist_multipart_upload"
#: Creates per try when the API itself answered 5xx (each one after a lookup window found nothing).
CREATE_ATTEMPTS = 3
#: Seconds to keep looking a resource up by its ingest key after a create that may have acted
#: (the connection's ``create_lookup_seconds`` overrides it): longer than the API's listing lag.
CREATE_LOOKUP_SECONDS = 60.0
#: The first pause between those lookups; it doubles each time, up to CREATE_LOOKUP_MAX_PAUSE.
CREATE_LOOKUP_FIRST_PAUSE = 0.5
CREATE_LOOKUP_MAX_PAUSE = 10.0
#: What a gateway in front of the API answers while the API may still be working on the request.
GATEWAY_STATUSES = frozenset({502, 503, 504})
# seams for tests: time moves only when the code sleeps
_sleep = time.sleep
_clock = time.monotonic


def ingest_key(kind: str, *, target: str | None, source: str, scope: str | None = None) -> str:
    """The deterministic key put in ``user_metadata[gist_ingest_key]`` (20 hex characters).

    ``kind`` is ``asset``, ``indexed_asset`` or ``indexing_task``; ``target`` the index id
    (``None`` for assets); ``source`` the URL/file identity (or the asset id for indexed assets);
    ``scope`` is ``None`` when resources may be reused across DAG runs, else the task instance.
    """
    payload = json.dumps(
        {"v": 1, "kind": kind, "target": target, "source": source, "scope": scope}, sort_keys=True
    )
    return hashlib.sha256(payload.encode()).hexdigest()[:20]


class StateStore:
    """``context["task_state_store"]`` that never fails the task: absent or broken means "unavailable"."""

    def __init__(self, context: Context | Mapping[str, Any], log: Any) -> None:
        self._store = context.get("task_state_store")
        self._log = log
        self.available = self._store is not None
        if not self.available:
            log.warning(
                "task_state_store is not in the context: a retry finds its resources by their "
                "ingest key (user_metadata) instead"
            )

    def get(self, key: str) -> dict[str, Any] | None:
        if not self.available:
            return None
        try:
            value = self._store.get(key)  # type: ignore[union-attr]
        except Exception as err:
            self._log.warning(
                "task_state_store.get(%r) failed (%s); falling back to the ingest-key lookup",
                key,
                type(err).__name__,
            )
            self.available = False
            return None
        return dict(value) if isinstance(value, Mapping) else None

    def set(self, key: str, value: dict[str, Any]) -> None:
        if not self.available:
            return
        try:
            self._store.set(key, value)  # type: ignore[union-attr]
        except Exception as err:
            # Not fatal: a retry always also looks the resource up by its ingest key.
            self._log.warning(
                "task_state_store.set(%r) failed (%s); a retry will find the resource by its ingest key",
                key,
                type(err).__name__,
            )


@dataclass
class Durability:
    """What one ``execute()`` knows about its retries: the state store, the try, the reuse scope."""

    store: StateStore
    reuse_existing: bool
    try_number: int
    #: ``None`` when resources may be reused across DAG runs, else the task instance's identity
    scope: str | None

    @classmethod
    def from_context(cls, context: Context | Mapping[str, Any], reuse_existing: bool, log: Any) -> Durability:
        ti = context.get("ti")
        try_number = getattr(ti, "try_number", None)
        scope: str | None = None
        if not reuse_existing:
            if ti is not None and getattr(ti, "run_id", None):
                map_index = getattr(ti, "map_index", -1)
                scope = f"{ti.dag_id}/{ti.run_id}/{ti.task_id}/{-1 if map_index is None else map_index}"
            else:  # no task instance (direct execute() call): nothing to share with anyone
                scope = f"adhoc-{uuid.uuid4()}"
        return cls(
            store=StateStore(context, log),
            reuse_existing=reuse_existing,
            try_number=try_number if isinstance(try_number, int) and try_number > 0 else 1,
            scope=scope,
        )

    @property
    def should_look_up(self) -> bool:
        # A retry always looks: the previous try may have created the resource and died before
        # saving its id, or never received the create response at all.
        return self.reuse_existing or not self.store.available or self.try_number > 1


@dataclass
class Resource:
    """How to reconnect to, find and create one kind of remote resource."""

    kind: str  # for messages: "asset", "indexed asset", "indexing task"
    state_key: str
    ingest_key: str
    fetch: Callable[[str], dict[str, Any]]
    find: Callable[[], dict[str, Any] | None]
    create: Callable[[], dict[str, Any]]
    #: more ids stored next to ``id`` (e.g. index_id, video_id)
    also_store: Callable[[dict[str, Any]], dict[str, Any]] = field(default=lambda body: {})
    #: how long a create that may have acted is looked for before anything else (see ``_create``)
    lookup_seconds: float = CREATE_LOOKUP_SECONDS


def status_of(body: Mapping[str, Any]) -> str | None:
    status = body.get("status")
    return status if isinstance(status, str) else None


def obtain(resource: Resource, durability: Durability, log: Any) -> tuple[dict[str, Any], str]:
    """Reconnect to, find, or create ``resource``; return ``(body, how)``.

    ``how`` is ``"reconnected"`` (id from the state store), ``"found"`` (ingest-key lookup) or
    ``"created"``. A created resource's id is in the state store before this returns.
    """
    stored = durability.store.get(resource.state_key)
    if stored and isinstance(stored.get("id"), str):
        if stored.get("ingest_key") != resource.ingest_key:
            # The inputs changed between tries (a different upstream XCom): not the same video.
            log.warning(
                "stored %s %s was created for other inputs; not reusing it", resource.kind, stored["id"]
            )
        else:
            try:
                body = resource.fetch(stored["id"])
            except GistNotFoundError:
                log.warning("stored %s %s no longer exists; creating a new one", resource.kind, stored["id"])
            else:
                if status_of(body) != "failed":
                    log.info(
                        "reconnecting to %s %s from an earlier try (status %s); not creating another",
                        resource.kind,
                        stored["id"],
                        status_of(body),
                    )
                    return {**body, "_id": stored["id"]}, "reconnected"
                log.warning("stored %s %s has failed; creating a fresh one", resource.kind, stored["id"])

    if durability.should_look_up:
        found = resource.find()
        if found is not None:
            found_id = str(found["_id"])
            log.info(
                "found existing %s %s by ingest key %s (status %s); not creating another",
                resource.kind,
                found_id,
                resource.ingest_key,
                status_of(found),
            )
            durability.store.set(
                resource.state_key,
                {"id": found_id, "ingest_key": resource.ingest_key, **resource.also_store(found)},
            )
            return found, "found"

    body, how = _create(resource, log)
    created_id = str(body["_id"])
    # Saved before anything else can fail, so a retry reconnects instead of creating again.
    durability.store.set(
        resource.state_key, {"id": created_id, "ingest_key": resource.ingest_key, **resource.also_store(body)}
    )
    log.info("%s %s %s (ingest key %s)", how, resource.kind, created_id, resource.ingest_key)
    return body, how


def may_have_acted(err: GistApiError) -> bool:
    """Whether a failed create may have created the resource all the same.

    Only a refusal proves it did not: a 4xx (a 429 included) is answered before anything is
    done, and a connection that was never made carries no request (the hook resends those
    itself). A 5xx may come after the commit, a gateway's 502/503/504 while the API is still at
    work, a read timeout or reset before the answer, and a 2xx with a garbled body after it. A
    read that failed before the create was sent (``create`` may wait for the asset first) made
    nothing either.
    """
    if err.method in ("GET", "HEAD"):
        return False
    return err.status is None or not 400 <= err.status < 500


def api_finished(err: GistApiError) -> bool:
    """Whether the API itself answered (a TwelveLabs error ``code``, not a gateway status): it is
    done with the request, so what a listing does not show after the listing lag, it never made."""
    status = err.status
    return status is not None and status >= 500 and status not in GATEWAY_STATUSES and err.code is not None


def look_up_for(resource: Resource, seconds: float) -> dict[str, Any] | None:
    """Look ``resource`` up by its ingest key until found, for ``seconds`` at most.

    The first lookup is at once (a create that happened is usually listed already), then the
    pauses double from :data:`CREATE_LOOKUP_FIRST_PAUSE`, so a minute costs about nine listings,
    and the last lookup is at the window's end: a listing that lags by less than the window
    always shows a create that happened.
    """
    started = _clock()
    pause = CREATE_LOOKUP_FIRST_PAUSE
    while True:
        found = resource.find()
        if found is not None:
            return found
        left = seconds - (_clock() - started)
        if left <= 0:
            return None
        _sleep(min(pause, left))
        pause = min(pause * 2, CREATE_LOOKUP_MAX_PAUSE)


def _create(resource: Resource, log: Any) -> tuple[dict[str, Any], str]:
    """Create ``resource``; after a failure that may have created it, find it before anything else.

    The hook resends a create only when the server surely did not act (a 429, a connection never
    made). Any other failure may hide a resource that exists, or is still being made, and that a
    listing shows only after a lag. So it is looked up by its ingest key, with backoff, for
    ``resource.lookup_seconds`` (longer than the listing lag). Found: it is used. Not found:

    * created again, in this try, only if the API itself answered a 5xx (it is done with the
      request, and the lag has passed: it made nothing), at most :data:`CREATE_ATTEMPTS` times;
    * otherwise (a gateway's 502/503/504, a timeout, a reset, a garbled answer) the server may
      still be at work: the error is raised and the task retry, after its delay, looks again
      before it creates anything.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return resource.create(), "created"
        except GistApiError as err:
            if not may_have_acted(err):
                raise
            log.warning(
                "%s; the %s may exist all the same: looking it up by its ingest key for up to %gs "
                "before anything else",
                err,
                resource.kind,
                resource.lookup_seconds,
            )
            found = look_up_for(resource, resource.lookup_seconds)
            if found is not None:
                return found, "found"
            if not api_finished(err):
                raise GistTransientError(
                    f"{err.api_message}; the {resource.kind} was not listed within "
                    f"{resource.lookup_seconds:g}s, but the server may still be creating (or listing) "
                    "it, so no other is created in this try (the task retry looks it up again first)",
                    status=err.status,
                    code=err.code,
                    method=err.method,
                    path=err.path,
                ) from err
            if attempt == CREATE_ATTEMPTS:
                raise
            log.warning(
                "no %s listed %gs after the API answered HTTP %s: it made none; creating it again",
                resource.kind,
                resource.lookup_seconds,
                err.status,
            )
    raise AssertionError("unreachable: the last attempt returns or raises")


def alive(item: Mapping[str, Any]) -> bool:
    """A listed resource that has an id and has not failed (so it can be reused)."""
    return status_of(item) != "failed" and bool(item.get("_id"))


def first_alive(
    items: Iterator[dict[str, Any]], match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The first listed item that matches and has not failed (listings are newest first)."""
    return next((item for item in items if match(item) and alive(item)), None)
