"""Gists as JSON documents under an :class:`~airflow.sdk.ObjectStoragePath` base (file, s3, gcs, ...).

Layout: ``<base>/<index_id or "_no_index">/<video_ref>.json``. Both ids pass
:func:`airflow_provider_gist.ids.validate_id` first, so a key can never leave the prefix
(``..``, ``/``, ``%2F`` and the like are refused); ``_no_index`` cannot be a real index id
because ids start with a letter or digit.

A document is replaced only by a newer gist (:func:`~airflow_provider_gist.storage.base.supersedes`).
On local disks the compare and the move happen under a lock on the base folder, so two writers cannot put an
older gist back; object stores (S3, GCS) have no such lock through fsspec, so there the compare
narrows the window to the move itself (docs/storage.md).
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import uuid
from collections.abc import Collection, Iterable, Iterator, Mapping
from typing import Any
from urllib.parse import urlsplit

from airflow.sdk import ObjectStoragePath

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.ids import validate_id, validate_optional_id
from airflow_provider_gist.storage.base import airflow_home as _airflow_home
from airflow_provider_gist.storage.base import (
    check_page,
    fingerprint,
    matches_text,
    normalize_gists,
    stored_at_now,
    supersedes,
)

NO_INDEX_DIR = "_no_index"
SUFFIX = ".json"
#: Temporary keys start with a dot (never a valid id) so readers can skip them.
_TMP_PREFIX = "."
_LOCAL_PROTOCOLS = ("file", "local")


def default_base() -> ObjectStoragePath:
    """``file://$AIRFLOW_HOME/gists/``, resolved at call time."""
    return ObjectStoragePath(f"file://{_airflow_home() / 'gists'}/")


def _safe_url(path: ObjectStoragePath) -> str:
    """``path`` as a URL with any password removed (``s3://conn_id@bucket/x`` keeps the conn id)."""
    conn_id = path.conn_id
    user = conn_id.split(":", 1)[0] if conn_id else ""
    text = f"{path.protocol}://{user + '@' if user else ''}{path.path}"
    # Belt and braces: never hand back userinfo with a colon in it.
    parts = urlsplit(text)
    if parts.password:
        text = text.replace(f":{parts.password}@", "@", 1)
    return text


