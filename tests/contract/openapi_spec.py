"""The published TwelveLabs OpenAPI spec: where it is, JSON pointers into it, and its operations.

The base of the contract modules (see :mod:`tests.contract.openapi`): loading the file (never
edited), following its local ``$ref``s, matching a concrete method and path to a spec template,
and the small wire helpers (media types, header case) both sides share.
"""

from __future__ import annotations

import json as jsonlib
import os
import re
from collections.abc import Mapping
from functools import cache
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

SPEC_ENV = "TWELVELABS_OPENAPI_SPEC"
SPEC_URI = "urn:twelvelabs:openapi:v1.3"
REQUEST_URI = SPEC_URI + ":strict-requests"
RESPONSE_URI = SPEC_URI + ":strict-responses"
_VERSION_PREFIX = re.compile(r"^/v1\.[0-9]+(?=/)")
_JSON = "application/json"
_MULTIPART = "multipart/form-data"
_NDJSON = "application/x-ndjson"


def spec_path() -> Path:
    override = os.environ.get(SPEC_ENV)
    if override:
        return Path(override)
    return Path(__file__).resolve().parents[3] / "shared" / "spec" / "twelvelabs-openapi-v1.3.json"


@cache
def load_spec() -> dict[str, Any]:
    with spec_path().open(encoding="utf-8") as fh:
        spec: dict[str, Any] = jsonlib.load(fh)
    return spec


def _escape(segment: str) -> str:
    return segment.replace("~", "~0").replace("/", "~1").replace("%", "%25")


def _pointer(*segments: str | int) -> str:
    return "".join("/" + _escape(str(s)) for s in segments)


def _schema(name: str) -> str:
    return _pointer("components", "schemas", name)


def _body(method: str, template: str, status: int | None = None) -> str:
    """Pointer to the JSON schema of a request body (``status=None``) or of a response."""
    if status is None:
        return _pointer("paths", template, method, "requestBody", "content", _JSON, "schema")
    return _pointer("paths", template, method, "responses", str(status), "content", _JSON, "schema")


def _at(doc: Any, pointer: str) -> Any:
    node = doc
    for raw in pointer.lstrip("/").split("/"):
        part = raw.replace("%25", "%").replace("~1", "/").replace("~0", "~")
        try:
            node = node[int(part)] if isinstance(node, list) else node[part]
        except (KeyError, IndexError, ValueError) as exc:
            raise LookupError(f"overlay pointer {pointer!r} does not exist in the spec") from exc
    return node


def _resolve_in(doc: dict[str, Any], node: Any) -> Any:
    seen = 0
    while isinstance(node, dict) and "$ref" in node and seen < 20:
        node, seen = _at(doc, node["$ref"].lstrip("#")), seen + 1
    return node


def _resolve(node: Any) -> Any:
    """Follow local ``$ref``s in the published spec (to read types for coercion)."""
    return _resolve_in(load_spec(), node)


def _strip(path: str) -> str:
    path = urlsplit(path).path if "://" in path or "?" in path else path
    path = _VERSION_PREFIX.sub("", path)
    return path.rstrip("/") or "/"


@cache
def _templates() -> list[tuple[re.Pattern[str], str, int]]:
    out = []
    for template in load_spec()["paths"]:
        regex = "^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(template)) + "$"
        out.append((re.compile(regex), template, template.count("{")))
    # Literal segments win over parameters: /assets/multipart-uploads before /assets/{asset_id}.
    return sorted(out, key=lambda t: t[2])


def find_operation(method: str, path: str) -> tuple[str, dict[str, Any]]:
    """The spec template and operation object for a concrete method and path."""
    method_l = method.lower()
    concrete = _strip(path)
    for regex, template, _ in _templates():
        if regex.match(concrete):
            operation = load_spec()["paths"][template].get(method_l)
            if operation is not None:
                return template, operation
    raise AssertionError(f"{method.upper()} {path}: no such operation in the OpenAPI spec")


def _lower(headers: Mapping[str, Any]) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in headers.items()}


def _media_type(value: str | None) -> str:
    return (value or "").split(";", 1)[0].strip().lower()
