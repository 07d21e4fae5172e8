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
3. the create call, whose id is written to the state store at once, before any waiting.

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

from airflow_provider_gist.errors import GistNotFoundError, GistTransientError

if TYPE_CHECKING:
    from airflow.sdk import Context

#: task_state_store keys. Renaming one breaks in-flight retries (the old key is already stored).
STATE_KEY_ASSET = "gist_asset"
STATE_KEY_INDEXED_ASSET = "gist_indexed_asset"
STATE_KEY_INDEXING_TASK = "gist_indexing_task"
#: Creates per try when the server answers 5xx (each retry follows a lookup by ingest key).
CREATE_ATTEMPTS = 3
CREATE_LOOKUP_DELAY = 1.0


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


def _create(resource: Resource, log: Any) -> tuple[dict[str, Any], str]:
    """Create ``resource``; after a 5xx answer, look it up by its ingest key before trying again.

    The hook never repeats a create blindly after a 5xx, since the server may have acted on it.
    But a server that *answered* has finished with the request, so the ingest-key lookup tells
    whether it did: found, we use it; not found, we create again, all within this try. A read
    timeout or a reset stays an error for the task retry, whose delay gives a server that may
    still be working time to finish before the lookup.
    """
    for attempt in range(1, CREATE_ATTEMPTS + 1):
        try:
            return resource.create(), "created"
        except GistTransientError as err:
            if err.status is None or attempt == CREATE_ATTEMPTS:
                raise
            log.warning("%s; looking the %s up by its ingest key before trying again", err, resource.kind)
            time.sleep(CREATE_LOOKUP_DELAY)  # let the listing catch up with a create that did happen
            found = resource.find()
            if found is not None:
                return found, "found"
    raise AssertionError("unreachable: the last attempt returns or raises")


def alive(item: Mapping[str, Any]) -> bool:
    """A listed resource that has an id and has not failed (so it can be reused)."""
    return status_of(item) != "failed" and bool(item.get("_id"))


def first_alive(
    items: Iterator[dict[str, Any]], match: Callable[[dict[str, Any]], bool]
) -> dict[str, Any] | None:
    """The first listed item that matches and has not failed (listings are newest first)."""
    return next((item for item in items if match(item) and alive(item)), None)
