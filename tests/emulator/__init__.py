"""Shared helpers for the emulator tests: a thin ``requests`` wrapper that checks every exchange
against the OpenAPI spec, and a generator to run an emulator for a module-scoped fixture."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import requests

from airflow_provider_gist.emulator import EmulatorServer, start_emulator
from tests.contract.openapi import validate_request, validate_response, validate_stream_events

FAST = {"asset_ready_seconds": 0.2, "indexing_seconds": 0.3}
# New indexes are for search: Marengo. (Pegasus 1.2 alone no longer accepts videos; analysis
# needs no index at all.)
MARENGO = [{"model_name": "marengo3.0", "model_options": ["visual", "audio"]}]
PEGASUS = [{"model_name": "pegasus1.2", "model_options": ["visual", "audio"]}]
MARENGO_AND_PEGASUS = [*MARENGO, *PEGASUS]


class Api:
    """Talks to one emulator over real HTTP and checks both sides against the spec.

    ``spec=False`` skips the request check (for deliberately invalid requests); ``raw=True``
    skips the response check (HTML pages, truncated JSON, routes the API does not have).
    """

    def __init__(self, server: EmulatorServer) -> None:
        self.server = server
        self.session = requests.Session()
        self.key = server.api_key

    def call(
        self,
        method: str,
        path: str,
        *,
        json_body: Any = None,
        form: dict[str, str] | None = None,
        files: dict[str, Any] | None = None,
        params: dict[str, Any] | None = None,
        key: str | None = "default",
        version: str = "v1.3",
        spec: bool = True,
        raw: bool = False,
        timeout: float = 10.0,
        headers: dict[str, str] | None = None,
        **kwargs: Any,
    ) -> requests.Response:
        url = f"{self.server.url}/{version}{path}"
        headers = dict(headers or {})
        if key is not None:
            headers["x-api-key"] = self.key if key == "default" else key
        multipart = None
        if form is not None or files is not None:
            multipart = {**{k: (None, v) for k, v in (form or {}).items()}, **(files or {})}
            if spec:
                validate_request(method, url, form=form or {}, files=files)
        if spec and json_body is not None:
            validate_request(method, url, json=json_body)
        if spec and params:
            validate_request(method, url, query=params)
        response = self.session.request(
            method,
            url,
            json=json_body,
            files=multipart,
            params=params,
            headers=headers,
            timeout=timeout,
            **kwargs,
        )
        if not raw:
            self.check(method, url, response)
        return response

    @staticmethod
    def check(method: str, url: str, response: requests.Response) -> None:
        content_type = response.headers.get("Content-Type", "")
        if response.status_code == 200 and content_type.startswith("application/x-ndjson"):
            validate_stream_events(method, url, ndjson(response))
        elif response.status_code == 200 and content_type.startswith("application/jsonl"):
            # Batch results: JSON Lines, each line one BatchResultItem (the spec declares the
            # schema of one line as the 200 body).
            for line in response.text.splitlines():
                if line.strip():
                    validate_response(method, url, 200, line)
        else:
            validate_response(method, url, response.status_code, response.content)

    def get(self, path: str, **kw: Any) -> requests.Response:
        return self.call("GET", path, **kw)

    def post(self, path: str, body: Any = None, **kw: Any) -> requests.Response:
        return self.call("POST", path, json_body=body, **kw)

    def control(self, method: str, path: str, body: Any = None) -> Any:
        response = self.session.request(method, f"{self.server.url}/_emulator{path}", json=body, timeout=10)
        assert response.status_code == 200, response.text
        return response.json()

    # small conveniences ---------------------------------------------------------------------
    def create_index(self, name: str, models: list[dict[str, Any]] | None = None) -> str:
        response = self.post("/indexes", {"index_name": name, "models": models or MARENGO})
        assert response.status_code == 201, response.text
        return str(response.json()["_id"])

    def create_url_asset(self, url: str, **form: str) -> dict[str, Any]:
        response = self.call("POST", "/assets", form={"method": "url", "url": url, **form})
        assert response.status_code == 201, response.text
        body: dict[str, Any] = response.json()
        return body

    def ready_asset(self, name: str, **form: str) -> str:
        """A URL asset, made ``ready`` by jumping the clock past ``asset_ready_seconds``."""
        asset = self.create_url_asset(f"https://x.invalid/{name}", **form)
        self.advance(self.server.config.asset_ready_seconds + 0.05)
        return str(asset["_id"])

    def put_chunk(self, url: str, data: bytes) -> requests.Response:
        """A raw PUT to a presigned chunk URL, without the API key (like S3)."""
        return self.session.put(url, data=data, timeout=10)

    def multipart_upload(
        self, filename: str, data: bytes, *, report_batch: int = 10, **create: Any
    ) -> dict[str, Any]:
        """The whole multipart flow: create, PUT every chunk (asking for more URLs as needed),
        report in batches. Returns the create response plus ``last_report``."""
        response = self.post(
            "/assets/multipart-uploads",
            {"filename": filename, "type": "video", "total_size": len(data), **create},
        )
        assert response.status_code == 201, response.text
        session: dict[str, Any] = response.json()
        upload_id, size = session["upload_id"], session["chunk_size"]
        urls = {u["chunk_index"]: u["url"] for u in session["upload_urls"]}
        done: list[dict[str, Any]] = []
        last: dict[str, Any] = {}
        for index in range(1, session["total_chunks"] + 1):
            if index not in urls:
                count = min(50, session["total_chunks"] - index + 1)
                more = self.post(
                    f"/assets/multipart-uploads/{upload_id}/presigned-urls", {"start": index, "count": count}
                )
                assert more.status_code == 200, more.text
                urls.update({u["chunk_index"]: u["url"] for u in more.json()["upload_urls"]})
            chunk = data[(index - 1) * size : index * size]
            put = self.put_chunk(urls[index], chunk)
            assert put.status_code == 200, put.text
            done.append(
                {
                    "chunk_index": index,
                    "proof": put.headers["ETag"],
                    "proof_type": "etag",
                    "chunk_size": len(chunk),
                }
            )
            if len(done) == report_batch or index == session["total_chunks"]:
                reported = self.post(f"/assets/multipart-uploads/{upload_id}", {"completed_chunks": done})
                assert reported.status_code == 200, reported.text
                last, done = reported.json(), []
        return {**session, "last_report": last}

    def advance(self, seconds: float) -> None:
        """Jump the emulator's clock instead of sleeping."""
        self.control("POST", "/clock", {"advance": seconds})

    def seed(self, index_name: str, count: int, **extra: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.control(
            "POST", "/seed", {"index_name": index_name, "count": count, **extra}
        )
        return result


def ndjson(response: requests.Response) -> list[dict[str, Any]]:
    return [json.loads(line) for line in response.text.splitlines() if line.strip()]


def running_api(**config: Any) -> Iterator[Api]:
    """Body of a fixture: an emulator on a free 127.0.0.1 port with fast timings."""
    server = start_emulator(**{**FAST, **config})
    try:
        yield Api(server)
    finally:
        server.stop()
