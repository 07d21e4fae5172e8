"""The two strict copies of the spec (requests, responses), built in memory, and validating against them.

The published file is deep-copied and patched by the rules of :data:`CONTRACT_RULES`; the
generic rules (closed request objects, error bodies) are applied here by code, under their names.
"""

from __future__ import annotations

import copy
from collections.abc import Iterator
from functools import cache
from typing import Any

from jsonschema import Draft202012Validator
from jsonschema.exceptions import best_match
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

from tests.contract.openapi_overlay import CONTRACT_RULES, Rule
from tests.contract.openapi_spec import (
    _JSON,
    REQUEST_URI,
    RESPONSE_URI,
    SPEC_URI,
    _at,
    _resolve_in,
    load_spec,
)

_CLASSIC_ERROR = "ContractClassicError"
_NESTED_ERROR = "ContractNestedError"
_EMPTY_BODY_NOTE = "the response body is empty"


def _apply(doc: dict[str, Any], rule: Rule) -> None:
    for pointer in rule.where:
        node = _at(doc, pointer)
        for key, value in rule.patch.items():
            if key == "required":
                node["required"] = list(dict.fromkeys([*node.get("required", []), *value]))
            elif key == "allOf":
                node["allOf"] = [*node.get("allOf", []), *copy.deepcopy(value)]
            else:
                node[key] = copy.deepcopy(value)


_SUBSCHEMA_MAPS = ("properties", "patternProperties", "$defs", "definitions", "dependentSchemas")
_SUBSCHEMA_LISTS = ("allOf", "anyOf", "oneOf", "prefixItems")
_SUBSCHEMA_ONE = ("items", "additionalProperties", "not", "if", "then", "else", "contains")


def _subschemas(schema: Any) -> Iterator[Any]:
    if not isinstance(schema, dict):
        return
    for key in _SUBSCHEMA_MAPS:
        if isinstance(schema.get(key), dict):
            yield from schema[key].values()
    for key in _SUBSCHEMA_LISTS:
        if isinstance(schema.get(key), list):
            yield from schema[key]
    for key in _SUBSCHEMA_ONE:
        if isinstance(schema.get(key), dict):
            yield schema[key]


def _close(schema: Any) -> None:
    """``request.closed-objects``: additionalProperties false wherever properties are declared."""
    stack = [schema]
    while stack:
        node = stack.pop()
        if not isinstance(node, dict):
            continue
        props = node.get("properties")
        if (
            isinstance(props, dict)
            and props
            and not {"additionalProperties", "patternProperties", "unevaluatedProperties"} & set(node)
        ):
            node["additionalProperties"] = False
        stack.extend(_subschemas(node))


def _operations(doc: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for template, item in doc["paths"].items():
        for method, operation in item.items():
            if method in ("get", "put", "post", "delete", "patch") and isinstance(operation, dict):
                yield template, method, operation


@cache
def _request_doc() -> dict[str, Any]:
    doc = copy.deepcopy(load_spec())
    for schema in doc["components"]["schemas"].values():
        _close(schema)
    for _, _, operation in _operations(doc):
        for media in ((operation.get("requestBody") or {}).get("content") or {}).values():
            _close(media.get("schema"))
        for param in operation.get("parameters", []):
            _close(param.get("schema"))
    for rule in CONTRACT_RULES.values():
        if rule.side == "request":
            _apply(doc, rule)
    return doc


def _error_kind(doc: dict[str, Any], schema: Any) -> str | None:
    props = (_resolve_in(doc, schema) or {}).get("properties") or {}
    if "error" in props:
        return "nested"
    if "code" in props or "message" in props:
        return "classic"
    return None


def _error_family(doc: dict[str, Any], operation: dict[str, Any]) -> str:
    """``response.error-body``: the error shape an operation uses (from its declared errors)."""
    kinds = {
        _error_kind(doc, ((r.get("content") or {}).get(_JSON) or {}).get("schema"))
        for status, r in operation.get("responses", {}).items()
        if status[:1] in ("4", "5")
    }
    return "nested" if "nested" in kinds else "classic"


@cache
def _response_doc() -> dict[str, Any]:
    doc = copy.deepcopy(load_spec())
    schemas = doc["components"]["schemas"]
    # response.error-body: the two shapes of the API's error bodies, strict.
    schemas[_CLASSIC_ERROR] = {
        "type": "object",
        "properties": {
            "code": {"type": "string"},
            "message": {"type": "string"},
            "docs_url": {"type": "string"},
        },
        "required": ["code", "message"],
    }
    schemas[_NESTED_ERROR] = {"$ref": "#/components/schemas/ErrorResponse"}
    for _, _, operation in _operations(doc):
        family = _CLASSIC_ERROR if _error_family(doc, operation) == "classic" else _NESTED_ERROR
        for status, response in operation.get("responses", {}).items():
            media = (response.get("content") or {}).get(_JSON)
            if status[:1] not in ("4", "5") or not media:
                continue
            schema = media.get("schema") or {}
            kind = _error_kind(doc, schema)
            if kind == "classic":
                # The spec's classic error schemas require nothing: require code and message.
                target = _resolve_in(doc, schema)
                target["required"] = list(dict.fromkeys([*target.get("required", []), "code", "message"]))
                target.setdefault("properties", {})
                target["properties"].setdefault("code", {"type": "string"})
                target["properties"].setdefault("message", {"type": "string"})
            elif kind is None:
                # 'Any type': the operation's error body; empty too where the spec says so.
                strict: dict[str, Any] = {"$ref": f"#/components/schemas/{family}"}
                if _EMPTY_BODY_NOTE in (response.get("description") or "").lower():
                    strict = {"anyOf": [{"type": "null"}, strict]}
                media["schema"] = strict
    for rule in CONTRACT_RULES.values():
        if rule.side == "response":
            _apply(doc, rule)
    return doc


@cache
def _registry() -> Registry[Any]:
    def resource(doc: dict[str, Any]) -> Resource[Any]:
        return Resource.from_contents(doc, default_specification=DRAFT202012)

    return Registry().with_resources(
        [
            (SPEC_URI, resource(load_spec())),
            (REQUEST_URI, resource(_request_doc())),
            (RESPONSE_URI, resource(_response_doc())),
        ]
    )


@cache
def _validator(uri: str, pointer: str) -> Draft202012Validator:
    return Draft202012Validator({"$ref": f"{uri}#{pointer}"}, registry=_registry())


def _validate(pointer: str, instance: Any, what: str, *, uri: str = REQUEST_URI) -> None:
    """Validate against the (strict) node at ``pointer`` so that its ``#/components`` refs resolve.

    The message names every problem, the most specific (deepest in the instance) first.
    """
    found = [best_match([error]) for error in _validator(uri, pointer).iter_errors(instance)]
    errors = sorted((e for e in found if e is not None), key=lambda e: -len(e.absolute_path))
    if errors:
        first, rest = errors[0], errors[1:]
        more = "".join(f"; at {e.json_path}: {_message(e)}" for e in rest[:4])
        more += f"; and {len(rest) - 4} more" if len(rest) > 4 else ""
        raise AssertionError(f"{what}: at {first.json_path}: {_message(first)}{more}")


def _message(error: Any) -> str:
    """The error's message; for a failed oneOf/anyOf, also what each alternative wanted."""
    if error.validator not in ("oneOf", "anyOf") or not error.context:
        return str(error.message)
    wanted = list(dict.fromkeys(str(e.message) for e in error.context))
    return f"{error.message} (wanted one of: {' | '.join(wanted[:6])})"
