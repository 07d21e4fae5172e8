"""Rate limiting and fault injection.

Both are deliberately deterministic: the limiter uses fixed windows aligned to the emulator's
start, and probabilistic faults draw from one RNG seeded by ``--seed``, so a failing test or a
benchmark can be replayed exactly.
"""

from __future__ import annotations

import math
import random
from dataclasses import dataclass, field
from typing import Any

GROUPS = ("analyze", "analyze_async", "upload", "index", "read")
# The groups the rate-limit docs list as rate limited: only their responses carry X-Ratelimit-*.
# ("read" is the emulator's name for every other endpoint; limiting it is an emulator extra.
# "analyze_async" is its name for POST /analyze/tasks and POST /analyze/batches, which the docs call
# rate limited without listing a group or any header for them.)
DOCUMENTED_GROUPS = ("analyze", "upload", "index")
# Creates of asynchronous analysis: per-task fault kinds apply to each task they create.
ASYNC_CREATES = ("POST /analyze/tasks", "POST /analyze/batches")
# Presigned chunk uploads are not API calls, but faults may target them with this key.
CHUNK_PUT_OP = "PUT /_uploads/{upload_id}/{chunk_index}"
KINDS = (
    "status",
    "html",
    "status_after",
    "html_after",
    "reset",
    "slow",
    "slow_body",
    "malformed_json",
    "model_output",
    "key_revoked",
    "task_failure",
)
# Kinds that let the handler run (the resource is created, billed) and then answer an error anyway:
# the API failing after its commit, or a gateway timing out while the upstream completes.
AFTER_KINDS = ("status_after", "html_after")
# Kinds consulted once per created analysis task (a batch creates one per item), not per request.
PER_TASK_KINDS = ("model_output", "task_failure")
MODEL_OUTPUT_VARIANTS = ("not_json", "missing_keys", "wrong_types", "length")

# Short names for operations, so fault rules and stats stay readable.
ALIASES: dict[str, str] = {
    "analyze": "POST /analyze",
    "create_index": "POST /indexes",
    "list_indexes": "GET /indexes",
    "get_index": "GET /indexes/{index-id}",
    "update_index": "PUT /indexes/{index-id}",
    "delete_index": "DELETE /indexes/{index-id}",
    "create_asset": "POST /assets",
    "list_assets": "GET /assets",
    "get_asset": "GET /assets/{asset_id}",
    "delete_asset": "DELETE /assets/{asset_id}",
    "update_asset_metadata": "PATCH /assets/{asset_id}/user-metadata",
    "replace_asset_metadata": "PUT /assets/{asset_id}/user-metadata",
    "delete_asset_metadata": "DELETE /assets/{asset_id}/user-metadata",
    "create_multipart_upload": "POST /assets/multipart-uploads",
    "list_incomplete_uploads": "GET /assets/multipart-uploads",
    "get_upload_status": "GET /assets/multipart-uploads/{upload_id}",
    "report_chunks": "POST /assets/multipart-uploads/{upload_id}",
    "get_presigned_urls": "POST /assets/multipart-uploads/{upload_id}/presigned-urls",
    "upload_chunk": CHUNK_PUT_OP,
    "create_indexed_asset": "POST /indexes/{index-id}/indexed-assets",
    "list_indexed_assets": "GET /indexes/{index-id}/indexed-assets",
    "get_indexed_asset": "GET /indexes/{index-id}/indexed-assets/{indexed-asset-id}",
    "update_indexed_asset": "PATCH /indexes/{index-id}/indexed-assets/{indexed-asset-id}",
    "delete_indexed_asset": "DELETE /indexes/{index-id}/indexed-assets/{indexed-asset-id}",
    "list_asset_indexed_assets": "GET /assets/{asset_id}/indexed-assets",
    "create_task": "POST /tasks",
    "list_tasks": "GET /tasks",
    "get_task": "GET /tasks/{task_id}",
    "delete_task": "DELETE /tasks/{task_id}",
    "list_videos": "GET /indexes/{index-id}/videos",
    "get_video": "GET /indexes/{index-id}/videos/{video-id}",
    "update_video": "PATCH /indexes/{index-id}/videos/{video-id}",
    "delete_video": "DELETE /indexes/{index-id}/videos/{video-id}",
    "create_analysis_task": "POST /analyze/tasks",
    "list_analysis_tasks": "GET /analyze/tasks",
    "get_analysis_task": "GET /analyze/tasks/{task_id}",
    "delete_analysis_task": "DELETE /analyze/tasks/{task_id}",
    "create_batch": "POST /analyze/batches",
    "list_batches": "GET /analyze/batches",
    "get_batch": "GET /analyze/batches/{batch_id}",
    "delete_batch": "DELETE /analyze/batches/{batch_id}",
    "get_batch_results": "GET /analyze/batches/{batch_id}/results",
    "cancel_batch": "POST /analyze/batches/{batch_id}/cancel",
}


