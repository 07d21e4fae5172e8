"""Validate requests and responses against the official TwelveLabs OpenAPI 3.1 spec, made strict.

Used by every contract test (client and emulator alike). The spec is read from
``../shared/spec/twelvelabs-openapi-v1.3.json`` beside the repository root, or from the
path in ``$TWELVELABS_OPENAPI_SPEC``. The file is never edited: at load time two stricter copies
are built from it in memory, one for requests and one for responses, by the rules of
:data:`CONTRACT_RULES` (the overlay). The published spec alone lets almost anything through: its
request objects accept unknown fields and its response objects require almost nothing, so ``{}``
would pass as an ``/analyze`` request and as an ``/analyze`` answer.

Conventions (see also docs/emulator.md):

* paths may be full URLs or ``/v1.3/...`` / ``/v1.2/...``; the version prefix and the query
  string are ignored when matching a spec template;
* requests: unknown JSON fields, multipart fields, query parameters and object sub-keys fail;
* responses: the fields the client reads are required (see :data:`CONTRACT_RULES`); a 1xx-3xx
  status the operation does not declare fails; a 4xx/5xx must carry the operation's error body
  (classic ``{code, message}`` or newer ``{"error": {code, message}}``, whichever the operation
  uses), even for a status the operation does not declare (401, 422, 5xx, ...) unless
  ``allow_undeclared=False`` makes such statuses fail outright; an empty error body passes only
  where the spec says the body is empty (the 429 of ``POST /analyze``);
* a declared status without ``content`` requires an empty body;
* headers are checked when given (``headers=``): requests need ``x-api-key``, never
  ``Authorization``, and the Content-Type of their body; response bodies need the content type
  the spec declares. Callers holding a ``requests.Response`` can use :func:`validate_exchange`,
  which checks both sides, headers included;
* streamed ``/analyze`` responses are checked line by line with :func:`validate_stream_events`;
  a single JSON body from ``/analyze`` is the non-stream answer.

This module is the entry point (the names below); the work is split by concern:
:mod:`~tests.contract.openapi_spec` (loading the spec, pointers, matching operations),
:mod:`~tests.contract.openapi_overlay` (the rules), :mod:`~tests.contract.openapi_strict`
(the strict documents and the validator), :mod:`~tests.contract.openapi_requests`,
:mod:`~tests.contract.openapi_responses` and :mod:`~tests.contract.openapi_exchange`.
"""

from __future__ import annotations

from tests.contract.openapi_exchange import validate_exchange
from tests.contract.openapi_overlay import CONTRACT_RULES, Rule
from tests.contract.openapi_requests import validate_request
from tests.contract.openapi_responses import validate_response, validate_stream_events
from tests.contract.openapi_spec import (
    REQUEST_URI,
    RESPONSE_URI,
    SPEC_ENV,
    SPEC_URI,
    find_operation,
    load_spec,
    spec_path,
)

__all__ = [
    "CONTRACT_RULES",
    "REQUEST_URI",
    "RESPONSE_URI",
    "SPEC_ENV",
    "SPEC_URI",
    "Rule",
    "find_operation",
    "load_spec",
    "spec_path",
    "validate_exchange",
    "validate_request",
    "validate_response",
    "validate_stream_events",
]
