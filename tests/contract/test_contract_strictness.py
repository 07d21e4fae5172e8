"""Each rule of the strict contract (``CONTRACT_RULES``, tests/contract/openapi_overlay.py) proven both ways.

Every case pairs a known-bad exchange, which must fail the contract check, with the matching
known-good one, which must pass: so a rule that silently stops biting (or starts rejecting valid
traffic) fails here. No emulator is involved: the examples are literal (the cases live in
strictness_request_cases.py and strictness_response_cases.py).
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable

import pytest

from tests.contract.openapi import CONTRACT_RULES, load_spec, spec_path
from tests.contract.strictness_examples import ID, Case, analyze, request, response
from tests.contract.strictness_request_cases import REQUEST_CASES, REQUEST_HEADER_CASES
from tests.contract.strictness_response_cases import RESPONSE_CASES, RESPONSE_HEADER_CASES

CASES: list[Case] = [*REQUEST_CASES, *RESPONSE_CASES, *REQUEST_HEADER_CASES, *RESPONSE_HEADER_CASES]


@pytest.mark.parametrize(
    ("bad", "good"),
    [pytest.param(bad, good, id=f"{rule}:{case}") for rule, case, bad, good in CASES],
)
def test_known_bad_fails_and_known_good_passes(bad: Callable[[], None], good: Callable[[], None]) -> None:
    good()
    with pytest.raises(AssertionError):
        bad()


def test_every_rule_has_a_negative_case() -> None:
    covered = {rule for rule, *_ in CASES}
    assert covered <= set(CONTRACT_RULES), f"cases for unknown rules: {sorted(covered - set(CONTRACT_RULES))}"
    assert set(CONTRACT_RULES) <= covered, f"rules without a case: {sorted(set(CONTRACT_RULES) - covered)}"
    for name, rule in CONTRACT_RULES.items():
        assert rule.why.strip(), f"{name} does not say why it exists"


def test_the_spec_file_is_never_changed_by_the_overlay() -> None:
    for _, _, bad, good in CASES:
        good()
        with contextlib.suppress(AssertionError):
            bad()
    with spec_path().open(encoding="utf-8") as fh:
        assert load_spec() == json.load(fh)


def test_messages_name_the_operation_and_the_field() -> None:
    with pytest.raises(AssertionError, match=r"POST /analyze JSON body: .*'videoid' was unexpected"):
        analyze({"videoid": ID, "prompt": "p"})()
    with pytest.raises(
        AssertionError, match=r"GET /indexes/\{index-id\}/indexed-assets -> 200: .*'page_info'"
    ):
        response("GET", f"/indexes/{ID}/indexed-assets", 200, {"data": []})()
    with pytest.raises(AssertionError, match=r"-> 422: not an error object of the operation's classic shape"):
        response("POST", "/analyze", 422, {"detail": "x"})()
    with pytest.raises(AssertionError, match="required header 'x-api-key'"):
        request("GET", "/indexes", headers={})()