def group_of(op_key: str) -> str:
    if op_key == "POST /analyze":
        return "analyze"
    if op_key in ASYNC_CREATES:
        return "analyze_async"
    if op_key == "POST /assets":
        return "upload"
    if op_key in ("POST /tasks", "POST /indexes/{index-id}/indexed-assets"):
        return "index"
    return "read"


def canonical_op(name: str) -> str:
    if name == "*":
        return name
    return ALIASES.get(name, name)


@dataclass
class RateDecision:
    allowed: bool
    limit: int
    remaining: int
    used: int
    reset_at: float  # epoch seconds when the current window ends

    def retry_after(self, now: float) -> int:
        """Whole seconds until the window ends, at least 1."""
        return max(1, math.ceil(self.reset_at - now))

    def headers(self, now: float, *, documented: bool = True, retry_after: bool = False) -> dict[str, str]:
        """``X-Ratelimit-*`` (v1.2 docs: on each response of a rate-limited endpoint; the reset in
        whole UTC epoch seconds) only for ``documented`` groups; ``Retry-After`` on a 429 only when
        switched on: the docs never promise it."""
        headers: dict[str, str] = {}
        if documented:
            headers = {
                "X-Ratelimit-Limit": str(self.limit),
                "X-Ratelimit-Remaining": str(self.remaining),
                "X-Ratelimit-Used": str(self.used),
                "X-Ratelimit-Reset": str(math.ceil(self.reset_at)),
            }
        if not self.allowed and retry_after:
            headers["Retry-After"] = str(self.retry_after(now))
        return headers


@dataclass
class _Bucket:
    limit: int
    window: float
    window_index: int = -1
    used: int = 0


class RateLimiter:
    """Fixed windows of ``window`` seconds counted from ``origin``; one counter per endpoint group.

    Rejected requests do not consume budget (like common fixed-window limiters), so a client
    that retries too early is not punished further; the Used header counts accepted requests.
    """

    def __init__(
        self,
        origin: float,
        limits: dict[str, tuple[int, float]] | None = None,
        *,
        retry_after: bool = False,
    ) -> None:
        self.origin = math.floor(origin)
        self.retry_after = retry_after
        self._buckets: dict[str, _Bucket] = {}
        self.configure(limits or {}, origin)

    def configure(self, limits: dict[str, tuple[int, float]], origin: float | None = None) -> None:
        for group, (limit, window) in limits.items():
            if group not in GROUPS:
                raise ValueError(f"unknown rate-limit group {group!r}; expected one of {GROUPS}")
            if limit < 0 or window <= 0:
                raise ValueError("rate limits need limit >= 0 and window > 0")
        if origin is not None:
            # Whole seconds, so window ends (X-Ratelimit-Reset) are exact integer epoch seconds.
            self.origin = math.floor(origin)
        self._buckets = {g: _Bucket(limit, window) for g, (limit, window) in limits.items()}

    def describe(self) -> dict[str, dict[str, float]]:
        return {g: {"limit": b.limit, "window": b.window} for g, b in self._buckets.items()}

    def check(self, group: str, now: float) -> RateDecision | None:
        bucket = self._buckets.get(group)
        if bucket is None:
            return None
        index = math.floor((now - self.origin) / bucket.window)
        if index != bucket.window_index:
            bucket.window_index, bucket.used = index, 0
        reset_at = self.origin + (index + 1) * bucket.window
        allowed = bucket.used < bucket.limit
        if allowed:
            bucket.used += 1
        return RateDecision(allowed, bucket.limit, max(bucket.limit - bucket.used, 0), bucket.used, reset_at)


