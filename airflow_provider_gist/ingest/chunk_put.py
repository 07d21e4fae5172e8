"""Chunk PUTs of multipart uploads: to presigned URLs on a storage host, never to the API.

:class:`ChunkSender` is the only code that talks to the storage host behind a multipart upload
(S3 for the real API, ``/_uploads`` on the emulator). It is not an API call: no API key, no
retry loop of the API client, no pacing. The presigned URL's query string is its signature, a
bearer credential for that chunk, so no message built here ever contains it.
"""

from __future__ import annotations

from collections.abc import Mapping
from urllib.parse import urlsplit

import requests

from airflow_provider_gist.errors import GistError
from airflow_provider_gist.ingest.sources import DEFAULT_UPLOAD_CONCURRENCY

#: (connect, read) seconds for one PUT: the read timeout is the wait for the storage's answer
#: once the chunk is sent (writes time out on the same socket timeout).
PUT_TIMEOUT = (10.0, 300.0)


class ChunkPutError(GistError):
    """A chunk PUT failed. ``session_gone``: the storage no longer knows the upload (404)."""

    def __init__(self, message: str, *, status: int | None = None, retryable: bool = True) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.session_gone = status == 404


class ChunkSender:
    """PUTs chunk bytes to presigned URLs: a storage host, not the API.

    A session of its own: no ``x-api-key`` (the hook's session has it, this one never does), and
    ``trust_env`` off, so no ``.netrc`` credentials are attached (an Authorization header would
    also break the URL's signature); proxies from the environment are still honoured. Redirects
    are never followed, so the chunk (and any header) never goes to a host the API did not sign.
    """

    def __init__(
        self,
        session: requests.Session | None = None,
        *,
        timeout: tuple[float, float] = PUT_TIMEOUT,
        pool_size: int = DEFAULT_UPLOAD_CONCURRENCY,
    ) -> None:
        if session is None:
            session = requests.Session()
            # One connection per concurrent PUT, kept alive from chunk to chunk.
            adapter = requests.adapters.HTTPAdapter(pool_connections=2, pool_maxsize=max(1, pool_size))
            session.mount("https://", adapter)
            session.mount("http://", adapter)
        self.session = session
        self.session.trust_env = False
        self.timeout = timeout

    def put(self, url: str, headers: Mapping[str, str], data: memoryview) -> str:
        """Send one chunk; return its ETag (quotes stripped). Raise :class:`ChunkPutError`."""
        where = _without_query(url)  # the query is the signature: a bearer credential
        try:
            response = self.session.put(
                url,
                # A memoryview is sent as is (one sendall, no copy); typeshed does not list it.
                data=data,  # type: ignore[arg-type]
                headers=dict(headers),
                timeout=self.timeout,
                allow_redirects=False,
                proxies=requests.utils.get_environ_proxies(url),
            )
        except requests.RequestException as err:
            # Never str(err): urllib3 puts the URL, signature included, in its messages.
            raise ChunkPutError(f"PUT {where} failed: {type(err).__name__}") from None
        with response:
            status = response.status_code
            if 200 <= status < 300:
                etag = (response.headers.get("ETag") or "").strip().strip('"')
                if not etag:
                    raise ChunkPutError(f"PUT {where} answered {status} without an ETag", status=status)
                return etag
            code = _s3_code(response.text) if status >= 400 else "redirect (not followed)"
            # 403: expired, spent or bad signature: a fresh URL helps. 404: the upload is gone.
            # Other 4xx (too large, bad part number) fail the same way again.
            retryable = status in (403, 408, 429) or status >= 500 or 300 <= status < 400
            raise ChunkPutError(
                f"PUT {where} answered HTTP {status} {code}", status=status, retryable=retryable
            )

    def close(self) -> None:
        self.session.close()


def _without_query(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}{parts.path}"


def _s3_code(text: str) -> str:
    """The ``<Code>`` of an S3-style XML error body, if any (never the body itself)."""
    start, end = text.find("<Code>"), text.find("</Code>")
    return text[start + 6 : end][:64] if 0 <= start < end else ""
