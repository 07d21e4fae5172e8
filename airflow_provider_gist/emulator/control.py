"""The ``/_emulator`` control API: no auth, never journaled, counted, rate limited or faulted."""

from __future__ import annotations

import json
import time
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from aiohttp import web

from .calls import Operation
from .faults import ALIASES, CHUNK_PUT_OP, group_of, parse_rules
from .state import ApiError, check_metadata

if TYPE_CHECKING:
    from .app import Emulator

API_VERSIONS = ("v1.3", "v1.2")
DEFAULT_SEED_MODELS = [{"model_name": "marengo3.0", "model_options": ["visual", "audio"]}]


async def _control_body(request: web.Request) -> Any:
    raw = await request.read()
    if not raw:
        return {}
    try:
        return json.loads(raw)
    except ValueError as exc:
        raise web.HTTPBadRequest(
            text=json.dumps({"error": f"invalid JSON: {exc}"}), content_type="application/json"
        ) from exc


def _control_error(message: str) -> web.Response:
    return web.json_response({"error": message}, status=400)


def _seed_models(body: dict[str, Any]) -> list[dict[str, Any]]:
    """``models`` (the API's shape), or ``model_name`` (one model, both options), else Marengo 3.0."""
    if "models" in body:
        models = body["models"]
        if not isinstance(models, list) or not models:
            raise ValueError("models must be a non-empty list of {model_name, model_options}")
        return models
    if "model_name" in body:
        return [{"model_name": str(body["model_name"]), "model_options": ["visual", "audio"]}]
    return [dict(m) for m in DEFAULT_SEED_MODELS]


