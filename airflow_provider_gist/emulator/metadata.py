"""``user_metadata``: what a write may hold, and how a listing's filter matches it."""

from __future__ import annotations

from typing import Any

from .api_errors import invalid


def check_metadata(value: Any, *, allow_null: bool) -> dict[str, Any]:
    if not isinstance(value, dict):
        raise invalid("user_metadata must be a JSON object.")
    for key, item in value.items():
        if item is None and allow_null:
            continue
        if not isinstance(item, str | int | float | bool):
            raise invalid(f"user_metadata[{key!r}] must be a string, number or boolean.")
    return value


def metadata_matches(actual: dict[str, Any] | None, wanted: dict[str, str]) -> bool:
    """Query values are text; compare them the way a user would expect for each stored type."""
    actual = actual or {}
    for key, text in wanted.items():
        if key not in actual:
            return False
        value = actual[key]
        if isinstance(value, bool):
            if text.lower() != str(value).lower():
                return False
        elif isinstance(value, int | float):
            try:
                if float(text) != float(value):
                    return False
            except ValueError:
                return False
        elif str(value) != text:
            return False
    return True
