"""Multipart uploads: a file of any ``ObjectStoragePath`` to an asset, in chunks, resumable.

The API's flow (``/assets/multipart-uploads``): create a session for ``total_size`` bytes (the
server chooses ``chunk_size``), ``PUT`` each chunk's bytes to its presigned URL (single-use,
one hour), report the uploaded chunks with their ETags, and the report that completes the set
creates the asset whose id the session reserved. :class:`MultipartUploader` does this:

* **No local copy, bounded memory.** The file is opened once with ``path.open("rb")`` (local,
  S3, GCS... through Airflow's object storage) and read chunk by chunk with ``seek`` in the
  calling thread, into at most ``concurrency + 1`` reusable buffers of ``chunk_size`` bytes; a
  small thread pool PUTs them. So memory is about ``(concurrency + 1) x chunk_size``, whatever
  the file's size, and reading the next chunk overlaps the PUTs of the others.
* **Chunk PUTs are not API calls.** They go to a storage host, through :class:`ChunkSender`: a
  plain ``requests`` session that never carries the API key, reads no ``.netrc``, follows no
  redirect, and has timeouts. A failed PUT is sent again with a fresh URL (URLs are single-use,
  and one whose PUT failed half-way may be spent), with backoff, a bounded number of times.
* **Resumable.** The session (upload id, reserved asset id, chunk size) is saved in the task's
  state store before the first PUT, and the reported chunks after each report. A retry of the
  task reads the session's status from the API, trusts it over the state store (a kill can
  fall between a report and its save), and sends only the chunks not reported yet. A session
  that expired (24 hours) or failed is replaced by a new one. All API calls are made from the
  calling thread; the pool threads only PUT.

Airflow-free apart from the ``ObjectStoragePath`` it reads (anything with ``open("rb")``).
"""

from __future__ import annotations

import math
import random
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import datetime
from typing import IO, Any, Protocol
from urllib.parse import urlsplit

from airflow_provider_gist.errors import GistApiError, GistError, GistNotFoundError, GistTimeoutError
from airflow_provider_gist.ingest.chunk_put import ChunkPutError, ChunkSender
from airflow_provider_gist.ingest.durable import STATE_KEY_MULTIPART, StateStore, status_of
from airflow_provider_gist.ingest.sources import DEFAULT_UPLOAD_CONCURRENCY

#: The API signs at most 50 URLs per presigned-urls call.
MAX_URLS_PER_CALL = 50
#: Chunks per report call ("report chunks in batches", as the API asks); also how much a kill
#: can cost: chunks uploaded but not yet reported are sent again by the retry.
REPORT_BATCH = 10
#: A URL this close to its expiry is renewed before use rather than risk a 403 mid-PUT.
URL_MARGIN_SECONDS = 120.0
#: Attempts per chunk PUT (the first included); each retry gets a fresh URL and a backoff.
PUT_ATTEMPTS = 5
PUT_BACKOFF = 1.0
PUT_MAX_BACKOFF = 20.0
#: Bounded wait for the session to say ``completed`` after the last report, and for the asset
#: to be readable after that (both are immediate on the emulator; the API may lag).
COMPLETE_TIMEOUT = 120.0
COMPLETE_POLL = 1.0


class MultipartApi(Protocol):
    """The API calls the uploader makes (:class:`~airflow_provider_gist.hooks.gist.GistHook` has them)."""

    def create_multipart_upload(
        self,
        filename: str,
        total_size: int,
        *,
        file_type: str = ...,
        user_metadata: Mapping[str, Any] | None,
        enable_thumbnail: bool = ...,
    ) -> dict[str, Any]: ...
    def get_multipart_upload(self, upload_id: str, *, page: int = ..., page_limit: int = ...) -> Any: ...
    def iter_multipart_upload_chunks(self, upload_id: str) -> Iterable[dict[str, Any]]: ...
    def report_multipart_chunks(
        self, upload_id: str, completed_chunks: Sequence[Mapping[str, Any]]
    ) -> Any: ...
    def get_multipart_presigned_urls(self, upload_id: str, start: int, count: int) -> Any: ...
    def get_asset(self, asset_id: str) -> dict[str, Any]: ...
    def update_asset_user_metadata(self, asset_id: str, user_metadata: Mapping[str, Any]) -> None: ...


