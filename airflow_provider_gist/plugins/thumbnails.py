"""Video thumbnails for the gist view: asked from the API when shown, a placeholder otherwise.

The API gives a thumbnail where one was made: ``GET /assets/{id}`` has
``thumbnail.representative_url`` for assets uploaded with ``enable_thumbnail``, and a legacy
video (``GET /indexes/{index}/videos/{id}``) has ``hls.thumbnail_urls`` when it was indexed
with streaming. These URLs are signed and expire (the API says within an hour), so they are not
stored with the gist: the view asks when a card is shown, keeps the answer for
:data:`CACHE_SECONDS`, and sends the browser there (``302``). Anything else (no thumbnail, the
API unreachable, no TwelveLabs connection on the API server, a URL that is not ``https``) gets
the placeholder, so a card never shows a broken image.

The API server uses the TwelveLabs connection ``[gist_view] twelvelabs_conn_id`` (default
``twelvelabs_default``) with a short retry budget (a page's images must not wait out a rate
limit); ``[gist_view] thumbnails = False`` turns lookups off (placeholders only).
"""

from __future__ import annotations

import logging
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: How long a looked-up thumbnail URL (or "none") is reused: well within the URLs' one hour.
CACHE_SECONDS = 600.0
#: Most thumbnails remembered (oldest forgotten first): bounded memory in a long-lived server.
CACHE_SIZE = 5000
#: Most characters of a thumbnail URL sent on (a signed URL is long; a megabyte is not a URL).
MAX_URL = 4096

#: The placeholder: a film frame, drawn inline (no external asset), same size as a thumbnail.
PLACEHOLDER_SVG = (
    '<svg xmlns="http://www.w3.org/2000/svg" width="160" height="90" viewBox="0 0 160 90">'
    '<rect width="160" height="90" rx="6" fill="#8c959f" fill-opacity="0.18"/>'
    '<rect x="58" y="27" width="44" height="36" rx="4" fill="none" stroke="#8c959f" stroke-width="3"/>'
    '<path d="M74 37 L88 45 L74 53 Z" fill="#8c959f"/>'
    "</svg>"
)


def usable_url(url: object) -> str | None:
    """``url`` if the browser may be sent there: ``https``, a real host, not absurdly long.

    Names under ``.invalid`` never resolve (RFC 6761; the emulator's thumbnails use it), so
    they get the placeholder instead of a broken image.
    """
    if not isinstance(url, str) or not url or len(url) > MAX_URL:
        return None
    try:
        parts = urlsplit(url)
    except ValueError:
        return None
    host = (parts.hostname or "").rstrip(".").lower()
    if parts.scheme != "https" or not host or host == "invalid" or host.endswith(".invalid"):
        return None
    return url


def thumbnail_from_api(hook: Any, gist: Mapping[str, Any]) -> str | None:
    """The thumbnail URL the API gives for a stored gist's video, as given, or ``None``
    (check it with :func:`usable_url` before sending a browser there)."""
    ref, kind, index_id = gist.get("video_ref"), gist.get("video_ref_type"), gist.get("index_id")
    if not isinstance(ref, str) or not ref:
        return None
    if kind == "asset_id":
        thumbnail = hook.get_asset(ref).get("thumbnail") or {}
        url = thumbnail.get("representative_url") if isinstance(thumbnail, Mapping) else None
        return url if isinstance(url, str) and thumbnail.get("status", "ready") == "ready" else None
    if kind == "video_id" and isinstance(index_id, str) and index_id:
        hls = hook.get_video(index_id, ref).get("hls") or {}
        urls = hls.get("thumbnail_urls") if isinstance(hls, Mapping) else None
        if isinstance(urls, list) and urls and isinstance(urls[0], str):
            return urls[0]
    return None


class ThumbnailCache:
    """Thumbnail URLs by video, each kept :data:`CACHE_SECONDS`; thread-safe, bounded.

    :param lookup: ``gist -> url | None``; may raise (logged once per video, then "none").
    """

    def __init__(
        self,
        lookup: Callable[[Mapping[str, Any]], str | None],
        *,
        ttl: float = CACHE_SECONDS,
        size: int = CACHE_SIZE,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._lookup = lookup
        self._ttl = ttl
        self._size = size
        self._clock = clock
        self._entries: OrderedDict[tuple[Any, ...], tuple[float, str | None]] = OrderedDict()
        self._lock = threading.Lock()

    def get(self, gist: Mapping[str, Any]) -> str | None:
        key = (gist.get("video_ref_type"), gist.get("video_ref"), gist.get("index_id"))
        now = self._clock()
        with self._lock:
            hit = self._entries.get(key)
            if hit is not None and hit[0] > now:
                return hit[1]
        try:
            url = self._lookup(gist)
        except Exception as err:
            # The reason (a typed error: never the API key) and no stack: an API hiccup is not news.
            log.warning("gist view: no thumbnail for %s %s (%s: %s)", key[0], key[1], type(err).__name__, err)
            url = None
        with self._lock:
            self._entries[key] = (now + self._ttl, url)
            self._entries.move_to_end(key)
            while len(self._entries) > self._size:
                self._entries.popitem(last=False)
        return url


def api_lookup(conn_id: str) -> Callable[[Mapping[str, Any]], str | None]:
    """A lookup through the TwelveLabs connection ``conn_id``: one short-budget hook per call
    (a ``requests`` session is not shared between the server's threads)."""

    def lookup(gist: Mapping[str, Any]) -> str | None:
        from airflow_provider_gist.client.retry import RetryPolicy
        from airflow_provider_gist.hooks.gist import GistHook

        hook = GistHook(twelvelabs_conn_id=conn_id, retry_policy=RetryPolicy(max_attempts=2, deadline=5.0))
        try:
            return usable_url(thumbnail_from_api(hook, gist))
        finally:
            hook.close()

    return lookup
