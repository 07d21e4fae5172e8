"""aiohttp application: the emulated TwelveLabs v1.3 routes and the ``/_emulator`` control API.

Request pipeline for API routes (order matters and is documented in docs/emulator.md):
route match -> auth -> rate limit -> latency -> fault pick -> handler -> render (+ fault) -> journal.

The handlers live in ``routes_*`` modules (one per group of operations), the control API in
:mod:`.control`, the presigned chunk uploads in :mod:`.chunks`.
"""

from __future__ import annotations

import asyncio
import hmac
import json
import math
import re
import time
from collections import Counter, defaultdict, deque
from typing import Any

from aiohttp import BodyPartReader, web

from .calls import Call, FilePart, Operation, Query, Reply
from .chunks import chunk_handler
from .config import DEFAULT_API_KEY, DEFAULT_PORT, EmulatorConfig
from .control import API_VERSIONS, control_routes
from .faults import (
    AFTER_KINDS,
    DEFAULT_CODES,
    DOCUMENTED_GROUPS,
    FaultInjector,
    FaultRule,
    RateDecision,
    RateLimiter,
    group_of,
    html_page,
    parse_rules,
)
from .handlers import KNOWN_QUERY
from .jobs import JobQueue
from .routes_analysis_async import AsyncAnalysisRoutes
from .routes_analyze import AnalyzeRoutes
from .routes_assets import AssetRoutes
from .routes_indexes import IndexRoutes
from .routes_multipart import MultipartRoutes
from .state import ApiError, Clock, State, Timing
from .uploads import CHUNK_PATH, UploadSettings, UploadStore

__all__ = ["API_VERSIONS", "DEFAULT_API_KEY", "DEFAULT_PORT", "Emulator", "EmulatorConfig", "build_app"]

# Literal paths come before templated ones: aiohttp tries routes in this order, and
# /assets/multipart-uploads must not be taken for /assets/{asset_id}.
OPERATIONS = (
    Operation("POST", "/indexes", "create_index"),
    Operation("GET", "/indexes", "list_indexes"),
    Operation("GET", "/indexes/{index-id}", "get_index"),
    Operation("PUT", "/indexes/{index-id}", "update_index"),
    Operation("DELETE", "/indexes/{index-id}", "delete_index"),
    Operation("POST", "/assets/multipart-uploads", "create_multipart_upload"),
    Operation("GET", "/assets/multipart-uploads", "list_incomplete_uploads"),
    Operation("GET", "/assets/multipart-uploads/{upload_id}", "get_upload_status", has_404=True),
    Operation("POST", "/assets/multipart-uploads/{upload_id}", "report_chunks", has_404=True),
    Operation(
        "POST", "/assets/multipart-uploads/{upload_id}/presigned-urls", "get_presigned_urls", has_404=True
    ),
    Operation("POST", "/assets", "create_asset"),
    Operation("GET", "/assets", "list_assets"),
    Operation("GET", "/assets/{asset_id}", "get_asset"),
    Operation("DELETE", "/assets/{asset_id}", "delete_asset"),
    Operation("PATCH", "/assets/{asset_id}/user-metadata", "update_asset_metadata", has_404=True),
    Operation("PUT", "/assets/{asset_id}/user-metadata", "replace_asset_metadata", has_404=True),
    Operation("DELETE", "/assets/{asset_id}/user-metadata", "delete_asset_metadata", has_404=True),
    Operation("GET", "/assets/{asset_id}/indexed-assets", "list_asset_indexed_assets"),
    Operation("POST", "/indexes/{index-id}/indexed-assets", "create_indexed_asset", has_404=True),
    Operation("GET", "/indexes/{index-id}/indexed-assets", "list_indexed_assets"),
    Operation(
        "GET", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "get_indexed_asset", has_404=True
    ),
    Operation("PATCH", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "update_indexed_asset"),
    Operation("DELETE", "/indexes/{index-id}/indexed-assets/{indexed-asset-id}", "delete_indexed_asset"),
    Operation("POST", "/tasks", "create_task"),
    Operation("GET", "/tasks", "list_tasks"),
    Operation("GET", "/tasks/{task_id}", "get_task"),
    Operation("DELETE", "/tasks/{task_id}", "delete_task"),
    Operation("GET", "/indexes/{index-id}/videos", "list_videos"),
    Operation("GET", "/indexes/{index-id}/videos/{video-id}", "get_video", has_404=True),
    Operation("PATCH", "/indexes/{index-id}/videos/{video-id}", "update_video"),
    Operation("DELETE", "/indexes/{index-id}/videos/{video-id}", "delete_video"),
    Operation("POST", "/analyze", "analyze", has_404=True),
    Operation("POST", "/analyze/tasks", "create_analysis_task", nested_errors=True),
    # The one operation of these groups whose declared error is the classic flat body.
    Operation("GET", "/analyze/tasks", "list_analysis_tasks"),
    Operation("GET", "/analyze/tasks/{task_id}", "get_analysis_task", has_404=True, nested_errors=True),
    Operation("DELETE", "/analyze/tasks/{task_id}", "delete_analysis_task", has_404=True, nested_errors=True),
    Operation("POST", "/analyze/batches", "create_batch", has_404=True, nested_errors=True),
    Operation("GET", "/analyze/batches", "list_batches", nested_errors=True),
    Operation("GET", "/analyze/batches/{batch_id}", "get_batch", has_404=True, nested_errors=True),
    Operation("DELETE", "/analyze/batches/{batch_id}", "delete_batch", has_404=True, nested_errors=True),
    Operation(
        "GET", "/analyze/batches/{batch_id}/results", "get_batch_results", has_404=True, nested_errors=True
    ),
    Operation("POST", "/analyze/batches/{batch_id}/cancel", "cancel_batch", has_404=True, nested_errors=True),
)
MULTIPART_OPS = {"POST /assets", "POST /tasks"}
# Per multipart operation and file part: (largest size, error code when bigger).
FILE_LIMITS = {("POST /assets", "file"): "video_filesize_too_large"}


