"""The connection's settings: one table of fields, their defaults and rules, defined once.

The ``twelvelabs`` connection keeps the API key in its password and the base URL in its host.
Everything else is an extra listed in :data:`FIELDS`. That table is the single source of the
defaults (:class:`ApiSettings`), of the validation (:meth:`ApiSettings.from_extra`) and of
the connection form in the UI (:func:`conn_fields`, used by the provider manifest).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, fields
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from airflow_provider_gist.errors import GistConfigError

DEFAULT_CONN_ID = "twelvelabs_default"
CONN_TYPE = "twelvelabs"
DEFAULT_HOST = "https://api.twelvelabs.io"
API_VERSIONS = ("v1.3",)
#: Models that can answer ``/analyze`` (also the choices of the connection's default model).
ANALYZE_MODELS = ("pegasus1.2", "pegasus1.5")
#: The TwelveLabs web app that extra links open (an emulator or a proxy may serve another).
DEFAULT_PLAYGROUND_URL = "https://playground.twelvelabs.io"


@dataclass(frozen=True)
class ApiSettings:
    """Our settings from a connection's extras. The defaults here are the only ones."""

    api_version: str = "v1.3"
    default_model: str = "pegasus1.2"
    connect_timeout: float = 10.0
    read_timeout: float = 120.0
    #: A synchronous analysis of an hour of video takes minutes; the official SDK waits 600 s.
    analyze_timeout: float = 600.0
    max_attempts: int = 6
    retry_deadline: float = 300.0
    #: After a create failed without proof that nothing was created, how long to keep looking the
    #: resource up by its ingest key before creating it again: longer than the API's listing lag.
    create_lookup_seconds: float = 60.0
    #: Base of the extra links to the web app; stored in XCom with the ids, so a URL only.
    playground_url: str = DEFAULT_PLAYGROUND_URL
    #: A SQL connection whose database keeps the rate-limit windows that every worker shares;
    #: ``None`` paces each task process on its own (see client/shared_pacing.py).
    pacing_conn_id: str | None = None

    @classmethod
    def from_extra(cls, extra: Mapping[str, Any], conn_id: str) -> ApiSettings:
        """Validate a connection's extras; an empty or missing value means the default."""
        values: dict[str, Any] = {}
        for name, spec in FIELDS.items():
            raw = extra.get(name)
            if raw in (None, ""):
                continue
            values[name] = spec.parse(raw, name, conn_id)
        return cls(**values)

    def get(self, name: str) -> Any:
        return getattr(self, name)

    def __getitem__(self, name: str) -> Any:  # settings["read_timeout"], as extras are read
        if name not in FIELDS:
            raise KeyError(name)
        return getattr(self, name)


@dataclass(frozen=True)
class _Field:
    label: str
    description: str
    kind: str  # "string" | "number" | "integer"
    choices: tuple[str, ...] = ()
    minimum: float | None = None
    maximum: float | None = None
    #: a string that must be a plain http(s) URL (no credentials, query or fragment)
    url: bool = False
    #: a string that must be an Airflow connection id
    conn_id: bool = False

    def parse(self, raw: object, name: str, conn_id: str) -> Any:
        from airflow_provider_gist.errors import GistConfigError

        where = f"connection {conn_id!r}: {name}"
        if self.kind == "string":
            text = str(raw)
            if self.url:
                return _plain_url(text, where)
            if self.conn_id:
                return _conn_id(text, where)
            if self.choices and text not in self.choices:
                raise GistConfigError(f"{where} {text!r} is not supported (use {', '.join(self.choices)})")
            return text
        try:
            number = float(raw)  # type: ignore[arg-type]
        except (TypeError, ValueError):
            raise GistConfigError(f"{where} must be a number, got {raw!r}") from None
        if not number > 0 or number == float("inf"):
            raise GistConfigError(f"{where} must be positive")
        if self.maximum is not None and number > self.maximum:
            raise GistConfigError(f"{where} must be at most {self.maximum:g}")
        return int(number) if self.kind == "integer" else number

    def form(self, default: Any) -> dict[str, Any]:
        schema: dict[str, Any] = {"type": [self.kind, "null"], "default": default}
        if self.choices:
            schema["enum"] = [*self.choices, None]
        if self.minimum is not None:
            schema["minimum"] = self.minimum
        if self.maximum is not None:
            schema["maximum"] = self.maximum
        if self.url:
            schema["format"] = "uri"
        return {"label": self.label, "description": self.description, "schema": schema}


