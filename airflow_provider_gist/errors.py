"""Typed exceptions of the provider.

None of them ever holds the API key: they are built from the response status, the
TwelveLabs error ``code``/``message`` and our own text, never from request headers.
All derive from :class:`airflow.sdk.exceptions.AirflowException` so Airflow reports
them as task failures, and from :class:`GistError` so callers can catch ours alone.
"""

from __future__ import annotations

from airflow.sdk.exceptions import AirflowException, AirflowFailException


class GistError(AirflowException):
    """Base class of every error raised by this provider."""


class GistValidationError(GistError, AirflowFailException, ValueError):
    """Bad input caught before any HTTP call (malformed id, unknown gist type, ...).

    An ``AirflowFailException``: the same input fails the same way, so Airflow does not retry.
    """


class GistConfigError(GistError, AirflowFailException):
    """The connection or configuration is unusable (missing connection, missing API key). Not retried."""


class GistApiError(GistError):
    """The TwelveLabs API answered with an error.

    ``status`` is the HTTP status (``None`` when no response came back), ``code`` and
    ``message`` come from either of the API's error-body shapes, ``retry_after`` is the
    server's hint in seconds when it gave one.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        code: str | None = None,
        method: str | None = None,
        path: str | None = None,
        retry_after: float | None = None,
    ) -> None:
        self.status = status
        self.code = code
        self.api_message = message
        self.method = method
        self.path = path
        self.retry_after = retry_after
        super().__init__(self._render())

    def _render(self) -> str:
        where = f"{self.method} {self.path}" if self.method and self.path else "TwelveLabs API"
        status = f"HTTP {self.status}" if self.status is not None else "no response"
        code = f" [{self.code}]" if self.code else ""
        return f"{where} failed: {status}{code}: {self.api_message}"

    def __reduce__(self):  # keep keyword-only args across pickling (multiprocessing, retries)
        return (
            _rebuild_api_error,
            (type(self), self.api_message, self.status, self.code, self.method, self.path, self.retry_after),
        )


def _rebuild_api_error(cls, message, status, code, method, path, retry_after):
    return cls(message, status=status, code=code, method=method, path=path, retry_after=retry_after)


class GistAuthError(GistApiError, AirflowFailException):
    """401/403: the API key is missing, invalid, revoked or not allowed. Never retried, by us or Airflow."""


class GistNotFoundError(GistApiError):
    """404 (or 400 ``resource_not_exist``): the index, asset or video does not exist."""


class GistRateLimitedError(GistApiError):
    """429 after the retry budget was spent."""


class GistTransientError(GistApiError):
    """5xx, connection error or read timeout after the retry budget was spent."""


class GistModelOutputError(GistError):
    """The model's answer could not be turned into a gist (truncated, not JSON, wrong shape)."""

    def __init__(self, message: str, *, finish_reason: str | None = None, generation_id: str | None = None):
        self.finish_reason = finish_reason
        self.generation_id = generation_id
        super().__init__(message)

    def __reduce__(self):
        return (_rebuild_model_error, (type(self), self.args[0], self.finish_reason, self.generation_id))


def _rebuild_model_error(cls, message, finish_reason, generation_id):
    return cls(message, finish_reason=finish_reason, generation_id=generation_id)


class GistTimeoutError(GistError):
    """A wait (asset processing, indexing) passed its deadline."""
