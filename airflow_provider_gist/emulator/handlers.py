"""Helpers shared by the route handlers: query checks, pagination, sorting, filters, bodies.

Each ``routes_*`` module adds the handlers of one group of operations to a subclass of
:class:`HandlerBase`; :class:`~.app.Emulator` combines them.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Iterable
from typing import Any

from .calls import Call, Reply
from .faults import FaultInjector
from .jobs import JobQueue
from .state import (
    ApiError,
    Clock,
    IndexedAsset,
    Page,
    State,
    check_metadata,
    invalid,
    metadata_matches,
    paginate,
    parse_rfc3339,
)
from .uploads import UploadStore

MAX_PAGE_LIMIT = 50
PAGINATION = {"page", "page_limit"}
SORTING = {"sort_by", "sort_option"}
RANGES = ("duration", "fps", "width", "height", "size")
# Query names each operation understands; anything else is a 400, except on the lists that
# treat unknown bare keys as user_metadata filters.
KNOWN_QUERY: dict[str, set[str]] = {
    "GET /indexes": PAGINATION
    | SORTING
    | {"index_name", "model_options", "model_family", "created_at", "updated_at"},
    "GET /assets": PAGINATION | {"asset_ids", "asset_types", "filename"},
    "DELETE /assets/{asset_id}": {"force"},
    "GET /assets/{asset_id}/indexed-assets": PAGINATION,
    "GET /assets/multipart-uploads": PAGINATION,
    "GET /assets/multipart-uploads/{upload_id}": PAGINATION,
    "GET /tasks": PAGINATION
    | SORTING
    | {"index_id", "status", "filename", "duration", "width", "height", "created_at", "updated_at"},
    "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}": {"embedding_option", "transcription"},
    "GET /indexes/{index-id}/videos/{video-id}": {"embedding_option", "transcription"},
    "GET /analyze/tasks": PAGINATION | {"status", "video_url", "asset_id", "video_id", "analysis_mode"},
    "GET /analyze/batches": PAGINATION | {"status", "analysis_mode"},
}
METADATA_LISTS = {"GET /indexes/{index-id}/videos", "GET /indexes/{index-id}/indexed-assets"}


class HandlerBase:
    """State the handlers share, and the helpers they use. Handlers raise :class:`ApiError`."""

    state: State
    clock: Clock
    uploads: UploadStore
    jobs: JobQueue
    faults: FaultInjector
    #: seconds before a new resource appears in listings (see :meth:`_listed`)
    listing_lag: float
    #: the last video listing computed: (key, state version, items); see :meth:`_video_listing`
    _last_listing: tuple[Any, Any, list[IndexedAsset]] | None = None

    def check_query(self, call: Call) -> None:
        known = KNOWN_QUERY.get(call.op.key, set())
        if call.op.key in METADATA_LISTS:
            return
        for name in call.query:
            base = name.split("[", 1)[0]
            if base not in known:
                raise ApiError(
                    400, "parameter_unknown", f"The query parameter {name!r} is not supported here."
                )

    def _listed(self, items: Iterable[Any]) -> list[Any]:
        """What a listing shows: with a listing lag, resources younger than the lag are not in it
        yet (a GET by id sees them at once), like an eventually consistent search index."""
        if not self.listing_lag:
            return list(items)
        cutoff = self.state.now() - self.listing_lag
        return [item for item in items if item.created_at <= cutoff]

    def _video_listing(self, call: Call, index_id: str, *, ready_only: bool = False) -> list[IndexedAsset]:
        """The filtered, sorted videos of a listing, kept for its next pages.

        Paging through an index of 100,000 videos would otherwise filter and sort all of them
        for every page of 50 (seconds per page). Kept only while nothing can change the answer:
        no video added, removed or edited (the state's version) and every video of the scope in
        its final status (statuses and update times then no longer move with the clock), and
        never with a listing lag (which moves with the clock).
        """
        key = (call.op.key, index_id, tuple((k, v) for k, v in call.query.items() if k not in PAGINATION))
        version = self.state.version()
        last = self._last_listing
        if last is not None and last[0] == key and last[1] == version:
            return last[2]
        now = self.state.now()
        scoped = [v for v in self.state.indexed.values() if v.index_id == index_id]
        shown = [v for v in scoped if v.schedule.status(now) == "ready"] if ready_only else scoped
        items = self._video_filters(call, self._listed(shown))
        settled = not self.listing_lag and all(v.schedule.final_at <= now for v in scoped)
        self._last_listing = (key, version, items) if settled else None
        return items

    @staticmethod
    def _int(call: Call, name: str, default: int) -> int:
        raw = call.query.get(name)
        if raw is None:
            return default
        try:
            return int(raw)
        except ValueError as exc:
            raise invalid(f"The {name} parameter must be an integer.") from exc

    def _page_params(self, call: Call) -> tuple[int, int]:
        page = self._int(call, "page", 1)
        limit = self._int(call, "page_limit", 10)
        if page < 1:
            raise invalid("The page parameter must be >= 1.")
        if not 1 <= limit <= MAX_PAGE_LIMIT:
            raise invalid(f"The page_limit parameter must be between 1 and {MAX_PAGE_LIMIT}.")
        return page, limit

    def _paged(self, call: Call, items: list[Any], render: Callable[[Any], dict[str, Any]]) -> Reply:
        page, limit = self._page_params(call)
        result: Page = paginate(items, page, limit)
        return Reply(200, {"data": [render(i) for i in result.items], "page_info": result.page_info()})

    @staticmethod
    def _sorted(call: Call, items: list[Any], updated: Callable[[Any], float]) -> list[Any]:
        sort_by = call.query.get("sort_by", "created_at")
        option = call.query.get("sort_option", "desc")
        if sort_by not in ("created_at", "updated_at"):
            raise invalid("sort_by must be created_at or updated_at.")
        if option not in ("asc", "desc"):
            raise invalid("sort_option must be asc or desc.")
        if sort_by == "created_at":
            return sorted(items, key=lambda i: (i.created_at, i.seq), reverse=option == "desc")
        return sorted(items, key=lambda i: (updated(i), i.seq), reverse=option == "desc")

    @staticmethod
    def _since(call: Call, name: str) -> float | None:
        raw = call.query.get(name)
        return None if raw is None else parse_rfc3339(raw)

    @staticmethod
    def _bool(raw: str | None, name: str, default: bool) -> bool:
        if raw is None:
            return default
        if raw.lower() in ("true", "false"):
            return raw.lower() == "true"
        raise invalid(f"The {name} parameter must be true or false.")

    @staticmethod
    def _json_body(call: Call) -> Any:
        if call.json_error:
            raise invalid(call.json_error)
        return call.json

    @staticmethod
    def _metadata_field(call: Call) -> dict[str, Any] | None:
        raw = call.field_value("user_metadata")
        if raw is None:
            return None
        try:
            value = json.loads(raw)
        except ValueError as exc:
            raise invalid("user_metadata must be a JSON-encoded object.") from exc
        return dict(check_metadata(value, allow_null=False))

    def _video_filters(self, call: Call, videos: list[IndexedAsset]) -> list[IndexedAsset]:
        known = (
            PAGINATION
            | SORTING
            | {"filename", "created_at", "updated_at", "status", "user_metadata", *RANGES}
        )
        wanted_meta: dict[str, str] = {}
        ranges: dict[tuple[str, str], float] = {}
        for name, value in call.query.items():
            match = re.fullmatch(r"(\w+)\[([^\]]+)\]", name)
            if match and match.group(1) == "user_metadata":
                wanted_meta[match.group(2)] = value
            elif match and match.group(1) in RANGES and match.group(2) in ("gte", "lte"):
                try:
                    ranges[(match.group(1), match.group(2))] = float(value)
                except ValueError as exc:
                    raise invalid(f"{name} must be a number.") from exc
            elif match:
                raise ApiError(
                    400, "parameter_unknown", f"The query parameter {name!r} is not supported here."
                )
            elif name not in known:
                # The docs show bare keys (?category=news); the SDK sends user_metadata[category].
                wanted_meta[name] = value
        filename = call.query.get("filename")
        created = self._since(call, "created_at")
        updated = self._since(call, "updated_at")
        now = self.state.now()
        out = []
        for video in videos:
            media = video.media
            if filename and filename.lower() not in media.filename.lower():
                continue
            if created is not None and video.created_at < created:
                continue
            if updated is not None and (
                video.metadata_updated_at is None or video.metadata_updated_at < updated
            ):
                continue
            if not metadata_matches(video.user_metadata, wanted_meta):
                continue
            values = {
                "duration": media.duration,
                "fps": media.fps,
                "width": media.width,
                "height": media.height,
                "size": media.size,
            }
            if any(
                (bound == "gte" and values[attr] < limit) or (bound == "lte" and values[attr] > limit)
                for (attr, bound), limit in ranges.items()
            ):
                continue
            out.append(video)
        statuses = call.query.getall("status", [])
        if statuses:
            allowed = {"ready", "pending", "queued", "indexing", "failed"}
            if any(s not in allowed for s in statuses):
                raise invalid(f"status must be among {sorted(allowed)}.")
            out = [v for v in out if v.schedule.status(now) in statuses]
        return self._sorted(call, out, lambda v: v.updated_at(now))