def control_routes(emu: Emulator, operations: Sequence[Operation]) -> list[web.RouteDef]:
    async def health(_: web.Request) -> web.Response:
        return web.json_response(
            {
                "status": "ok",
                "emulator": "twelvelabs",
                "api_versions": list(API_VERSIONS),
                "uptime_seconds": round(time.time() - emu.started, 3),
                "now": emu.clock.now(),
            }
        )

    async def stats(_: web.Request) -> web.Response:
        return web.json_response(emu.stats())

    async def clear_stats(_: web.Request) -> web.Response:
        emu.reset_stats()
        return web.json_response({"ok": True})

    async def journal(request: web.Request) -> web.Response:
        try:
            since = int(request.query.get("since", "0"))
        except ValueError:
            return _control_error("since must be an integer")
        entries = [e for e in emu.journal if e["seq"] > since]
        return web.json_response({"entries": entries, "last_seq": emu.seq})

    async def clear_journal(_: web.Request) -> web.Response:
        emu.journal.clear()
        return web.json_response({"ok": True, "last_seq": emu.seq})

    async def get_faults(_: web.Request) -> web.Response:
        return web.json_response(
            {"rules": [r.to_dict() for r in emu.faults.rules], "error_rate": emu.faults.error_rate}
        )

    async def set_faults(request: web.Request) -> web.Response:
        body = await _control_body(request)
        append = not (isinstance(body, dict) and body.get("mode") == "replace")
        try:
            rules = parse_rules(body)
            if isinstance(body, dict) and "error_rate" in body:
                rate = float(body["error_rate"])
                if not 0 <= rate <= 1:
                    raise ValueError("error_rate must be within [0, 1]")
                emu.faults.error_rate = rate
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))
        emu.faults.set_rules(rules, append=append)
        return web.json_response({"rules": [r.to_dict() for r in emu.faults.rules]})

    async def clear_faults(_: web.Request) -> web.Response:
        emu.faults.set_rules([], append=False)
        emu.faults.error_rate = 0.0
        return web.json_response({"rules": []})

    async def reset(_: web.Request) -> web.Response:
        emu.reset()
        return web.json_response({"ok": True})

    async def seed(request: web.Request) -> web.Response:
        body = await _control_body(request)
        if not isinstance(body, dict):
            return _control_error("body must be an object")
        try:
            filenames = body.get("filenames")
            default_count = len(filenames) if isinstance(filenames, list) else 10
            count = int(body.get("count", default_count))
            if not 0 <= count <= 100_000:
                raise ValueError("count must be within [0, 100000]")
            if filenames is not None and not (
                isinstance(filenames, list) and all(isinstance(f, str) and f for f in filenames)
            ):
                raise ValueError("filenames must be a list of non-empty strings")
            metadata = body.get("user_metadata")
            if metadata is not None:
                check_metadata(metadata, allow_null=False)
            index, videos = emu.state.seed_index(
                str(body.get("index_name", "emulator-seed")),
                count,
                _seed_models(body),
                filenames,
                metadata,
                legacy=body.get("legacy") is True,
            )
        except ApiError as err:
            return _control_error(err.message)
        except (ValueError, TypeError) as exc:
            return _control_error(str(exc))
        return web.json_response(
            {
                "index_id": index.id,
                "index_name": index.name,
                "models": index.models,
                "count": len(videos),
                "videos": [
                    {"video_id": v.id, "asset_id": v.asset_id, "filename": v.media.filename} for v in videos
                ],
            }
        )

    async def clock(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _control_body(request)
            try:
                seconds = float(body.get("advance", 0)) if isinstance(body, dict) else float("nan")
            except (TypeError, ValueError):
                seconds = float("nan")
            if not seconds >= 0:
                return _control_error("advance must be a number of seconds >= 0")
            emu.clock.advance(seconds)
        return web.json_response({"now": emu.clock.now(), "offset": emu.clock.offset})

    async def keys(request: web.Request) -> web.Response:
        body = await _control_body(request)
        if isinstance(body, dict) and body.get("revoke") is True:
            emu.api_key = None
        elif isinstance(body, dict) and isinstance(body.get("api_key"), str) and body["api_key"]:
            emu.api_key = body["api_key"]
        else:
            return _control_error('send {"api_key": "..."} or {"revoke": true}')
        # Never echo the key back: the response only says whether one is active.
        return web.json_response({"key_active": emu.api_key is not None})

    async def rate_limits(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _control_body(request)
            try:
                if not isinstance(body, dict):
                    raise ValueError("body must be an object")
                if "retry_after" in body:
                    if not isinstance(body["retry_after"], bool):
                        raise ValueError("retry_after must be true or false")
                    emu.limiter.retry_after = body["retry_after"]
                if "groups" in body or "window" in body:
                    window = float(body.get("window", 60))
                    limits: dict[str, tuple[int, float]] = {}
                    for group, value in (body.get("groups") or {}).items():
                        if isinstance(value, dict):
                            limits[group] = (int(value["limit"]), float(value.get("window", window)))
                        else:
                            limits[group] = (int(value), window)
                    emu.limiter.configure(limits, origin=emu.clock.now())
            except (ValueError, TypeError, KeyError) as exc:
                return _control_error(str(exc))
        return web.json_response(
            {
                "groups": emu.limiter.describe(),
                "origin": emu.limiter.origin,
                "retry_after": emu.limiter.retry_after,
            }
        )

    async def listing_lag(request: web.Request) -> web.Response:
        if request.method == "POST":
            body = await _control_body(request)
            raw = body.get("seconds") if isinstance(body, dict) else None
            if isinstance(raw, bool) or not isinstance(raw, int | float) or not raw >= 0:
                return _control_error('send {"seconds": N} with N >= 0 (0: listings are current)')
            emu.listing_lag = float(raw)
        return web.json_response({"seconds": emu.listing_lag})

    async def analysis(_: web.Request) -> web.Response:
        emu.jobs.settle()
        return web.json_response(emu.jobs.describe())

    async def occupy_batches(request: web.Request) -> web.Response:
        body = await _control_body(request)
        count = body.get("count") if isinstance(body, dict) else None
        if isinstance(count, bool) or not isinstance(count, int) or count < 0:
            return _control_error('send {"count": N} with N >= 0 (0 releases them)')
        emu.jobs.settle()
        emu.jobs.occupied = count
        return web.json_response({"occupied": count, "active_batches": emu.jobs.active_batches()})

    async def expire_batches(request: web.Request) -> web.Response:
        body = await _control_body(request)
        wanted = body.get("batch_id") if isinstance(body, dict) else None
        emu.jobs.settle()
        if wanted is not None and wanted not in emu.jobs.batches:
            return web.json_response({"error": "no such batch"}, status=404)
        batches = [emu.jobs.batches[wanted]] if wanted is not None else list(emu.jobs.batches.values())
        expired = [b.id for b in batches if emu.jobs.expire_batch(b)]
        return web.json_response({"expired": expired})

    async def operations_listing(_: web.Request) -> web.Response:
        listed = [
            {
                "key": op.key,
                "group": group_of(op.key),
                "has_404": op.has_404,
                "nested_errors": op.nested_errors,
            }
            for op in operations
        ]
        listed.append({"key": CHUNK_PUT_OP, "group": None, "has_404": True})
        return web.json_response({"operations": listed, "aliases": ALIASES})

    async def uploads(_: web.Request) -> web.Response:
        store = emu.uploads
        return web.json_response(
            {
                "uploads": [
                    {**s.counters(), "status": s.status(emu.clock.now())} for s in store.sessions.values()
                ],
                "chunk_puts": store.chunk_puts,
                "chunk_reports": store.chunk_reports,
            }
        )

    async def upload(request: web.Request) -> web.Response:
        session = emu.uploads.sessions.get(request.match_info["upload_id"])
        if session is None:
            return web.json_response({"error": "no such upload session"}, status=404)
        return web.json_response({**session.counters(), "status": session.status(emu.clock.now())})

    base = "/_emulator"
    return [
        web.get(f"{base}/health", health),
        web.get(f"{base}/stats", stats),
        web.delete(f"{base}/stats", clear_stats),
        web.get(f"{base}/journal", journal),
        web.delete(f"{base}/journal", clear_journal),
        web.get(f"{base}/faults", get_faults),
        web.post(f"{base}/faults", set_faults),
        web.delete(f"{base}/faults", clear_faults),
        web.post(f"{base}/reset", reset),
        web.post(f"{base}/seed", seed),
        web.get(f"{base}/clock", clock),
        web.post(f"{base}/clock", clock),
        web.post(f"{base}/keys", keys),
        web.get(f"{base}/rate-limits", rate_limits),
        web.post(f"{base}/rate-limits", rate_limits),
        web.get(f"{base}/listing-lag", listing_lag),
        web.post(f"{base}/listing-lag", listing_lag),
        web.get(f"{base}/operations", operations_listing),
        web.get(f"{base}/uploads", uploads),
        web.get(f"{base}/uploads/{{upload_id}}", upload),
        web.get(f"{base}/analysis", analysis),
        web.post(f"{base}/batches/occupy", occupy_batches),
        web.post(f"{base}/batches/expire", expire_batches),
    ]
