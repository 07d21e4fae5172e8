"""``PUT /_uploads/{upload_id}/{chunk_index}``: the presigned chunk URLs of multipart uploads.

This stands in for the object store (S3) behind the real API, so it behaves like one: no API
key, a raw body, ``ETag`` (the MD5 of the chunk, quoted) on success, and XML error bodies. The
body is streamed, counted and hashed, never kept. Every PUT is journaled and counted (stats key
``PUT /_uploads/{upload_id}/{chunk_index}``; per chunk in ``GET /_emulator/uploads``), and fault
rules may target it (alias ``upload_chunk``; kinds ``status``, ``html``, ``reset``, ``slow``).
"""

from __future__ import annotations

import asyncio
import hashlib
import math
import time
from typing import TYPE_CHECKING, Any
from xml.sax.saxutils import escape

from aiohttp import web

from .faults import CHUNK_PUT_OP, FaultRule
from .uploads import ChunkRejected

if TYPE_CHECKING:
    from .app import Emulator

_S3_CODES = {
    500: "InternalError",
    503: "SlowDown",
    403: "AccessDenied",
    404: "NoSuchUpload",
    400: "BadRequest",
}


def _s3_error(status: int, code: str, message: str) -> web.Response:
    body = (
        '<?xml version="1.0" encoding="UTF-8"?>\n'
        f"<Error><Code>{escape(code)}</Code><Message>{escape(message)}</Message>"
        "<RequestId>emulated</RequestId></Error>"
    )
    return web.Response(status=status, text=body, content_type="application/xml")


async def _drain(request: web.Request, limit: int) -> int:
    """Read and drop the body (so the client gets our answer, not a broken pipe), up to ``limit``."""
    size = 0
    while size <= limit:
        block = await request.content.readany()
        if not block:
            break
        size += len(block)
    return size


def chunk_handler(emu: Emulator) -> Any:
    async def put_chunk(request: web.Request) -> web.StreamResponse:
        emu.seq += 1
        upload_id, index_text = request.match_info["upload_id"], request.match_info["chunk_index"]
        entry: dict[str, Any] = {
            "seq": emu.seq,
            "time": time.time(),
            "method": request.method,
            "path": request.path,
            "operation": CHUNK_PUT_OP,
            # The signature is a bearer credential: only the expiry goes into the journal.
            "query": {k: request.query.getall(k) for k in request.query if k == "X-Amz-Expires"},
            "upload_id": upload_id,
            "chunk_index": int(index_text) if index_text.isdigit() else index_text,
        }
        emu.journal.append(entry)
        emu.stats_calls[CHUNK_PUT_OP] += 1
        started = time.perf_counter()
        try:
            response = await _put(request, upload_id, index_text, entry)
        finally:
            entry["duration_ms"] = round((time.perf_counter() - started) * 1000, 2)
        emu.stats_statuses[CHUNK_PUT_OP][str(entry.get("status", 0))] += 1
        return response

    async def _put(
        request: web.Request, upload_id: str, index_text: str, entry: dict[str, Any]
    ) -> web.StreamResponse:
        cap = emu.config.max_upload_bytes
        rule = emu.faults.pick(CHUNK_PUT_OP)
        if rule is not None:
            emu.stats_faults[rule.kind] += 1
            entry["fault"] = rule.kind
            early = await _fault(request, rule, entry, cap)
            if early is not None:
                return early
        try:
            session, index, token = emu.uploads.authorize_put(upload_id, index_text, dict(request.query))
        except ChunkRejected as exc:
            await _drain(request, cap)
            entry["status"] = exc.status
            return _s3_error(exc.status, exc.code, exc.message)
        expected = session.expected_size(index) if 1 <= index <= session.total_chunks else -1
        if expected < 0:
            await _drain(request, cap)
            entry["status"] = 400
            return _s3_error(
                400, "InvalidArgument", f"Part number must be between 1 and {session.total_chunks}."
            )
        digest = hashlib.md5(usedforsecurity=False)
        size = 0
        while True:
            block = await request.content.readany()
            if not block:
                break
            size += len(block)
            if size > expected:
                await _drain(request, cap)
                entry["status"] = 400
                entry["body"] = {"size": size}
                return _s3_error(
                    400, "EntityTooLarge", f"Chunk {index} may have at most {expected} bytes (chunk_size)."
                )
            digest.update(block)
        etag = digest.hexdigest()
        emu.uploads.record_put(session, index, token, size, etag)
        entry["status"] = 200
        entry["body"] = {"size": size, "etag": etag}
        return web.Response(status=200, headers={"ETag": f'"{etag}"'})

    async def _fault(
        request: web.Request, rule: FaultRule, entry: dict[str, Any], cap: int
    ) -> web.StreamResponse | None:
        if rule.kind == "slow":
            await asyncio.sleep(rule.delay)
            return None
        if rule.kind == "reset":
            entry["status"] = 0
            if request.transport is not None:
                request.transport.abort()
            return web.Response(status=500)
        if rule.kind in ("status", "html"):
            await _drain(request, cap)
            entry["status"] = rule.status
            if rule.kind == "html":
                page = f"<html><body><h1>{rule.status}</h1></body></html>\n"
                return web.Response(status=rule.status, text=page, content_type="text/html")
            code = rule.code or _S3_CODES.get(rule.status, "InternalError")
            response = _s3_error(rule.status, code, rule.message or f"Injected {rule.status} error.")
            response.headers.update(rule.headers)
            if rule.retry_after is not None:
                response.headers["Retry-After"] = str(max(0, math.ceil(rule.retry_after)))
            return response
        return None  # other kinds do not apply to chunk uploads

    return put_chunk