def _aiohttp_path(template: str) -> str:
    return re.sub(r"\{([^}]+)\}", lambda m: "{" + m.group(1).replace("-", "_") + "}", template)


class Emulator(IndexRoutes, AssetRoutes, MultipartRoutes, AnalyzeRoutes, AsyncAnalysisRoutes):
    """Everything mutable about one running emulator; shared by the routes and the control API."""

    def __init__(self, config: EmulatorConfig) -> None:
        self.config = config
        self.clock = config.clock or Clock()
        self.state = State(
            timing=Timing(config.asset_ready_seconds, config.indexing_seconds),
            clock=self.clock,
            seed=config.seed,
        )
        self.uploads = UploadStore(
            self.state,
            UploadSettings(
                chunk_size=config.multipart_chunk_size,
                initial_urls=config.multipart_initial_urls,
                url_seconds=config.presigned_url_seconds,
                session_seconds=config.upload_session_seconds,
            ),
            config.seed,
        )
        self.jobs = JobQueue(self.state, config.job_settings())
        self.faults = FaultInjector(config.seed, config.error_rate)
        self.faults.set_rules(parse_rules(config.faults), append=False)
        self.limiter = RateLimiter(self.clock.now(), config.rate_limits, retry_after=config.retry_after)
        self.api_key: str | None = config.api_key
        self.listing_lag = config.listing_lag
        self.journal: deque[dict[str, Any]] = deque(maxlen=config.journal_size)
        self.seq = 0
        self.stats_calls: Counter[str] = Counter()
        self.stats_statuses: defaultdict[str, Counter[str]] = defaultdict(Counter)
        self.stats_faults: Counter[str] = Counter()
        self.rate_limited = 0
        self.started = time.time()

    def reset(self) -> None:
        """Back to the start configuration (faults, key, limits); the journal seq keeps counting."""
        self.state.reset()
        self.uploads.reset()
        self.jobs.reset()
        self.faults = FaultInjector(self.config.seed, self.config.error_rate)
        self.faults.set_rules(parse_rules(self.config.faults), append=False)
        self.limiter = RateLimiter(
            self.clock.now(), self.config.rate_limits, retry_after=self.config.retry_after
        )
        self.api_key = self.config.api_key
        self.listing_lag = self.config.listing_lag
        self.journal.clear()
        self.reset_stats()

    def reset_stats(self) -> None:
        self.stats_calls.clear()
        self.stats_statuses.clear()
        self.stats_faults.clear()
        self.rate_limited = 0
        self.jobs.counters.clear()

    def stats(self) -> dict[str, Any]:
        total_429 = sum(s.get("429", 0) for s in self.stats_statuses.values())
        return {
            "calls": dict(self.stats_calls),
            "statuses": {k: dict(v) for k, v in self.stats_statuses.items()},
            "total_requests": sum(self.stats_calls.values()),
            "total_429": total_429,
            "rate_limited": self.rate_limited,
            "faults": dict(self.stats_faults),
            # Resources created by the async analysis creates (a retried create shows up here).
            "created": self.jobs.created_counts(),
        }