#: The connection's extras that are settings of ours (never sent as HTTP headers).
FIELDS: dict[str, _Field] = {
    "api_version": _Field(
        "API version", "Path prefix of every call (v1.3 is the supported version).", "string", API_VERSIONS
    ),
    "default_model": _Field(
        "Default model", "Pegasus model used when a task does not name one.", "string", ANALYZE_MODELS
    ),
    "connect_timeout": _Field(
        "Connect timeout (s)", "Seconds to wait for a TCP connection.", "number", minimum=1
    ),
    "read_timeout": _Field(
        "Read timeout (s)", "Seconds to wait for an answer to any call but /analyze.", "number", minimum=1
    ),
    "analyze_timeout": _Field(
        "Analysis timeout (s)",
        "Seconds to wait for a synchronous /analyze answer (minutes for long videos). "
        "It is never retried after this timeout: the API may still be analysing, and bills it.",
        "number",
        minimum=1,
    ),
    "max_attempts": _Field(
        "Max attempts per call",
        "Tries per call, the first included, on 429, 5xx and network errors.",
        "integer",
        minimum=1,
        maximum=20,
    ),
    "retry_deadline": _Field(
        "Retry deadline (s)",
        "Upper bound on one call including all its retries and waits.",
        "number",
        minimum=1,
    ),
    "create_lookup_seconds": _Field(
        "Create lookup window (s)",
        "After an upload or index call fails in a way that may have created the resource (5xx, "
        "timeout, cut-off answer), how long to keep looking for it by its ingest key before creating "
        "it again. Must exceed the time the API takes to list a new resource.",
        "number",
        minimum=1,
    ),
    "playground_url": _Field(
        "Web app URL (extra links)",
        "Base URL of the TwelveLabs web app that the tasks' extra links open "
        "(default https://playground.twelvelabs.io; an emulator's address in tests).",
        "string",
        url=True,
    ),
    "pacing_conn_id": _Field(
        "Shared pacing connection",
        "Set it when tasks on more than one worker or task process use this connection at once "
        "(Celery or Kubernetes workers, LocalExecutor running tasks in parallel, a refresh beside "
        "manual runs): the id of a SQL connection (postgres for workers on several machines; "
        "sqlite for processes of one machine) where all of them keep one rate-limit window, so "
        "together they stay under the API's limit. The table gist_rate_windows is created there; "
        "it holds counts and times only, never the key. Empty: each task process paces alone, "
        "which is right when one task at a time uses the key. If the database cannot be "
        "reached, tasks pace alone (one warning), they do not fail.",
        "string",
        conn_id=True,
    ),
}
assert set(FIELDS) == {f.name for f in fields(ApiSettings)}, "every setting has a form field and back"

#: Extras that configure the HTTP client rather than being headers (as in HttpHook).
HTTP_OPTION_EXTRAS = frozenset(
    {
        "stream",
        "cert",
        "proxies",
        "proxy",
        "timeout",
        "verify",
        "verify_ssl",
        "allow_redirects",
        "max_redirects",
        "trust_env",
        "check_response",
        "srv_lookup",
    }
)


def _plain_url(text: str, where: str) -> str:
    """An http(s) base URL with nothing secret in it: it is stored in XCom and shown in the UI."""
    from urllib.parse import urlsplit

    from airflow_provider_gist.errors import GistConfigError

    parts = urlsplit(text.strip())
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise GistConfigError(f"{where} must be an http(s) URL, got {text!r}")
    if parts.username or parts.password or parts.query or parts.fragment:
        raise GistConfigError(f"{where} must not carry credentials, a query or a fragment")
    return f"{parts.scheme}://{parts.netloc}{parts.path}".rstrip("/")


#: Airflow's own rule for connection ids (letters, digits, and ``_ . -``).
_CONN_ID_RE = re.compile(r"[\w.-]{1,250}", re.ASCII)


def _conn_id(text: str, where: str) -> str:
    from airflow_provider_gist.errors import GistConfigError

    name = text.strip()
    if not _CONN_ID_RE.fullmatch(name):
        raise GistConfigError(
            f"{where} must be a connection id (letters, digits, '_', '.', '-'), got {text[:80]!r}"
        )
    return name


def conn_fields() -> dict[str, dict[str, Any]]:
    """The connection form's extra fields (``conn-fields`` of the provider manifest)."""
    defaults = ApiSettings()
    return {name: spec.form(getattr(defaults, name)) for name, spec in FIELDS.items()}


def base_url(host: str | None, schema: str | None = None, port: int | None = None) -> str:
    """The API root from a connection: empty host = :data:`DEFAULT_HOST`, bare host = https."""
    host = (host or "").strip()
    if not host:
        return DEFAULT_HOST
    base = host if "://" in host else f"{schema or 'https'}://{host}"
    base = base.rstrip("/")
    if port:
        base = f"{base}:{port}"
    return base


# The errors module loads Airflow's exceptions, and Airflow reads the provider manifest (which
# reads this module) while it loads: so the errors are imported when they are raised.


def missing_connection_error(conn_id: str) -> GistConfigError:
    from airflow_provider_gist.errors import GistConfigError

    return GistConfigError(
        f"connection {conn_id!r} is not defined: create it in the UI "
        f"(type TwelveLabs) or set AIRFLOW_CONN_{conn_id.upper()}"
    )


def missing_key_error(conn_id: str) -> GistConfigError:
    from airflow_provider_gist.errors import GistConfigError

    return GistConfigError(f"connection {conn_id!r} has no API key: put it in the password field")


def is_missing_connection(err: BaseException) -> bool:
    """Whether ``err`` says "no such connection" (the SDK's and the secrets backends' names)."""
    return type(err).__name__ in ("AirflowNotFoundException", "ConnectionNotFound")