class SessionGone(GistError):
    """The upload session expired or failed: the upload must start again in a new session."""


@dataclass
class UploadStats:
    """What one :meth:`MultipartUploader.upload` did (logged, and read by tests and the bench)."""

    upload_id: str = ""
    total_chunks: int = 0
    chunk_size: int = 0
    chunks_sent: int = 0
    chunks_skipped: int = 0
    bytes_sent: int = 0
    put_retries: int = 0
    url_calls: int = 0
    report_calls: int = 0
    sessions_created: int = 0
    #: chunk buffers allocated (the memory bound: at most ``concurrency + 1``)
    buffers: int = 0
    #: most PUTs in flight at once
    max_in_flight: int = 0


@dataclass
class _Session:
    upload_id: str
    asset_id: str
    total_size: int
    chunk_size: int
    total_chunks: int
    headers: dict[str, str] = field(default_factory=dict)
    reported: set[int] = field(default_factory=set)
    urls: dict[int, tuple[str, float | None]] = field(default_factory=dict)

    def size_of(self, index: int) -> int:
        if index < self.total_chunks:
            return self.chunk_size
        return self.total_size - self.chunk_size * (self.total_chunks - 1)


@dataclass
class _Chunk:
    index: int
    buffer: bytearray
    view: memoryview
    attempts: int = 0