# -------------------------------------------------------------------------------------------
# HTTP plumbing
# -------------------------------------------------------------------------------------------
EMULATOR_KEY = web.AppKey("emulator", Emulator)
ROUTES_KEY = web.AppKey("routes", dict)


def _json_bytes(body: Any) -> bytes:
    return json.dumps(body, ensure_ascii=False).encode()


def _error_body(code: str, message: str, nested: bool = False) -> dict[str, Any]:
    """Classic ``{code, message}``, or ``{"error": {code, message}}`` for the newer operations."""
    body = {"code": code, "message": message}
    return {"error": body} if nested else body


def _origin(request: web.Request) -> str:
    """The emulator's own root URL, from the listening socket (never from the Host header)."""
    sockname = request.transport.get_extra_info("sockname") if request.transport else None
    port = sockname[1] if isinstance(sockname, tuple) and len(sockname) >= 2 else None
    return f"http://127.0.0.1:{port}" if port else "http://127.0.0.1"


async def _read_call(request: web.Request, op: Operation, config: EmulatorConfig) -> Call:
    max_bytes = config.max_upload_bytes
    params = {
        name.strip("{}"): request.match_info[name.strip("{}").replace("-", "_")]
        for name in re.findall(r"\{[^}]+\}", op.template)
    }
    call = Call(
        op=op,
        version=request.match_info.get("version", "v1.3"),
        params=params,
        query=Query(list(request.query.items())),
        origin=_origin(request),
        idempotency_key=request.headers.get("Idempotency-Key") or None,
    )
    if op.key in MULTIPART_OPS:
        if not request.content_type.startswith("multipart/"):
            call.json_error = f"{op.key} expects multipart/form-data, got {request.content_type!r}."
            await request.read()
            return call
        reader = await request.multipart()
        while True:
            part = await reader.next()
            if part is None:
                break
            if not isinstance(part, BodyPartReader) or part.name is None:
                continue
            if part.filename is None:
                call.fields.setdefault(part.name, []).append(await part.text())
                continue
            limit_code = FILE_LIMITS.get((op.key, part.name))
            limit = min(max_bytes, config.max_direct_upload_bytes) if limit_code else max_bytes
            size, head = 0, b""
            while chunk := await part.read_chunk(1 << 16):
                if len(head) < 4096:
                    head += chunk[: 4096 - len(head)]
                size += len(chunk)
                if size > max_bytes:
                    raise ApiError(400, "video_filesize_too_large", f"The file exceeds {max_bytes} bytes.")
            if size > limit:
                # Read to the end first (counted, never kept), so the client gets this answer.
                raise ApiError(
                    400,
                    limit_code or "video_filesize_too_large",
                    f"The file has {size} bytes; direct uploads take up to {limit} bytes. "
                    "Use a multipart upload (/assets/multipart-uploads) for larger files.",
                )
            call.files.setdefault(part.name, []).append(FilePart(part.filename, size, head))
        return call
    raw = await request.read()
    if raw:
        if request.content_type != "application/json":
            call.json_error = f"Expected an application/json body, got {request.content_type!r}."
            return call
        try:
            call.json = json.loads(raw)
        except ValueError as exc:
            call.json_error = f"The request body is not valid JSON: {exc}."
            call.json = {"_unparsed": raw[:500].decode("utf-8", "replace")}
    return call


