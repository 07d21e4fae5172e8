"""ObjectGistStore specifics: layout, default base, key escapes, atomic publish, secrets in URLs."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from airflow.sdk import ObjectStoragePath

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.storage import ObjectGistStore
from tests.helpers.storage_samples import make_gist

ESCAPES = [
    "..",
    "../x",
    "../../etc/passwd",
    "a/b",
    "/abs",
    "x%2F..",
    ".hidden",
    "a\\b",
    "a b",
    "ü",
    "x\n",
    "~",
]


@pytest.fixture
def base(tmp_path: Path) -> Path:
    return tmp_path / "objects"


@pytest.fixture
def store(base: Path) -> ObjectGistStore:
    return ObjectGistStore(f"file://{base}/")


def _files(root: Path) -> list[str]:
    return sorted(str(p.relative_to(root)) for p in root.rglob("*") if p.is_file())


def test_layout_one_document_per_video(base: Path) -> None:
    store = ObjectGistStore(f"file://{base}/", dag_id="gist_manual")
    store.put_many([make_gist("vid1", "idx1"), make_gist("vid2", None)])
    assert _files(base) == ["_no_index/vid2.json", "idx1/vid1.json"]
    doc = json.loads((base / "idx1" / "vid1.json").read_text(encoding="utf-8"))
    assert {k: v for k, v in doc.items() if k not in ("stored_at", "dag_id")} == make_gist("vid1", "idx1")
    assert doc["stored_at"].endswith("+00:00")
    assert doc["dag_id"] == "gist_manual"  # who may read it in the gist view


def test_default_base_under_airflow_home(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path))
    store = ObjectGistStore()
    assert store.location == f"file://{tmp_path}/gists"
    store.put_many([make_gist("vid1", "idx1")])
    assert (tmp_path / "gists" / "idx1" / "vid1.json").is_file()


def test_utf8_document_not_escaped(store: ObjectGistStore, base: Path) -> None:
    store.put_many([make_gist("vid1", None, title="Fishing 🎣 at the Café")])
    raw = (base / "_no_index" / "vid1.json").read_bytes()
    assert "Fishing 🎣 at the Café".encode() in raw


@pytest.mark.parametrize("bad", ESCAPES)
@pytest.mark.parametrize("field", ["video_ref", "index_id"])
def test_key_escape_attempts_refused(store: ObjectGistStore, tmp_path: Path, field: str, bad: str) -> None:
    gist = make_gist(**{field: bad})
    with pytest.raises(GistValidationError, match=field):
        store.put_many([make_gist("fine"), gist])
    assert _files(tmp_path) == []  # nothing written anywhere, not even the valid gist
    with pytest.raises(GistValidationError):
        store.get(bad if field == "index_id" else "idx1", bad if field == "video_ref" else "vid1")


def test_no_index_folder_cannot_be_an_index_id(store: ObjectGistStore) -> None:
    with pytest.raises(GistValidationError):
        store.put_many([make_gist(index_id="_no_index")])


def test_temp_keys_are_ignored_and_cleaned(store: ObjectGistStore, base: Path) -> None:
    store.put_many([make_gist("vid1", "idx1")])
    stray = base / "idx1" / ".vid2.json.deadbeef.tmp"  # a writer that crashed mid-write
    stray.write_text("{half a docu")
    assert store.count() == 1
    assert [g["video_ref"] for g in store.list_gists()] == ["vid1"]
    assert set(store.fingerprints("idx1")) == {"vid1"}
    store.put_many([make_gist("vid1", "idx1", title="again")])
    assert sorted(p.name for p in (base / "idx1").iterdir()) == [".vid2.json.deadbeef.tmp", "vid1.json"]


def test_publish_falls_back_to_direct_write_without_move(
    store: ObjectGistStore, base: Path, monkeypatch
) -> None:
    def no_move(self, *args, **kwargs):
        raise NotImplementedError("this filesystem cannot move")

    monkeypatch.setattr(ObjectStoragePath, "move", no_move)
    store.put_many([make_gist("vid1", "idx1", title="direct")])
    assert _files(base) == ["idx1/vid1.json"]
    got = store.get("idx1", "vid1")
    assert got is not None
    assert got["title"] == "direct"


def test_location_never_shows_a_password() -> None:
    store = ObjectGistStore("s3://my_conn:topsecret@bucket/prefix/")
    assert "topsecret" not in store.location
    assert store.location == "s3://my_conn@bucket/prefix"


def test_constructor_does_no_io(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("AIRFLOW_HOME", str(tmp_path / "never"))
    ObjectGistStore()
    assert not (tmp_path / "never").exists()


def test_compare_and_publish_are_one_step_for_concurrent_writers(base: Path, monkeypatch) -> None:
    """Two writers of one video at once: the newer gist is what stays, whoever moves last.

    Each writer reads the stored document, then is held up before it publishes. Without a lock
    over compare-and-move, the writer of the older gist (which started second and finishes last)
    would see no document, and its move would put the older gist in place.
    """
    import threading
    import time

    real_read = ObjectGistStore._read

    def slow_read(path):  # the window between the compare and the move
        document = real_read(path)
        time.sleep(0.5)
        return document

    monkeypatch.setattr(ObjectGistStore, "_read", staticmethod(slow_read))
    newer = make_gist("vid1", "idx1", title="Newer", generated_at="2026-11-28T00:00:00+00:00")
    older = make_gist("vid1", "idx1", title="Older", generated_at="2026-11-27T00:00:00+00:00")
    results: dict[str, int] = {}

    def write(name: str, gist: dict, delay: float) -> None:
        time.sleep(delay)
        results[name] = ObjectGistStore(f"file://{base}/").put_many([gist])

    threads = [
        threading.Thread(target=write, args=("newer", newer, 0.0)),
        threading.Thread(target=write, args=("older", older, 0.2)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    assert results == {"newer": 1, "older": 0}
    doc = json.loads((base / "idx1" / "vid1.json").read_text(encoding="utf-8"))
    assert doc["title"] == "Newer"
    assert _files(base) == ["idx1/vid1.json"]  # the older writer's staged copy is gone
