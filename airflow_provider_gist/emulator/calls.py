"""Plain data types shared by the HTTP plumbing and the route handlers (no aiohttp here)."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any

from .faults import FaultRule


@dataclass(frozen=True)
class Operation:
    method: str
    template: str
    handler: str
    has_404: bool = False
    # The newer operations (analysis tasks, batches) answer errors as {"error": {code, message}}.
    nested_errors: bool = False

    @property
    def key(self) -> str:
        return f"{self.method} {self.template}"


class Query:
    """Query parameters in wire order, repeated keys kept (a tiny multidict of our own)."""

    def __init__(self, pairs: list[tuple[str, str]]) -> None:
        self._pairs = pairs

    def get(self, key: str, default: str | None = None) -> str | None:
        return next((v for k, v in self._pairs if k == key), default)

    def getall(self, key: str, default: list[str] | None = None) -> list[str]:
        values = [v for k, v in self._pairs if k == key]
        return values or list(default or [])

    def items(self) -> list[tuple[str, str]]:
        return list(self._pairs)

    def __iter__(self) -> Iterator[str]:
        return iter(dict.fromkeys(k for k, _ in self._pairs))

    def __contains__(self, key: object) -> bool:
        return any(k == key for k, _ in self._pairs)


@dataclass
class FilePart:
    filename: str
    size: int
    head: bytes

    def journal(self) -> dict[str, Any]:
        return {"filename": self.filename, "size": self.size}


@dataclass
class Call:
    """One parsed API request, independent of aiohttp so handlers stay plain functions."""

    op: Operation
    version: str
    params: dict[str, str]
    query: Query
    json: Any = None
    json_error: str | None = None
    fields: dict[str, list[str]] = field(default_factory=dict)
    files: dict[str, list[FilePart]] = field(default_factory=dict)
    fault: FaultRule | None = None
    # "http://127.0.0.1:<port>" of the listening socket, for URLs the emulator hands out
    origin: str = "http://127.0.0.1"
    # The Idempotency-Key request header (POST /analyze/tasks honours it); never journaled.
    idempotency_key: str | None = None

    def field_value(self, name: str) -> str | None:
        values = self.fields.get(name)
        return values[0] if values else None

    def journal_body(self) -> Any:
        if self.fields or self.files:
            out: dict[str, Any] = {k: v[0] if len(v) == 1 else v for k, v in self.fields.items()}
            for name, parts in self.files.items():
                out[name] = parts[0].journal() if len(parts) == 1 else [p.journal() for p in parts]
            return out
        return self.json


@dataclass
class Reply:
    status: int = 200
    body: Any = None
    events: list[dict[str, Any]] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    # Content-Type of an ``events`` body (one JSON object per line)
    events_type: str = "application/x-ndjson"
