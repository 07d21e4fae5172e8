"""aioresponses made to work with aiohttp 3.14 (shared by the async hook and trigger tests).

aioresponses 0.7.9 (the newest release) builds ``ClientResponse`` objects without the
``stream_writer`` argument that aiohttp 3.14 requires; this supplies a stand-in.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from types import SimpleNamespace
from unittest import mock

import aiohttp
from aioresponses import aioresponses
from aioresponses import core as aioresponses_core


class _CompatResponse(aiohttp.ClientResponse):
    def __init__(self, *args, **kwargs):
        kwargs.setdefault("stream_writer", SimpleNamespace(output_size=0))
        super().__init__(*args, **kwargs)


@contextmanager
def mock_aiohttp() -> Iterator[aioresponses]:
    with mock.patch.object(aioresponses_core, "ClientResponse", _CompatResponse), aioresponses() as mocked:
        yield mocked


def get_calls(mocked: aioresponses, url: str) -> list:
    """The recorded GET calls to ``url`` (query string included in the match)."""
    return [
        call
        for (method, u), calls in mocked.requests.items()
        if method == "GET" and str(u) == url
        for call in calls
    ]