@dataclass
class FaultRule:
    """One rule: which operation, what goes wrong, how often.

    ``count`` applies the fault to the next N matching requests; ``rate`` applies it with that
    probability (seeded). With neither, the rule applies to every matching request.
    """

    op: str
    kind: str
    count: int | None = None
    rate: float | None = None
    status: int = 500
    retry_after: float | None = None
    body: Any = None
    empty_body: bool = False
    code: str | None = None
    message: str | None = None
    delay: float = 1.0
    variant: str = "length"
    headers: dict[str, str] = field(default_factory=dict)
    applied: int = 0

    @classmethod
    def from_dict(cls, raw: Any) -> FaultRule:
        if not isinstance(raw, dict):
            raise ValueError("a fault rule must be a JSON object")
        unknown = set(raw) - {f for f in cls.__dataclass_fields__ if f != "applied"}
        if unknown:
            raise ValueError(f"unknown fault rule field(s): {sorted(unknown)}")
        if "op" not in raw or "kind" not in raw:
            raise ValueError("a fault rule needs 'op' and 'kind'")
        rule = cls(**raw)
        rule.op = canonical_op(str(rule.op))
        if rule.kind not in KINDS:
            raise ValueError(f"unknown fault kind {rule.kind!r}; expected one of {KINDS}")
        if rule.kind == "model_output" and rule.variant not in MODEL_OUTPUT_VARIANTS:
            raise ValueError(
                f"unknown model_output variant {rule.variant!r}; expected one of {MODEL_OUTPUT_VARIANTS}"
            )
        if rule.count is not None and rule.count < 0:
            raise ValueError("count must be >= 0")
        if rule.rate is not None and not 0 <= rule.rate <= 1:
            raise ValueError("rate must be within [0, 1]")
        if rule.kind == "html" and "status" not in raw:
            rule.status = 502
        if rule.kind == "html_after" and "status" not in raw:
            rule.status = 504  # a gateway gave up waiting while the API went on
        if not 100 <= rule.status <= 599:
            raise ValueError("status must be an HTTP status code")
        if rule.delay < 0:
            raise ValueError("delay must be >= 0")
        return rule

    def to_dict(self) -> dict[str, Any]:
        out = {k: getattr(self, k) for k in self.__dataclass_fields__}
        return {k: v for k, v in out.items() if v is not None and v != {} and v is not False}


class FaultInjector:
    def __init__(self, seed: int = 0, error_rate: float = 0.0) -> None:
        self._rng = random.Random(seed)
        self.rules: list[FaultRule] = []
        self.error_rate = error_rate

    def set_rules(self, rules: list[FaultRule], *, append: bool) -> None:
        self.rules = [*self.rules, *rules] if append else list(rules)

    def pick(self, op_key: str) -> FaultRule | None:
        """The first rule that fires for this request; ``--error-rate`` is consulted last."""
        rule = self._first(op_key, per_task=False)
        if rule is not None:
            return rule
        if self.error_rate and self._rng.random() < self.error_rate:
            status = self._rng.choice((500, 502, 503))
            return FaultRule(op=op_key, kind="html" if status == 502 else "status", status=status, applied=1)
        return None

    def pick_task(self, op_key: str) -> FaultRule | None:
        """The first per-task rule (``task_failure``, ``model_output``) that fires for one analysis
        task created by ``op_key`` (a batch consults this once per item)."""
        return self._first(op_key, per_task=True)

    def _first(self, op_key: str, *, per_task: bool) -> FaultRule | None:
        for rule in self.rules:
            if rule.op not in ("*", op_key) or not _applies(rule.kind, op_key, per_task):
                continue
            if rule.count is not None:
                if rule.count <= 0:
                    continue
                if rule.rate is not None and self._rng.random() >= rule.rate:
                    continue
                rule.count -= 1
            elif rule.rate is not None and self._rng.random() >= rule.rate:
                continue
            rule.applied += 1
            return rule
        return None


def _applies(kind: str, op_key: str, per_task: bool) -> bool:
    """``model_output`` spoils the answer of ``/analyze`` (per request) or of each task an async
    create makes; ``task_failure`` makes such a task fail; every other kind is per request."""
    if kind == "task_failure":
        return per_task and op_key in ASYNC_CREATES
    if kind == "model_output":
        if op_key == "POST /analyze":
            return not per_task
        return per_task and op_key in ASYNC_CREATES
    return not per_task


HTML_TITLES = {
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Unavailable",
    504: "Gateway Timeout",
}
DEFAULT_CODES = {
    400: "parameter_invalid",
    401: "api_key_invalid",
    403: "api_not_allowed",
    404: "resource_not_exist",
    408: "request_canceled_or_timed_out",
    409: "conflict",
    429: "too_many_requests",
    500: "internal_server_error",
    502: "bad_gateway",
    503: "service_unavailable",
    504: "gateway_timeout",
}


def html_page(status: int) -> str:
    """The error page a proxy in front of the API (nginx) answers with."""
    title = HTML_TITLES.get(status, "Error")
    return (
        f"<html><head><title>{status} {title}</title></head><body><center><h1>{status} "
        f"{title}</h1></center><hr><center>emulated-proxy</center></body></html>\n"
    )


def parse_rules(raw: Any) -> list[FaultRule]:
    """Accepts one rule, a list of rules, or ``{"rules": [...]}``."""
    if isinstance(raw, dict) and "rules" in raw:
        raw = raw["rules"]
    if isinstance(raw, dict):
        raw = [raw]
    if not isinstance(raw, list):
        raise ValueError("faults must be a rule object, a list of rules or {'rules': [...]}")
    return [FaultRule.from_dict(r) for r in raw]
