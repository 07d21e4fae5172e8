"""The fault matrix's table: one row (:class:`Scenario`) per fault the emulator can inject.

tests/reliability/test_fault_matrix.py runs every row and renders the table into
docs/reliability.md; this module only says what each row injects and expects.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from tests.reliability.harness import (
    GET_ASSET,
    GET_INDEXED,
    LIST_ASSETS,
    LIST_INDEXED,
    POST_ANALYSIS_TASKS,
    POST_ANALYZE,
    POST_ASSETS,
    POST_INDEXED,
    VIDEO_URL,
)

CORRUPT_URL = "https://videos.example.com/corrupt_harbour_clip.mp4"


@dataclass(frozen=True)
class Scenario:
    """One row of the matrix.

    ``rules`` are emulator fault rules; ``action`` names a mid-run act (``ACTIONS`` of
    test_fault_matrix.py) and ``before`` the task it precedes. ``assets``/``indexed`` count
    resources that exist afterwards (the API's own listings) and ``creates`` the create calls the
    server handled. ``calls`` are exact request counts per operation (faulted ones included); every
    row has some. A status poll (``GET`` of an asset or indexed asset) is sent as often as timing
    makes it, so for a fault on a poll ``answers`` counts exactly the answers the fault produced,
    per status (``"0"``: the connection was reset). ``tries`` are exact task tries.
    ``gap`` checks from the journal that the client really waited (our own backoff is shrunk 20x
    in this suite, so only an honoured ``Retry-After`` can make a gap of a second).
    """

    id: str
    fault: str
    expected: str
    rules: tuple[Mapping[str, Any], ...] = ()
    action: str | None = None
    before: str | None = None
    outcome: str = "success"
    failed_task: str | None = None
    error: str | None = None
    rows: int = 1
    assets: int = 1
    indexed: int = 1
    calls: Mapping[str, int] = field(default_factory=dict)
    answers: Mapping[str, Mapping[str, int]] = field(default_factory=dict)
    tries: Mapping[str, int] = field(default_factory=dict)
    #: (operation, seconds): consecutive calls of it must be at least this far apart (Retry-After)
    gap: tuple[str, float] | None = None
    video_url: str = VIDEO_URL
    #: seconds between a lane's task tries (Airflow's retry_delay)
    retry_delay: float = 0.0
    #: after a failure: remove the fault, run again (a new DAG run), expect success with these
    #: (assets, indexed) totals
    rerun: tuple[int, int] | None = None
    level: str = "lane"
    #: seconds before a new resource shows up in the API's listings (the emulator's listing lag)
    listing_lag: float = 0.0

    @property
    def test_name(self) -> str:
        return f"test_fault_matrix[{self.id}]"


def status_rule(op: str, status: int, count: int | None = None, **more: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"op": op, "kind": "status", "status": status, **more}
    if count is not None:
        rule["count"] = count
    return rule


def fault_rule(op: str, kind: str, count: int | None = None, **more: Any) -> dict[str, Any]:
    rule: dict[str, Any] = {"op": op, "kind": kind, **more}
    if count is not None:
        rule["count"] = count
    return rule


def model_rule(variant: str, count: int | None = None) -> dict[str, Any]:
    return fault_rule("analyze", "model_output", count, variant=variant)


# The example DAG retries every task twice (3 tries); the lanes do the same. The connection
# allows 4 attempts per call (rel_conn).
SCENARIOS: list[Scenario] = [
    # -- rate limiting --------------------------------------------------------------------------
    Scenario(
        "429-retry-after-analyze",
        "2 x 429 (empty body, `Retry-After: 1`) on `POST /analyze`",
        "success: the hook waits out `Retry-After` and retries in the same try (3 calls)",
        rules=(status_rule("analyze", 429, 2, retry_after=1, empty_body=True),),
        calls={POST_ANALYZE: 3},
        tries={"generate_gist": 1},
        gap=(POST_ANALYZE, 0.95),
    ),
    Scenario(
        "429-retry-after-create-asset",
        "429 with `Retry-After: 1` on `POST /assets`",
        "success: a 429 surely created nothing, so even the upload is retried in-call; one asset",
        rules=(status_rule("create_asset", 429, 1, retry_after=1),),
        calls={POST_ASSETS: 2},
        tries={"ingest": 1},
        gap=(POST_ASSETS, 0.95),
    ),
    Scenario(
        "429-retry-after-too-long",
        "429 with `Retry-After: 600` on every `POST /analyze`",
        "failure `HTTP 429`: a wait past the policy's 120 s cap is not slept in a worker; "
        "one call per try (3)",
        rules=(status_rule("analyze", 429, retry_after=600),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"POST /v1\.3/analyze failed: HTTP 429",
        rows=0,
        calls={POST_ANALYZE: 3},
        tries={"generate_gist": 3},
        rerun=(1, 1),
    ),
    # -- 5xx ------------------------------------------------------------------------------------
    Scenario(
        "500-burst-get-asset",
        "2 x 500 on `GET /assets/{id}` (the upload's status poll)",
        "success: idempotent reads are retried in-call",
        rules=(status_rule("get_asset", 500, 2),),
        calls={POST_ASSETS: 1, POST_INDEXED: 1, POST_ANALYZE: 1},
        answers={GET_ASSET: {"500": 2}},
        tries={"ingest": 1},
    ),
    Scenario(
        "500-on-create-asset",
        "500 (the API's own JSON error) on `POST /assets`, nothing created",
        "success in the same try: a 500 may come after the commit, so it is not resent blindly; "
        "the asset is looked up by its ingest key through the whole 4 s window (5 listings), none "
        "is found, and since the API itself answered (it is done) it is uploaded again, once",
        rules=(status_rule("create_asset", 500, 1),),
        calls={POST_ASSETS: 2, LIST_ASSETS: 1 + 5},
        tries={"ingest": 1},
    ),
    Scenario(
        "502-html-create-indexed-asset",
        "502 nginx HTML page on `POST .../indexed-assets`, nothing created",
        "first try fails after looking the indexed asset up for the 4 s window: a gateway may answer "
        "while the API still works, so it never indexes again in that try; the retry looks once "
        "more, finds nothing and indexes once",
        rules=(fault_rule("create_indexed_asset", "html", 1, status=502),),
        calls={POST_ASSETS: 1, POST_INDEXED: 2, LIST_INDEXED: 1 + 5 + 1},
        tries={"ingest": 2},
    ),
    Scenario(
        "503-on-create-asset",
        "503 on `POST /assets`, nothing created",
        "not resent by the hook (a gateway's 503 proves nothing); the first try looks the asset up "
        "for the 4 s window and fails; the retry finds nothing and uploads once",
        rules=(status_rule("create_asset", 503, 1),),
        calls={POST_ASSETS: 2, LIST_ASSETS: 1 + 5 + 1},
        tries={"ingest": 2},
    ),
    Scenario(
        "created-then-500-create-asset-listing-lag",
        "`POST /assets` uploads, then answers 500 (`status_after`); listings lag 2.5 s",
        "success in the same try, one upload: the lookups at 0, 0.5 and 1.5 s miss the asset, "
        "the one at 3.5 s finds it",
        rules=(fault_rule("create_asset", "status_after", 1, status=500),),
        listing_lag=2.5,
        calls={POST_ASSETS: 1, LIST_ASSETS: 1 + 4},
        tries={"ingest": 1},
    ),
    Scenario(
        "created-then-504-create-indexed-asset-listing-lag",
        "`POST .../indexed-assets` indexes, then a gateway answers a 504 page (`html_after`); "
        "listings lag 2.5 s",
        "success in the same try, indexed once: found by its ingest key on the fourth lookup (3.5 s)",
        rules=(fault_rule("create_indexed_asset", "html_after", 1),),
        listing_lag=2.5,
        calls={POST_ASSETS: 1, POST_INDEXED: 1, LIST_INDEXED: 1 + 4},
        tries={"ingest": 1},
    ),
    Scenario(
        "created-then-504-create-asset-lag-past-window",
        "`POST /assets` uploads, then a gateway answers 504 (`html_after`); listings lag 6 s, past "
        "the 4 s lookup window; retry delay 3 s",
        "first try fails without uploading again (a gateway answered: the API may still be at "
        "work); the retry, 7 s after the upload, finds it: one upload call",
        rules=(fault_rule("create_asset", "html_after", 1),),
        listing_lag=6.0,
        retry_delay=3.0,
        calls={POST_ASSETS: 1, LIST_ASSETS: 1 + 5 + 1},
        tries={"ingest": 2},
    ),
    Scenario(
        "503-burst-analyze",
        "3 x 503 on `POST /analyze`",
        "success: 503s are retried in-call (4 calls, within the 4-attempt budget)",
        rules=(status_rule("analyze", 503, 3),),
        calls={POST_ANALYZE: 4},
        tries={"generate_gist": 1},
    ),
    Scenario(
        "503-html-burst-indexing-poll",
        "6 x 503 HTML pages on `GET .../indexed-assets/{id}` (sensor's check and trigger's polls)",
        "success: the sensor's first check spends its 4 attempts and defers anyway; the trigger "
        "tolerates the other 2",
        rules=(fault_rule("get_indexed_asset", "html", 6, status=503),),
        calls={POST_ASSETS: 1, POST_INDEXED: 1, POST_ANALYZE: 1},
        answers={GET_INDEXED: {"503": 6}},
        tries={"wait_for_indexing": 1},
    ),
    Scenario(
        "503-exhausts-retries-analyze",
        "503 on every `POST /analyze`",
        "failure `HTTP 503 [service_unavailable]` after 4 attempts x 3 tries = 12 calls",
        rules=(status_rule("analyze", 503),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"POST /v1\.3/analyze failed: HTTP 503 \[service_unavailable\]",
        rows=0,
        calls={POST_ANALYZE: 12},
        tries={"generate_gist": 3},
        rerun=(1, 1),
    ),
    # -- connection resets ------------------------------------------------------------------------
    Scenario(
        "reset-create-asset",
        "connection reset on `POST /assets`",
        "first try fails (`reset or closed`, not resent: the upload may have landed) after looking "
        "the asset up for the 4 s window; the retry finds nothing by ingest key and uploads once",
        rules=(fault_rule("create_asset", "reset", 1),),
        calls={POST_ASSETS: 2, LIST_ASSETS: 1 + 5 + 1},
        tries={"ingest": 2},
    ),
    Scenario(
        "reset-burst-analyze",
        "2 x connection reset on `POST /analyze`",
        "success: the connection failed before an answer and `/analyze` creates nothing, so it is "
        "retried in-call",
        rules=(fault_rule("analyze", "reset", 2),),
        calls={POST_ANALYZE: 3},
        tries={"generate_gist": 1},
    ),
    Scenario(
        "reset-indexing-poll",
        "connection reset on `GET .../indexed-assets/{id}`",
        "success: retried in-call",
        rules=(fault_rule("get_indexed_asset", "reset", 1),),
        calls={POST_ASSETS: 1, POST_INDEXED: 1, POST_ANALYZE: 1},
        answers={GET_INDEXED: {"0": 1}},
        tries={"wait_for_indexing": 1},
    ),
    # -- read timeouts ------------------------------------------------------------------------------
    Scenario(
        "slow-headers-get-asset",
        "`GET /assets/{id}` answers after 2 s (read timeout 0.75 s)",
        "success: the read times out and is retried in-call",
        rules=(fault_rule("get_asset", "slow", 1, delay=2),),
        # the slow poll, its in-call retry (ready by then), and the index step's readiness check
        calls={GET_ASSET: 3, POST_ASSETS: 1, POST_INDEXED: 1, POST_ANALYZE: 1},
        tries={"ingest": 1},
    ),
    Scenario(
        "slow-body-create-asset",
        "`POST /assets` body stalls 2 s mid-way (read timeout 0.75 s)",
        "success in the same try: the upload happened and its answer was lost, so the asset is "
        "looked up by its ingest key and found at once: one upload call",
        rules=(fault_rule("create_asset", "slow_body", 1, delay=2),),
        calls={POST_ASSETS: 1, LIST_ASSETS: 1 + 1},
        tries={"ingest": 1},
    ),
    Scenario(
        "slow-create-asset",
        "`POST /assets` handled 1.8 s late, after the client's read timeout (0.75 s)",
        "success in the same try: timed out, so not resent (it may still land); the lookups "
        "after the timeout find the late upload by its ingest key: one upload call",
        rules=(fault_rule("create_asset", "slow", 1, delay=1.8),),
        calls={POST_ASSETS: 1},
        tries={"ingest": 1},
    ),
    Scenario(
        "slow-analyze",
        "`POST /analyze` answers after 2 s (analysis timeout 0.75 s)",
        "first try fails (timed out, not retried in-call: the API may still be analysing, and bills "
        "each request); the task retry analyses again: 2 calls",
        rules=(fault_rule("analyze", "slow", 1, delay=2),),
        calls={POST_ANALYZE: 2},
        tries={"generate_gist": 2},
    ),
    # -- malformed bodies ---------------------------------------------------------------------------
    Scenario(
        "malformed-json-create-asset",
        "`POST /assets` runs but its JSON answer is cut in half",
        "success in the same try: a 2xx with a garbled body surely created the asset, which the "
        "lookup by its ingest key finds at once: one upload",
        rules=(fault_rule("create_asset", "malformed_json", 1),),
        calls={POST_ASSETS: 1, LIST_ASSETS: 1 + 1},
        tries={"ingest": 1},
    ),
    Scenario(
        "malformed-json-create-indexed-asset",
        "`POST .../indexed-assets` runs but its JSON answer is cut in half",
        "success in the same try: the indexed asset is found by its ingest key at once; nothing "
        "created twice",
        rules=(fault_rule("create_indexed_asset", "malformed_json", 1),),
        calls={POST_ASSETS: 1, POST_INDEXED: 1, LIST_INDEXED: 1 + 1},
        tries={"ingest": 1},
    ),
    Scenario(
        "malformed-json-analyze",
        "`POST /analyze` 200 with half a JSON body",
        "first try fails (`2xx with a body that is not valid JSON`); the task retry succeeds",
        rules=(fault_rule("analyze", "malformed_json", 1),),
        calls={POST_ANALYZE: 2},
        tries={"generate_gist": 2},
    ),
    # -- model output -------------------------------------------------------------------------------
    Scenario(
        "model-not-json-once",
        "model answers prose instead of JSON, once",
        "success: the hook asks again once with more tokens (2 calls)",
        rules=(model_rule("not_json", 1),),
        calls={POST_ANALYZE: 2},
        tries={"generate_gist": 1},
    ),
    Scenario(
        "model-cut-off-once",
        "model output cut off (`finish_reason: length`), once",
        "success: asked again once with twice the tokens",
        rules=(model_rule("length", 1),),
        calls={POST_ANALYZE: 2},
        tries={"generate_gist": 1},
    ),
    Scenario(
        "model-not-json",
        "model answers prose instead of JSON, always",
        "failure `not valid JSON ... after one retry with more tokens`; 2 calls x 3 tries; no row",
        rules=(model_rule("not_json"),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"is not valid JSON .*after one retry with more tokens",
        rows=0,
        calls={POST_ANALYZE: 6},
        tries={"generate_gist": 3},
        rerun=(1, 1),
    ),
    Scenario(
        "model-missing-keys",
        "model output lacks its last property (`hashtags`), always",
        "failure naming `'hashtags' is missing`; no half-filled row",
        rules=(model_rule("missing_keys"),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"'hashtags' is missing or not a list",
        rows=0,
        calls={POST_ANALYZE: 6},
        tries={"generate_gist": 3},
    ),
    Scenario(
        "model-wrong-types",
        "model output with strings and arrays swapped, always",
        "failure naming `'title' ... not a non-empty string` and `'topics' ... not a list`",
        rules=(model_rule("wrong_types"),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"'title' is missing or not a non-empty string; 'topics' is missing or not a list",
        rows=0,
        calls={POST_ANALYZE: 6},
        tries={"generate_gist": 3},
    ),
    Scenario(
        "model-cut-off",
        "model output cut off (`finish_reason: length`), always",
        "failure `cut off at max_tokens (finish_reason 'length')`",
        rules=(model_rule("length"),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"cut off at max_tokens \(finish_reason 'length'\)",
        rows=0,
        calls={POST_ANALYZE: 6},
        tries={"generate_gist": 3},
    ),
    # -- the video itself -----------------------------------------------------------------------------
    Scenario(
        "processing-fails-corrupt",
        "the video's processing ends `failed` (`corrupt` in the file name)",
        "failure with the API's `error.message`, not retried (a retry would upload again); "
        "nothing indexed, no row",
        video_url=CORRUPT_URL,
        outcome="failure",
        failed_task="ingest",
        error=r"asset \w+ failed to process: .+",
        rows=0,
        indexed=0,
        calls={POST_ASSETS: 1, POST_INDEXED: 0},
        tries={"ingest": 1},
    ),
    Scenario(
        "asset-deleted-before-generate",
        "`DELETE /assets/{id}?force=true` through the API after indexing, before generating",
        "failure `HTTP 404 [resource_not_exist]` naming the asset; no row, nothing re-created",
        action="delete_asset",
        before="generate_gist",
        outcome="failure",
        failed_task="generate_gist",
        error=r"POST /v1\.3/analyze failed: HTTP 404 \[resource_not_exist\]: .*{asset_id}",
        rows=0,
        assets=0,
        indexed=0,
        calls={POST_ASSETS: 1, POST_INDEXED: 1, POST_ANALYZE: 3},
        tries={"generate_gist": 3},
    ),
    Scenario(
        "asset-deleted-before-wait",
        "`DELETE /assets/{id}?force=true` right after ingest (takes its indexed asset with it)",
        "failure `HTTP 404` naming the indexed asset; no row, nothing re-created",
        action="delete_asset",
        before="wait_for_indexing",
        outcome="failure",
        failed_task="wait_for_indexing",
        error=r"HTTP 404 \[resource_not_exist\].*{indexed_asset_id}",
        rows=0,
        assets=0,
        indexed=0,
        calls={POST_ASSETS: 1, POST_INDEXED: 1},
        tries={"wait_for_indexing": 3},
    ),
    # -- the key --------------------------------------------------------------------------------------
    Scenario(
        "key-revoked-before-wait",
        "API key revoked (`POST /_emulator/keys`) after ingest",
        "failure `HTTP 401 [api_key_invalid]` ... `check the connection's API key`, never retried; "
        "after a new key, a rerun reuses the upload",
        action="revoke_key",
        before="wait_for_indexing",
        outcome="failure",
        failed_task="wait_for_indexing",
        error=r"HTTP 401 \[api_key_invalid\].*check the connection's API key",
        rows=0,
        calls={GET_INDEXED: 1},
        tries={"wait_for_indexing": 1},
        rerun=(1, 1),
    ),
    Scenario(
        "key-revoked-at-analyze",
        "key revoked by the `POST /analyze` call itself (`key_revoked` fault)",
        "failure `HTTP 401`, one call, never retried",
        rules=(fault_rule("analyze", "key_revoked", 1),),
        outcome="failure",
        failed_task="generate_gist",
        error=r"POST /v1\.3/analyze failed: HTTP 401 \[api_key_invalid\]",
        rows=0,
        calls={POST_ANALYZE: 1},
        tries={"generate_gist": 1},
        rerun=(1, 1),
    ),
    # -- the real example DAG, dag.test() -------------------------------------------------------------
    Scenario(
        "dag-429-analysis-task",
        "example DAG, 2 videos (deferrable gists): 2 x 429 (`Retry-After: 1`) on `POST /analyze/tasks`",
        "success: a 429 proves the task was not created, so the create is retried in-call; "
        "both gists stored once (4 create calls, no sync `/analyze`)",
        rules=(status_rule("create_analysis_task", 429, 2, retry_after=1, empty_body=True),),
        rows=2,
        assets=2,
        indexed=2,
        calls={POST_ANALYSIS_TASKS: 4, POST_ANALYZE: 0, POST_ASSETS: 2, POST_INDEXED: 2},
        level="dag",
    ),
    Scenario(
        "dag-html-5xx-indexing-poll",
        "example DAG, 2 videos: 6 x 502 HTML pages on `GET .../indexed-assets/{id}`",
        "success: tolerated by the sensors' checks and triggers; both gists stored once",
        rules=(fault_rule("get_indexed_asset", "html", 6, status=502),),
        rows=2,
        assets=2,
        indexed=2,
        calls={POST_ANALYSIS_TASKS: 2, POST_ANALYZE: 0, POST_ASSETS: 2, POST_INDEXED: 2},
        level="dag",
    ),
    Scenario(
        "dag-corrupt-video",
        "example DAG, 3 videos, one `corrupt`",
        "run fails; the 2 good gists are stored once; the bad upload is not retried",
        outcome="failure",
        rows=2,
        assets=3,
        indexed=2,
        calls={POST_ANALYSIS_TASKS: 2, POST_ANALYZE: 0, POST_ASSETS: 3, POST_INDEXED: 2},
        level="dag",
    ),
]