class ObjectGistStore:
    """Gists as one JSON document per video under ``base`` (default ``file://$AIRFLOW_HOME/gists/``).

    Each document is the gist dict plus ``stored_at``, UTF-8, written atomically (temporary key in
    the same folder, then a move). ``put_many`` validates everything before writing and stages all
    documents before publishing any; reads (``list_gists``, ``fingerprints``, ``count``) scan keys.
    """

    def __init__(self, base: str | ObjectStoragePath | None = None, *, dag_id: str | None = None) -> None:
        self._base_arg = base
        self._base: ObjectStoragePath | None = None
        #: stamped on every document this store writes (who may read it in the gist view)
        self.dag_id = dag_id or None

    @property
    def base(self) -> ObjectStoragePath:
        """The root path (built on first use, so AIRFLOW_HOME is read when the store is used)."""
        if self._base is None:
            if self._base_arg is None:
                self._base = default_base()
            elif isinstance(self._base_arg, ObjectStoragePath):
                self._base = self._base_arg
            else:
                self._base = ObjectStoragePath(self._base_arg)
        return self._base

    @property
    def location(self) -> str:
        """The base URL, without any password."""
        return _safe_url(self.base)

    @property
    def _is_local(self) -> bool:
        return self.base.protocol in _LOCAL_PROTOCOLS

    def path_for(self, index_id: str | None, video_ref: str) -> ObjectStoragePath:
        """Key of one video's document; raises GistValidationError for ids that could escape."""
        folder = validate_optional_id(index_id, "index_id") or NO_INDEX_DIR
        return self.base / folder / f"{validate_id(video_ref, 'video_ref')}{SUFFIX}"

    # -- writes ----------------------------------------------------------------------------------

    def put_many(self, gists: Iterable[Mapping[str, Any]]) -> int:
        """Validate all gists, write each document atomically; return how many were written.

        Object stores have no multi-key transaction. What we guarantee: an invalid gist means
        nothing is written; every document is first staged under a temporary key, and only when
        all are staged are they moved into place, so a failure while staging publishes nothing.
        A failure during the (short) publish phase can leave some documents updated and others
        not; a rerun converges because each key is replaced whole. A document is replaced only
        by a newer gist (:func:`supersedes`); older or equal ones are dropped and not counted.
        """
        clean = normalize_gists(gists)
        if not clean:
            return 0
        stored_at = stored_at_now()
        staged: list[tuple[ObjectStoragePath, ObjectStoragePath, bytes, dict[str, Any]]] = []
        try:
            # key order, as the SQL store: the same order for every writer
            for gist in sorted(clean, key=lambda g: (g["index_id"] or "", g["video_ref"])):
                final = self.path_for(gist["index_id"], gist["video_ref"])
                document = {**gist, "stored_at": stored_at, "dag_id": self.dag_id}
                data = (json.dumps(document, ensure_ascii=False, indent=2) + "\n").encode()
                if self._is_local:
                    final.parent.mkdir(parents=True, exist_ok=True)
                tmp = final.parent / f"{_TMP_PREFIX}{final.name}.{uuid.uuid4().hex}.tmp"
                tmp.write_bytes(data)
                staged.append((tmp, final, data, gist))
        except BaseException:
            for tmp, _final, _data, _gist in staged:
                tmp.unlink(missing_ok=True)
            raise
        written = 0
        with self._publish_lock():
            for tmp, final, data, gist in staged:
                current = self._read(final)
                if current is not None and not supersedes(gist, current):
                    tmp.unlink(missing_ok=True)  # the stored gist is newer (or the same)
                    continue
                self._publish(tmp, final, data)
                written += 1
        return written

    @contextlib.contextmanager
    def _publish_lock(self) -> Iterator[None]:
        """An exclusive lock across processes for compare-and-move, on local disks only."""
        if not self._is_local:
            yield
            return
        self.base.mkdir(parents=True, exist_ok=True)
        # flock on the base directory itself: no lock file for readers to trip over
        fd = os.open(self.base.path, os.O_RDONLY)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    @staticmethod
    def _read(path: ObjectStoragePath) -> dict[str, Any] | None:
        try:
            document: dict[str, Any] = json.loads(path.read_bytes().decode("utf-8"))
        except FileNotFoundError:
            return None
        document.setdefault("dag_id", None)  # written before documents named their DAG
        return document

    def put(self, gist: Mapping[str, Any]) -> int:
        """Store one gist (see :meth:`put_many`)."""
        return self.put_many([gist])

    @staticmethod
    def _publish(tmp: ObjectStoragePath, final: ObjectStoragePath, data: bytes) -> None:
        # Local files: os.rename under the hood, atomic on POSIX (readers see old or new, never half).
        # S3/GCS: fsspec's move is a server-side copy plus delete; the copy creates the final
        # object in one step, so it is just as atomic for readers.
        try:
            tmp.move(final)
        except NotImplementedError:
            # Filesystems without move/copy: a single whole-object PUT is the best we can do;
            # object stores make a PUT visible all at once, so readers still never see half.
            final.write_bytes(data)
            tmp.unlink(missing_ok=True)

    # -- reads -----------------------------------------------------------------------------------

    def _keys(self, index_id: str | None, *, all_indexes: bool) -> Iterator[ObjectStoragePath]:
        if not self.base.exists():
            return
        if all_indexes:
            folders = [p for p in self.base.iterdir() if p.is_dir()]
        else:
            folder = self.base / (validate_optional_id(index_id, "index_id") or NO_INDEX_DIR)
            folders = [folder] if folder.exists() else []
        for folder in folders:
            for path in folder.iterdir():
                name = path.name
                if not name.startswith(_TMP_PREFIX) and name.endswith(SUFFIX):
                    yield path

    def _documents(self, index_id: str | None, *, all_indexes: bool) -> Iterator[dict[str, Any]]:
        for path in self._keys(index_id, all_indexes=all_indexes):
            document = self._read(path)
            if document is not None:  # removed between the listing and the read
                yield document

    def get(self, index_id: str | None, video_ref: str) -> dict[str, Any] | None:
        """The stored gist of one video in one index (``None`` = no index), or ``None``."""
        return self._read(self.path_for(index_id, video_ref))

    def list_gists(
        self,
        *,
        index_id: str | None = None,
        text: str | None = None,
        limit: int = 100,
        offset: int = 0,
        dag_ids: Collection[str | None] | None = None,
    ) -> list[dict[str, Any]]:
        """Stored gists, newest ``generated_at`` first (scans every document of the scope).

        ``index_id=None`` means all indexes; ``text`` is a case-insensitive substring of the title,
        a topic or a hashtag (``"#tag"`` searches hashtags only); ``dag_ids`` keeps only gists
        stored by those DAGs (``None`` in it: gists with no DAG).
        """
        check_page(limit, offset)
        docs = [
            doc
            for doc in self._documents(index_id, all_indexes=index_id is None)
            if (not text or matches_text(doc, text)) and (dag_ids is None or doc["dag_id"] in dag_ids)
        ]
        # Same order as the SQL store: generated_at desc, then the key ascending.
        docs.sort(key=lambda d: (d.get("index_id") or "", d["video_ref"]))
        docs.sort(key=lambda d: d["generated_at"], reverse=True)
        return docs[offset : offset + limit]

    def stored_dag_ids(self) -> set[str | None]:
        """The DAG ids that stored the gists (``None``: gists stored outside any DAG)."""
        return {doc["dag_id"] for doc in self._documents(None, all_indexes=True)}

    def fingerprints(
        self, index_id: str | None, video_refs: Collection[str] | None = None
    ) -> dict[str, dict[str, Any]]:
        """``{video_ref: {source_updated_at, types, model, prompt_version}}`` for one index.

        With ``video_refs`` only their documents are read (one GET each, no listing of the folder).
        """
        if video_refs is None:
            docs: Iterable[dict[str, Any] | None] = self._documents(index_id, all_indexes=False)
        else:
            docs = (self._read_ref(index_id, ref) for ref in dict.fromkeys(video_refs))
        return {doc["video_ref"]: fingerprint(doc) for doc in docs if doc is not None}

    def _read_ref(self, index_id: str | None, video_ref: str) -> dict[str, Any] | None:
        try:
            path = self.path_for(index_id, video_ref)
        except GistValidationError:
            return None  # no document can have a key like that
        return self._read(path)

    def count(self, index_id: str | None = None) -> int:
        """Number of stored gists in one index, or in all of them when ``index_id`` is ``None``."""
        return sum(1 for _ in self._keys(index_id, all_indexes=index_id is None))