class Pipeline:
    """Runs one API request through auth, limits, faults and the handler, then renders it."""

    def __init__(self, emulator: Emulator) -> None:
        self.emu = emulator

    async def __call__(self, request: web.Request) -> web.StreamResponse:
        emu = self.emu
        routes: dict[Any, Operation] = request.app[ROUTES_KEY]
        op = routes.get(request.match_info.route)
        emu.seq += 1
        entry: dict[str, Any] = {
            "seq": emu.seq,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "operation": op.key if op else None,
            "query": {k: request.query.getall(k) for k in request.query},
        }
        emu.journal.append(entry)
        key = op.key if op else "unmatched"
        emu.stats_calls[key] += 1
        version = request.match_info.get("version", "v1.3")
        headers = {"X-Api-Version": version.lstrip("v")}
        started = time.perf_counter()
        try:
            response = await self._run(request, op, entry, headers)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        emu.stats_statuses[key][str(entry.get("status", 0))] += 1
        return response

    async def _run(
        self, request: web.Request, op: Operation | None, entry: dict[str, Any], headers: dict[str, str]
    ) -> web.StreamResponse:
        emu = self.emu
        if op is None:
            await request.read()
            return await self._send(
                request,
                entry,
                Reply(
                    404, _error_body("resource_not_exist", f"No route for {request.method} {request.path}.")
                ),
                headers,
            )
        nested = op.nested_errors
        try:
            call = await _read_call(request, op, emu.config)
        except ApiError as err:
            return await self._send(
                request, entry, Reply(err.status, _error_body(err.code, err.message, nested)), headers
            )
        entry["body"] = call.journal_body()
        supplied = request.headers.get("x-api-key", "")
        if emu.api_key is None or not hmac.compare_digest(supplied.encode(), emu.api_key.encode()):
            return await self._send(
                request,
                entry,
                Reply(401, _error_body("api_key_invalid", "The API key is invalid or expired.", nested)),
                headers,
            )
        group = group_of(op.key)
        decision = emu.limiter.check(group, emu.clock.now())
        if decision is not None:
            headers.update(
                decision.headers(
                    emu.clock.now(),
                    documented=group in DOCUMENTED_GROUPS,
                    retry_after=emu.limiter.retry_after,
                )
            )
            if not decision.allowed:
                emu.rate_limited += 1
                return await self._send(
                    request, entry, self._too_many(op, decision, emu.clock.now()), headers
                )
        delay = emu.config.latency + (emu.config.analyze_latency if op.key == "POST /analyze" else 0.0)
        if delay:
            await asyncio.sleep(delay)
        rule = emu.faults.pick(op.key)
        if rule is not None:
            emu.stats_faults[rule.kind] += 1
            entry["fault"] = rule.kind
            early = await self._early_fault(request, rule, entry, headers, nested)
            if early is not None:
                return early
            call.fault = rule
        reply = self._handle(op, call)
        if rule is not None and rule.kind in AFTER_KINDS:
            # The handler ran (a create happened and is billed), yet the client hears of a failure.
            entry["handled_status"] = reply.status
            return await self._fault_response(request, entry, rule, headers, nested)
        return await self._send(request, entry, reply, headers, rule)

    def _handle(self, op: Operation, call: Call) -> Reply:
        try:
            # Async analysis moves with the clock: replay what happened since the last request.
            self.emu.jobs.settle()
            if op.key in KNOWN_QUERY or op.method == "GET":
                self.emu.check_query(call)
            reply: Reply = getattr(self.emu, op.handler)(call)
            return reply
        except ApiError as err:
            status = err.status
            if err.code == "resource_not_exist":
                status = 404 if op.has_404 else 400
            return Reply(status, _error_body(err.code, err.message, op.nested_errors))

    @staticmethod
    def _too_many(op: Operation, decision: RateDecision, now: float) -> Reply:
        if op.key == "POST /analyze":
            # The spec declares an empty body for /analyze 429s.
            return Reply(429)
        # The error-codes page's template: "You have exceeded the rate limit ({rate_limit}).
        # Please try again later after {retry_after}."
        return Reply(
            429,
            _error_body(
                "too_many_requests",
                f"You have exceeded the rate limit ({decision.limit} requests per window). "
                f"Please try again later after {decision.retry_after(now)} seconds.",
                op.nested_errors,
            ),
        )

    async def _early_fault(
        self,
        request: web.Request,
        rule: FaultRule,
        entry: dict[str, Any],
        headers: dict[str, str],
        nested: bool,
    ) -> web.StreamResponse | None:
        """Faults that replace the response; ``None`` means run the handler (maybe after a delay)."""
        if rule.kind == "key_revoked":
            self.emu.api_key = None
            return await self._send(
                request,
                entry,
                Reply(401, _error_body("api_key_invalid", "The API key has been revoked.", nested)),
                headers,
            )
        if rule.kind == "slow":
            await asyncio.sleep(rule.delay)
            return None
        if rule.kind == "reset":
            entry["status"] = 0
            if request.transport is not None:
                request.transport.abort()
            # Never sent: the transport is gone; aiohttp just needs a response object.
            return web.Response(status=500)
        if rule.kind in ("html", "status"):
            return await self._fault_response(request, entry, rule, headers, nested)
        return None

    async def _fault_response(
        self,
        request: web.Request,
        entry: dict[str, Any],
        rule: FaultRule,
        headers: dict[str, str],
        nested: bool,
    ) -> web.StreamResponse:
        """The error answer of a ``status``/``html`` rule (or its ``_after`` twin)."""
        if rule.kind in ("html", "html_after"):
            entry["status"] = rule.status
            return web.Response(
                status=rule.status, text=html_page(rule.status), content_type="text/html", headers=headers
            )
        extra = dict(rule.headers)
        if rule.retry_after is not None:
            extra["Retry-After"] = str(max(0, math.ceil(rule.retry_after)))
        if rule.empty_body:
            reply = Reply(rule.status, headers=extra)
        elif rule.body is not None:
            reply = Reply(rule.status, rule.body, headers=extra)
        else:
            code = rule.code or DEFAULT_CODES.get(rule.status, "error")
            reply = Reply(
                rule.status,
                _error_body(code, rule.message or f"Injected {rule.status} error.", nested),
                headers=extra,
            )
        return await self._send(request, entry, reply, headers)

    async def _send(
        self,
        request: web.Request,
        entry: dict[str, Any],
        reply: Reply,
        headers: dict[str, str],
        rule: FaultRule | None = None,
    ) -> web.StreamResponse:
        entry["status"] = reply.status
        all_headers = {**headers, **reply.headers}
        if reply.events is not None:
            entry["response_events"] = reply.events
            lines = [_json_bytes(e) + b"\n" for e in reply.events]
            return await self._stream(request, reply.status, all_headers, lines, reply.events_type, rule)
        if reply.body is not None:
            entry["response"] = reply.body
            payload = _json_bytes(reply.body)
        else:
            payload = b""
        if rule is not None and rule.kind == "malformed_json":
            # The handler ran (side effects happened) but the client only sees half the JSON.
            payload = payload[: max(len(payload) // 2, 2)] if payload else b'{"'
            entry["response"] = None
            entry["response_truncated"] = payload.decode("utf-8", "replace")
        content_type = "application/json" if payload else None
        if rule is not None and rule.kind == "slow_body":
            return await self._stream(request, reply.status, all_headers, [payload], content_type, rule)
        response = web.Response(status=reply.status, body=payload or None, headers=all_headers)
        if content_type:
            response.content_type = content_type
        return response

    @staticmethod
    async def _stream(
        request: web.Request,
        status: int,
        headers: dict[str, str],
        chunks: list[bytes],
        content_type: str | None,
        rule: FaultRule | None,
    ) -> web.StreamResponse:
        response = web.StreamResponse(status=status, headers=headers)
        if content_type:
            response.content_type = content_type
        stall = rule is not None and rule.kind == "slow_body"
        if stall:
            # Declaring the length makes clients wait for the stalled remainder instead of ending early.
            response.content_length = sum(len(c) for c in chunks)
        await response.prepare(request)
        data = b"".join(chunks) if stall else b""
        if stall and rule is not None:
            half = max(len(data) // 2, 1) if data else 0
            await response.write(data[:half])
            await asyncio.sleep(rule.delay)
            await response.write(data[half:])
        else:
            for chunk in chunks:
                await response.write(chunk)
        await response.write_eof()
        return response


def build_app(config: EmulatorConfig | None = None) -> web.Application:
    config = config or EmulatorConfig()
    emulator = Emulator(config)
    # Multipart uploads and chunk PUTs are streamed and size-checked; this bounds JSON bodies.
    app = web.Application(client_max_size=config.max_upload_bytes)
    app[EMULATOR_KEY] = emulator
    pipeline = Pipeline(emulator)
    app.add_routes(control_routes(emulator, OPERATIONS))
    app.router.add_put(CHUNK_PATH + "/{upload_id}/{chunk_index}", chunk_handler(emulator))
    routes: dict[Any, Operation] = {}
    prefix = r"/{version:v1\.[23]}"
    for op in OPERATIONS:
        route = app.router.add_route(op.method, prefix + _aiohttp_path(op.template), pipeline)
        routes[route] = op
    app.router.add_route("*", prefix + "/{tail:.*}", pipeline)
    app[ROUTES_KEY] = routes
    return app
