"""Multipart upload sessions (``/assets/multipart-uploads``) and their presigned chunk URLs.

The chunk bytes themselves are never kept: a chunk PUT is counted and hashed (MD5, the S3 part
ETag) while it streams in, and only ``(size, etag)`` per chunk is remembered, so a 10 GB upload
costs a few bytes of memory per chunk.

Presigned URLs point at the emulator itself (``http://127.0.0.1:<port>/_uploads/...``), carry
an expiry and an HMAC signature, need no API key (like S3) and are single-use, as the docs say.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import random
from collections import Counter
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from .state import ApiError, State, check_metadata, invalid, missing, rfc3339

GIB = 1024**3
MIB = 1024**2
UPLOAD_TYPES = ("video", "audio", "image")
# Spec: video and audio up to 10 GB, images up to 32 MB (binary units, as the older docs' 4 GiB cap).
MAX_TOTAL_SIZE = {"video": 10 * GIB, "audio": 10 * GIB, "image": 32 * MIB}
TOO_LARGE_CODE = {
    "video": "video_filesize_too_large",
    "audio": "audio_filesize_too_large",
    "image": "media_filesize_too_large",
}
MAX_PARTS = 10_000  # S3's cap; the chunk size grows so that no upload needs more
MAX_URLS_PER_REQUEST = 50  # spec: at most 50 URLs per presigned-urls call
CREATE_FIELDS = {"filename", "type", "total_size", "enable_hls", "enable_thumbnail", "user_metadata"}
CHUNK_PATH = "/_uploads"


@dataclass
class UploadSettings:
    chunk_size: int = 5 * MIB
    initial_urls: int = 10
    url_seconds: float = 3600.0  # presigned URLs expire after one hour
    session_seconds: float = 86400.0  # upload sessions expire after 24 hours


@dataclass
class ChunkRecord:
    size: int
    etag: str
    at: float


@dataclass
class UploadSession:
    id: str
    asset_id: str
    filename: str
    type: str
    total_size: int
    chunk_size: int
    total_chunks: int
    created_at: float
    expires_at: float
    enable_hls: bool
    enable_thumbnail: bool
    user_metadata: dict[str, Any] | None
    seq: int
    updated_at: float = 0.0
    uploaded: dict[int, ChunkRecord] = field(default_factory=dict)  # last good PUT per chunk
    reported: dict[int, ChunkRecord] = field(default_factory=dict)  # accepted reports
    completed_at: float | None = None
    puts: Counter[int] = field(default_factory=Counter)  # every chunk PUT that stored bytes
    reports: Counter[int] = field(default_factory=Counter)  # every appearance in a report
    used_tokens: set[str] = field(default_factory=set)

    def status(self, now: float) -> str:
        if self.completed_at is not None:
            return "completed"
        return "expired" if now >= self.expires_at else "active"

    def expected_size(self, index: int) -> int:
        if index < self.total_chunks:
            return self.chunk_size
        return self.total_size - self.chunk_size * (self.total_chunks - 1)

    def counters(self) -> dict[str, Any]:
        return {
            "upload_id": self.id,
            "asset_id": self.asset_id,
            "filename": self.filename,
            "total_size": self.total_size,
            "chunk_size": self.chunk_size,
            "total_chunks": self.total_chunks,
            "chunks_completed": len(self.reported),
            "completed": self.completed_at is not None,
            "chunk_puts": {str(k): v for k, v in sorted(self.puts.items())},
            "chunk_reports": {str(k): v for k, v in sorted(self.reports.items())},
        }


class ChunkRejected(Exception):
    """An S3-style refusal of a chunk PUT (status, S3 error code, message)."""

    def __init__(self, status: int, code: str, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message


def _int_field(body: dict[str, Any], name: str) -> int:
    if name not in body:
        raise missing(name)
    value = body[name]
    if isinstance(value, bool) or not isinstance(value, int):
        raise invalid(f"The {name} parameter must be an integer.")
    return value


class UploadStore:
    def __init__(self, state: State, settings: UploadSettings, seed: int) -> None:
        self.state = state
        self.settings = settings
        self.sessions: dict[str, UploadSession] = {}
        self._seed = seed
        self._rng = random.Random(f"uploads:{seed}")
        self._secret = self._rng.getrandbits(256).to_bytes(32, "big")
        self.chunk_puts = 0
        self.chunk_reports = 0

    def reset(self) -> None:
        self.sessions.clear()
        self._rng = random.Random(f"uploads:{self._seed}")
        self._secret = self._rng.getrandbits(256).to_bytes(32, "big")
        self.chunk_puts = 0
        self.chunk_reports = 0

    def get(self, upload_id: str) -> UploadSession:
        session = self.sessions.get(upload_id)
        if session is None:
            raise ApiError(400, "resource_not_exist", f"The upload session {upload_id!r} does not exist.")
        return session

    def _active(self, upload_id: str) -> UploadSession:
        session = self.get(upload_id)
        status = session.status(self.state.now())
        if status == "expired":
            raise ApiError(
                400, "upload_expired", f"The upload session {upload_id!r} expired; create a new one."
            )
        return session

    # presigned URLs ---------------------------------------------------------------------
    def _sign(self, upload_id: str, index: int, expires: int, nonce: str) -> str:
        message = f"{upload_id}:{index}:{expires}:{nonce}".encode()
        return hmac.new(self._secret, message, hashlib.sha256).hexdigest()

    def presign(self, session: UploadSession, index: int, origin: str) -> dict[str, Any]:
        now = self.state.now()
        expires = math.floor(min(now + self.settings.url_seconds, session.expires_at))
        nonce = f"{self._rng.getrandbits(64):016x}"
        query = urlencode(
            {
                "X-Amz-Expires": expires,
                "X-Amz-Nonce": nonce,
                "X-Amz-Signature": self._sign(session.id, index, expires, nonce),
            }
        )
        return {
            "chunk_index": index,
            "url": f"{origin}{CHUNK_PATH}/{session.id}/{index}?{query}",
            "expires_at": rfc3339(expires),
        }

    def authorize_put(
        self, upload_id: str, index_text: str, query: dict[str, str]
    ) -> tuple[UploadSession, int, str]:
        """Check a chunk PUT's URL like S3 would; returns the session, chunk index and URL token."""
        try:
            index = int(index_text)
            expires = int(query["X-Amz-Expires"])
            nonce, signature = query["X-Amz-Nonce"], query["X-Amz-Signature"]
        except (KeyError, ValueError) as exc:
            raise ChunkRejected(403, "AccessDenied", "The URL is not a presigned chunk URL.") from exc
        if not hmac.compare_digest(signature, self._sign(upload_id, index, expires, nonce)):
            raise ChunkRejected(403, "SignatureDoesNotMatch", "The request signature does not match.")
        if self.state.now() >= expires:
            raise ChunkRejected(403, "AccessDenied", "Request has expired.")
        session = self.sessions.get(upload_id)
        if session is None or session.status(self.state.now()) != "active":
            raise ChunkRejected(404, "NoSuchUpload", "The upload does not exist, expired or was completed.")
        if signature in session.used_tokens:
            raise ChunkRejected(403, "AccessDenied", "This presigned URL has already been used.")
        return session, index, signature

    def record_put(self, session: UploadSession, index: int, token: str, size: int, etag: str) -> None:
        now = self.state.now()
        session.used_tokens.add(token)
        session.uploaded[index] = ChunkRecord(size, etag, now)
        session.puts[index] += 1
        session.updated_at = now
        self.chunk_puts += 1

    # API operations ---------------------------------------------------------------------
    def create(self, body: Any, origin: str) -> dict[str, Any]:
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        unknown = sorted(set(body) - CREATE_FIELDS)
        if unknown:
            raise ApiError(400, "parameter_unknown", f"Unknown parameter(s): {', '.join(unknown)}.")
        filename = body.get("filename")
        if filename is None:
            raise missing("filename")
        if not isinstance(filename, str) or not 1 <= len(filename) <= 255:
            raise invalid("The filename parameter must be a string of 1 to 255 characters.")
        kind = body.get("type")
        if kind is None:
            raise missing("type")
        if kind not in UPLOAD_TYPES:
            raise invalid(f"The type parameter must be one of {list(UPLOAD_TYPES)}.")
        total_size = _int_field(body, "total_size")
        if total_size < 1:
            raise invalid("The total_size parameter must be at least 1.")
        if total_size > MAX_TOTAL_SIZE[kind]:
            raise ApiError(
                400,
                TOO_LARGE_CODE[kind],
                f"The file is {total_size} bytes; multipart uploads of {kind} files take up to "
                f"{MAX_TOTAL_SIZE[kind]} bytes.",
            )
        flags = {}
        for name in ("enable_hls", "enable_thumbnail"):
            value = body.get(name, False)
            if not isinstance(value, bool):
                raise invalid(f"The {name} parameter must be a boolean.")
            flags[name] = value
        metadata = body.get("user_metadata")
        if metadata is not None:
            metadata = dict(check_metadata(metadata, allow_null=False))
        chunk_size = max(self.settings.chunk_size, math.ceil(total_size / MAX_PARTS))
        now = self.state.now()
        session = UploadSession(
            id=self.state.new_id(),
            asset_id=self.state.new_id(),
            filename=filename,
            type=kind,
            total_size=total_size,
            chunk_size=chunk_size,
            total_chunks=math.ceil(total_size / chunk_size),
            created_at=now,
            expires_at=now + self.settings.session_seconds,
            enable_hls=flags["enable_hls"],
            enable_thumbnail=flags["enable_thumbnail"],
            user_metadata=metadata,
            seq=self.state.next_seq(),
            updated_at=now,
        )
        self.sessions[session.id] = session
        first = min(session.total_chunks, self.settings.initial_urls)
        return {
            "upload_id": session.id,
            "asset_id": session.asset_id,
            "upload_urls": [self.presign(session, i, origin) for i in range(1, first + 1)],
            "upload_headers": {},
            "chunk_size": session.chunk_size,
            "total_chunks": session.total_chunks,
            "expires_at": rfc3339(session.expires_at),
        }

    def presigned_urls(self, upload_id: str, body: Any, origin: str) -> dict[str, Any]:
        session = self._active(upload_id)
        if session.completed_at is not None:
            raise invalid(f"The upload session {upload_id!r} is already completed.")
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        start, count = _int_field(body, "start"), _int_field(body, "count")
        if not 1 <= start <= session.total_chunks:
            raise invalid(f"start must be between 1 and {session.total_chunks} (chunks are numbered from 1).")
        if not 1 <= count <= MAX_URLS_PER_REQUEST:
            raise invalid(f"count must be between 1 and {MAX_URLS_PER_REQUEST}.")
        if start + count - 1 > session.total_chunks:
            raise invalid(f"The upload has {session.total_chunks} chunks; start + count - 1 exceeds that.")
        urls = [self.presign(session, i, origin) for i in range(start, start + count)]
        now = self.state.now()
        return {
            "upload_id": session.id,
            "start_index": start,
            "count": count,
            "upload_urls": urls,
            "generated_at": rfc3339(now),
            "expires_at": urls[0]["expires_at"],
        }

    def report(self, upload_id: str, body: Any, asset_ready_seconds: float) -> dict[str, Any]:
        session = self._active(upload_id)
        if not isinstance(body, dict):
            raise invalid("The request body must be a JSON object.")
        if "completed_chunks" not in body:
            raise missing("completed_chunks")
        chunks = body["completed_chunks"]
        if not isinstance(chunks, list) or not chunks:
            raise invalid("completed_chunks must be a non-empty array.")
        accepted: list[tuple[int, ChunkRecord]] = []
        duplicates = 0
        seen: set[int] = set()
        for n, item in enumerate(chunks):
            where = f"completed_chunks[{n}]"
            if not isinstance(item, dict):
                raise invalid(f"{where} must be an object.")
            for name in ("chunk_index", "proof", "proof_type", "chunk_size"):
                if name not in item:
                    raise missing(f"{where}.{name}")
            index, proof, size = item["chunk_index"], item["proof"], item["chunk_size"]
            if (
                isinstance(index, bool)
                or not isinstance(index, int)
                or not 1 <= index <= session.total_chunks
            ):
                raise invalid(f"{where}.chunk_index must be between 1 and {session.total_chunks}.")
            if item["proof_type"] != "etag":
                raise invalid(f"{where}.proof_type must be 'etag'.")
            if not isinstance(proof, str) or isinstance(size, bool) or not isinstance(size, int):
                raise invalid(f"{where} needs a string proof and an integer chunk_size.")
            if index in session.reported or index in seen:
                duplicates += 1
                continue
            uploaded = session.uploaded.get(index)
            if uploaded is None:
                raise invalid(f"Chunk {index} has not been uploaded to its presigned URL.")
            if proof.strip('"') != uploaded.etag:
                raise invalid(f"The proof of chunk {index} does not match the ETag of the uploaded chunk.")
            if size != uploaded.size:
                raise invalid(
                    f"chunk_size of chunk {index} is {size}, but {uploaded.size} bytes were uploaded."
                )
            if uploaded.size != session.expected_size(index):
                raise invalid(
                    f"Chunk {index} has {uploaded.size} bytes; it must have {session.expected_size(index)} "
                    f"(chunk_size {session.chunk_size}, the last chunk the remainder)."
                )
            seen.add(index)
            accepted.append((index, uploaded))
        now = self.state.now()
        for item in chunks:
            session.reports[item["chunk_index"]] += 1
        self.chunk_reports += len(chunks)
        for index, uploaded in accepted:
            session.reported[index] = ChunkRecord(uploaded.size, uploaded.etag, now)
        session.updated_at = now
        out: dict[str, Any] = {
            "asset_id": session.asset_id,
            "processed_chunks": len(accepted),
            "duplicate_chunks": duplicates,
            "total_completed": len(session.reported),
        }
        if len(session.reported) == session.total_chunks:
            if session.completed_at is None:
                session.completed_at = now
                self.state.create_asset(
                    method="multipart",
                    source=session.filename,
                    filename=session.filename,
                    size=session.total_size,
                    user_metadata=session.user_metadata,
                    enable_hls=session.enable_hls,
                    enable_thumbnail=session.enable_thumbnail,
                    ready_in=asset_ready_seconds,
                    asset_id=session.asset_id,
                )
            out["url"] = f"https://emulator.invalid/assets/{session.asset_id}/{session.filename}"
        return out

    def status(self, upload_id: str, page: int, limit: int) -> dict[str, Any]:
        session = self.get(upload_id)
        start = (page - 1) * limit
        chunks = []
        for index in range(start + 1, min(start + limit, session.total_chunks) + 1):
            record = session.reported.get(index)
            info: dict[str, Any] = {"index": index, "status": "completed" if record else "pending"}
            if record is not None:
                info["uploaded_at"] = rfc3339(record.at)
                info["updated_at"] = rfc3339(record.at)
            chunks.append(info)
        completed = len(session.reported)
        return {
            "upload_id": session.id,
            "status": session.status(self.state.now()),
            "uploaded_chunks": chunks,
            "chunks_completed": completed,
            "chunks_failed": 0,
            "chunks_pending": session.total_chunks - completed,
            "page_info": {
                "limit_per_page": limit,
                "page": page,
                "total_page": math.ceil(session.total_chunks / limit),
                "total_results": session.total_chunks,
            },
            "total_size": session.total_size,
            "uploaded_size": sum(r.size for r in session.reported.values()),
            "created_at": rfc3339(session.created_at),
            "updated_at": rfc3339(session.updated_at),
        }

    def incomplete(self) -> list[UploadSession]:
        items = [s for s in self.sessions.values() if s.completed_at is None]
        return sorted(items, key=lambda s: (s.created_at, s.seq), reverse=True)

    def summary_json(self, session: UploadSession) -> dict[str, Any]:
        return {
            "upload_id": session.id,
            "status": session.status(self.state.now()),
            "total_size": session.total_size,
            "chunk_size": session.chunk_size,
            "total_chunks": session.total_chunks,
            "created_at": rfc3339(session.created_at),
            "expires_at": rfc3339(session.expires_at),
        }