class MultipartUploader:
    """Upload one file through a multipart session; resume the session a previous try started.

    :param api: the API calls (a ``GistHook``).
    :param store: the task's state store (``ingest.durable.StateStore``); the session and its
        reported chunks are kept under ``STATE_KEY_MULTIPART``. Without one, a retry within the
        same ``execute()`` still resumes (the state is also kept here), a task retry starts over.
    :param concurrency: chunk PUTs in flight at once; ``concurrency + 1`` buffers at most.
    """

    def __init__(
        self,
        api: MultipartApi,
        store: StateStore,
        log: Any,
        *,
        concurrency: int = DEFAULT_UPLOAD_CONCURRENCY,
        sender: ChunkSender | None = None,
        report_batch: int = REPORT_BATCH,
        put_attempts: int = PUT_ATTEMPTS,
        complete_timeout: float = COMPLETE_TIMEOUT,
        sleep: Callable[[float], Any] = time.sleep,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.api = api
        self.store = store
        self.log = log
        self.concurrency = max(1, int(concurrency))
        self._own_sender = sender is None
        self.sender = sender or ChunkSender(pool_size=self.concurrency)
        self.report_batch = max(1, int(report_batch))
        self.put_attempts = max(1, int(put_attempts))
        self.complete_timeout = complete_timeout
        self._sleep = sleep
        self._clock = clock
        self._memory: dict[str, Any] | None = None  # the state, when the store cannot keep it
        self.stats = UploadStats()

    # ------------------------------------------------------------------ the whole upload

    def upload(
        self,
        path: Any,
        *,
        size: int,
        filename: str,
        user_metadata: Mapping[str, Any],
        ingest_key: str,
        file_type: str = "video",
        enable_thumbnail: bool = False,
    ) -> dict[str, Any]:
        """Upload ``path`` (``size`` bytes); return the asset as ``GET /assets/{id}`` answers it."""
        try:
            for attempt in (1, 2):
                session = self._open_session(
                    size, filename, user_metadata, ingest_key, file_type, enable_thumbnail
                )
                try:
                    if len(session.reported) < session.total_chunks:
                        self._send_all(path, session, ingest_key)
                    return self._finish(session, user_metadata)
                except SessionGone as gone:
                    if attempt == 2:
                        raise
                    # A session lives 24 hours: only an upload that long (or a retry that late)
                    # meets this. Its chunks cannot move to another session: start over.
                    self.log.warning("%s; starting the upload again in a new session", gone)
                    self._save(None)
            raise AssertionError("unreachable: the second attempt returns or raises")
        finally:
            if self._own_sender:
                self.sender.close()

    # ------------------------------------------------------------------ session: resume or create

    def _open_session(
        self,
        size: int,
        filename: str,
        user_metadata: Mapping[str, Any],
        key: str,
        file_type: str,
        enable_thumbnail: bool = False,
    ) -> _Session:
        saved = self._load()
        if saved and saved.get("ingest_key") == key and saved.get("total_size") == size:
            session = self._resume(saved)
            if session is not None:
                return session
        elif saved:
            self.log.warning("stored upload %s was for other inputs; not resuming it", saved.get("upload_id"))
        body = self.api.create_multipart_upload(
            filename,
            size,
            file_type=file_type,
            user_metadata=user_metadata,
            enable_thumbnail=enable_thumbnail,
        )
        session = _session_from_create(body, size)
        session.urls.update(_urls_of(body))
        self.stats.sessions_created += 1
        # Saved before the first PUT: a retry resumes this session instead of starting another.
        self._save(session, key)
        self.log.info(
            "multipart upload %s for asset %s: %d chunks of %d bytes",
            session.upload_id,
            session.asset_id,
            session.total_chunks,
            session.chunk_size,
        )
        self._note(session)
        return session

    def _resume(self, saved: dict[str, Any]) -> _Session | None:
        session = _session_from_state(saved)
        if session is None:
            return None
        try:
            status = self.api.get_multipart_upload(session.upload_id, page=1) or {}
        except GistNotFoundError:
            self.log.warning("upload session %s no longer exists; starting a new one", session.upload_id)
            return None
        state = status.get("status")
        if state == "completed":
            try:
                asset = self.api.get_asset(session.asset_id)
            except GistNotFoundError:
                asset = {}
            if status_of(asset) == "failed":
                # The caller wants a fresh asset (the durable create replaces failed ones).
                self.log.warning(
                    "asset %s of upload %s failed; uploading again", session.asset_id, session.upload_id
                )
                return None
            session.reported = set(range(1, session.total_chunks + 1))
            self._note(session)
            return session
        if state != "active":
            self.log.warning("upload session %s is %s; starting a new one", session.upload_id, state)
            return None
        chunks = status.get("uploaded_chunks") or []
        server = {c.get("index") for c in chunks if c.get("status") == "completed"}
        if status.get("chunks_completed") != len(session.reported) or not server <= session.reported:
            # The state store is behind the API (a kill between a report and its save): the
            # API's own list of completed chunks is the truth.
            server = {
                c.get("index")
                for c in self.api.iter_multipart_upload_chunks(session.upload_id)
                if c.get("status") == "completed"
            }
            session.reported = {i for i in server if isinstance(i, int)}
        self.log.info(
            "resuming multipart upload %s: %d of %d chunks already reported, not sending them again",
            session.upload_id,
            len(session.reported),
            session.total_chunks,
        )
        self._note(session)
        self.stats.chunks_skipped = len(session.reported)
        return session

    def _note(self, session: _Session) -> None:
        self.stats.upload_id = session.upload_id
        self.stats.total_chunks = session.total_chunks
        self.stats.chunk_size = session.chunk_size

    # ------------------------------------------------------------------ chunks: read, PUT, report

    def _send_all(self, path: Any, session: _Session, key: str) -> None:
        todo = deque(i for i in range(1, session.total_chunks + 1) if i not in session.reported)
        retries: deque[_Chunk] = deque()
        in_flight: dict[Future[str], _Chunk] = {}
        free: list[bytearray] = []
        done: list[dict[str, Any]] = []
        cap = self.concurrency + 1  # one chunk read ahead while every worker sends
        pool = ThreadPoolExecutor(max_workers=self.concurrency, thread_name_prefix="gist-chunk-put")
        try:
            with _open(path, session.chunk_size) as handle:
                while todo or retries or in_flight:
                    while retries and len(in_flight) < cap:
                        chunk = retries.popleft()
                        url = self._url(session, chunk.index, renew=True)
                        delay = min(PUT_MAX_BACKOFF, PUT_BACKOFF * 2 ** (chunk.attempts - 1))
                        in_flight[pool.submit(self._put, url, session.headers, chunk, delay)] = chunk
                    while todo and len(in_flight) + len(retries) < cap:
                        index = todo.popleft()
                        buffer = free.pop() if free else self._new_buffer(session.chunk_size)
                        view = _read_chunk(handle, session, index, buffer)
                        chunk = _Chunk(index, buffer, view)
                        url = self._url(session, index)
                        in_flight[pool.submit(self._put, url, session.headers, chunk, 0.0)] = chunk
                    self.stats.max_in_flight = max(self.stats.max_in_flight, len(in_flight))
                    finished, _ = wait(in_flight, return_when=FIRST_COMPLETED)
                    for future in finished:
                        chunk = in_flight.pop(future)
                        try:
                            etag = future.result()
                        except ChunkPutError as err:
                            self._failed_put(chunk, err)
                            retries.append(chunk)  # keeps its buffer: nothing is read twice
                            continue
                        free.append(chunk.buffer)
                        self.stats.chunks_sent += 1
                        self.stats.bytes_sent += len(chunk.view)
                        done.append(_completed(chunk, etag))
                    while len(done) >= self.report_batch or (done and not (todo or retries or in_flight)):
                        self._report(session, done[: self.report_batch], key)
                        done = done[self.report_batch :]
        except Exception as failure:
            # What was uploaded is still worth reporting: the retry then skips it. PUTs already
            # running finish (each is bounded by its timeouts); the ones still queued are dropped.
            pool.shutdown(wait=True, cancel_futures=True)
            for future, chunk in in_flight.items():
                if future.done() and not future.cancelled() and future.exception() is None:
                    done.append(_completed(chunk, future.result()))
            if done and not isinstance(failure, SessionGone):
                try:
                    self._report(session, done, key)
                except Exception as err:
                    self.log.warning("could not report %d uploaded chunks: %s", len(done), err)
            raise
        finally:
            # After a kill (not an Exception) the running PUTs are not waited for: stop now.
            pool.shutdown(wait=False, cancel_futures=True)

    def _failed_put(self, chunk: _Chunk, err: ChunkPutError) -> None:
        chunk.attempts += 1
        if err.session_gone:
            raise SessionGone(f"the storage no longer knows this upload ({err})")
        if not err.retryable or chunk.attempts >= self.put_attempts:
            raise GistApiError(
                f"chunk {chunk.index} could not be uploaded after {chunk.attempts} attempt(s): {err}",
                status=err.status,
            )
        self.stats.put_retries += 1
        self.log.warning("chunk %d: %s; sending it again with a fresh URL", chunk.index, err)

    def _put(self, url: str, headers: Mapping[str, str], chunk: _Chunk, delay: float) -> str:
        if delay > 0:
            self._sleep(delay * (1 - 0.25 * random.random()))  # jitter: chunks do not retry in step
        return self.sender.put(url, headers, chunk.view)

    def _new_buffer(self, size: int) -> bytearray:
        self.stats.buffers += 1
        return bytearray(size)

    def _url(self, session: _Session, index: int, *, renew: bool = False) -> str:
        """A URL for chunk ``index``, used once: fresh if renewing, expired, close to it or missing."""
        cached = session.urls.pop(index, None)
        now = self._clock()
        if renew or cached is None or (cached[1] is not None and cached[1] - URL_MARGIN_SECONDS <= now):
            # Sign the run of chunks still to send from here (one call per 50), or just this
            # one when a PUT failed: its neighbours' URLs are still good.
            count = 1
            if not renew:
                while (
                    count < MAX_URLS_PER_CALL
                    and index + count <= session.total_chunks
                    and index + count not in session.reported
                ):
                    count += 1
            body = self.api.get_multipart_presigned_urls(session.upload_id, index, count) or {}
            self.stats.url_calls += 1
            session.urls.update(_urls_of(body))
            cached = session.urls.pop(index, None)
            if cached is None:
                raise GistApiError(f"the API gave no presigned URL for chunk {index}")
        return cached[0]

    def _report(self, session: _Session, chunks: list[dict[str, Any]], key: str) -> None:
        answer = self.api.report_multipart_chunks(session.upload_id, chunks) or {}
        self.stats.report_calls += 1
        session.reported.update(int(c["chunk_index"]) for c in chunks)
        self._save(session, key)
        self.log.info(
            "upload %s: %d of %d chunks reported (%d bytes sent by this try)",
            session.upload_id,
            answer.get("total_completed", len(session.reported)),
            session.total_chunks,
            self.stats.bytes_sent,
        )

    # ------------------------------------------------------------------ completion

    def _finish(self, session: _Session, user_metadata: Mapping[str, Any]) -> dict[str, Any]:
        deadline = self._clock() + self.complete_timeout
        # The API: "after you report chunk completion, call this method to confirm the upload
        # session reached the completed status".
        while True:
            status = self.api.get_multipart_upload(session.upload_id, page=1, page_limit=1) or {}
            state = status.get("status")
            if state == "completed":
                break
            if state in ("failed", "expired"):
                raise SessionGone(f"upload session {session.upload_id} is {state}")
            if self._clock() >= deadline:
                raise GistTimeoutError(
                    f"upload session {session.upload_id} is still {state!r} {self.complete_timeout:g}s after "
                    "its last chunk was reported; a retry of the task resumes it"
                )
            self._sleep(COMPLETE_POLL)
        asset = self._asset(session.asset_id, deadline)
        self._ensure_metadata(asset, session.asset_id, user_metadata)
        return asset

    def _asset(self, asset_id: str, deadline: float) -> dict[str, Any]:
        while True:
            try:
                return {**self.api.get_asset(asset_id), "_id": asset_id}
            except GistNotFoundError:
                if self._clock() >= deadline:
                    raise
                self._sleep(COMPLETE_POLL)

    def _ensure_metadata(
        self, asset: dict[str, Any], asset_id: str, user_metadata: Mapping[str, Any]
    ) -> None:
        # The session carried user_metadata (ingest key included), which the asset should have.
        # Should an API drop it, the retry's ingest-key lookup could not find this asset: merge
        # the missing keys in through PATCH /assets/{id}/user-metadata.
        current = asset.get("user_metadata") or {}
        missing = {k: v for k, v in user_metadata.items() if current.get(k) != v}
        if missing:
            self.log.info("asset %s lacks %s in its user_metadata; adding them", asset_id, sorted(missing))
            self.api.update_asset_user_metadata(asset_id, missing)
            asset["user_metadata"] = {**current, **missing}

    # ------------------------------------------------------------------ state

    def _load(self) -> dict[str, Any] | None:
        saved = self.store.get(STATE_KEY_MULTIPART)
        return saved if saved is not None else self._memory

    def _save(self, session: _Session | None, key: str = "") -> None:
        value: dict[str, Any] = {}
        if session is not None:
            value = {
                "upload_id": session.upload_id,
                "asset_id": session.asset_id,
                "ingest_key": key,
                "total_size": session.total_size,
                "chunk_size": session.chunk_size,
                "total_chunks": session.total_chunks,
                "upload_headers": session.headers,
                "reported": _ranges(session.reported),
            }
        self._memory = value or None
        self.store.set(STATE_KEY_MULTIPART, value)


# ---------------------------------------------------------------------- helpers


def _session_from_create(body: Any, size: int) -> _Session:
    try:
        session = _Session(
            upload_id=str(body["upload_id"]),
            asset_id=str(body["asset_id"]),
            total_size=size,
            chunk_size=int(body["chunk_size"]),
            total_chunks=int(body["total_chunks"]),
            headers={str(k): str(v) for k, v in (body.get("upload_headers") or {}).items()},
        )
    except (KeyError, TypeError, ValueError) as err:
        raise GistApiError(f"the multipart upload session answer lacks {err}") from None
    if session.chunk_size < 1 or session.total_chunks != math.ceil(size / session.chunk_size):
        raise GistApiError(
            f"the multipart upload session has {session.total_chunks} chunks of {session.chunk_size} "
            f"bytes, which does not fit a file of {size} bytes"
        )
    return session


def _session_from_state(saved: Mapping[str, Any]) -> _Session | None:
    try:
        return _Session(
            upload_id=str(saved["upload_id"]),
            asset_id=str(saved["asset_id"]),
            total_size=int(saved["total_size"]),
            chunk_size=int(saved["chunk_size"]),
            total_chunks=int(saved["total_chunks"]),
            headers=dict(saved.get("upload_headers") or {}),
            reported=_unranges(saved.get("reported") or []),
        )
    except (KeyError, TypeError, ValueError):
        return None


def _urls_of(body: Any) -> dict[int, tuple[str, float | None]]:
    urls: dict[int, tuple[str, float | None]] = {}
    for item in (body or {}).get("upload_urls") or []:
        url, index = item.get("url"), item.get("chunk_index")
        if not isinstance(url, str) or not isinstance(index, int):
            continue
        if urlsplit(url).scheme not in ("http", "https"):
            raise GistApiError(f"the API gave chunk {index} a URL that is not http(s)")
        urls[index] = (url, _epoch(item.get("expires_at")))
    return urls


def _epoch(value: Any) -> float | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00")).timestamp()
    except ValueError:
        return None  # unknown expiry: a 403 will tell, and the URL is renewed then


def _open(path: Any, chunk_size: int) -> IO[bytes]:
    """``path.open("rb")`` without fsspec's read-ahead cache where the storage has one.

    Remote filesystems cache ahead by default (s3fs: 50 MiB blocks), memory beyond our chunk
    buffers; our reads are whole chunks already, each one ranged request. Filesystems that do
    not take these options (local files ignore them) are opened plainly.
    """
    try:
        return path.open("rb", block_size=chunk_size, cache_type="none")
    except TypeError:
        return path.open("rb")


def _read_chunk(handle: IO[bytes], session: _Session, index: int, buffer: bytearray) -> memoryview:
    """Chunk ``index`` of the file, read into ``buffer`` (no other copy kept)."""
    size = session.size_of(index)
    view = memoryview(buffer)[:size]
    handle.seek((index - 1) * session.chunk_size)
    got = 0
    readinto = getattr(handle, "readinto", None)
    while got < size:
        if readinto is not None:
            n = readinto(view[got:])
        else:  # a file object without readinto: one transient copy per read
            data = handle.read(size - got)
            n = len(data)
            view[got : got + n] = data
        if not n:
            raise GistError(
                f"the file ended {session.total_size - (index - 1) * session.chunk_size - got} bytes early "
                f"(chunk {index}): it changed during the upload"
            )
        got += n
    return view


def _completed(chunk: _Chunk, etag: str) -> dict[str, Any]:
    return {"chunk_index": chunk.index, "proof": etag, "proof_type": "etag", "chunk_size": len(chunk.view)}


def _ranges(indexes: Iterable[int]) -> list[list[int]]:
    """``{1, 2, 3, 7}`` as ``[[1, 3], [7, 7]]``: small in the state store even for 10,000 chunks."""
    out: list[list[int]] = []
    for i in sorted(indexes):
        if out and i == out[-1][1] + 1:
            out[-1][1] = i
        else:
            out.append([i, i])
    return out


def _unranges(ranges: Iterable[Any]) -> set[int]:
    return {i for lo, hi in ranges for i in range(int(lo), int(hi) + 1)}
