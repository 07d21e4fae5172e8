"""Gist.from_dict: the gist dict contract the stores enforce before writing anything."""

from __future__ import annotations

import pytest

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.model import Gist
from airflow_provider_gist.storage.base import normalize_gists
from tests.helpers.storage_samples import make_gist


def normalize_gist(gist: object, position: int = 0) -> dict:
    """The clean copy a store writes: validated by the model, never rewritten."""
    return Gist.from_dict(gist, position).to_dict()


def test_valid_gist_comes_back_unchanged() -> None:
    gist = make_gist()
    assert normalize_gist(gist) == gist


def test_unknown_keys_dropped_and_types_canonical() -> None:
    gist = make_gist(types=["hashtag", "title", "topic"], extra_key="x")
    out = normalize_gist(gist)
    assert out["types"] == ["title", "topic", "hashtag"]
    assert "extra_key" not in out


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"video_ref": "../etc"}, "video_ref"),
        ({"video_ref": 123}, "video_ref"),
        ({"index_id": "a/b"}, "index_id"),
        ({"video_ref_type": "file"}, "video_ref_type"),
        ({"types": ["title", "summary"]}, "summary"),
        ({"types": []}, "types"),
        ({"types": "title"}, "types must be a list"),
        ({"id": ""}, "id must be"),
        ({"model": None}, "model must be"),
        ({"usage": {"output_tokens": -1}}, "output_tokens"),
        ({"usage": {"output_tokens": True, "input_tokens": None}}, "output_tokens"),
        ({"usage": {"output_tokens": 1, "input_tokens": "9"}}, "input_tokens"),
        ({"generated_at": "yesterday"}, "generated_at"),
        ({"generated_at": None}, "generated_at"),
        ({"source_updated_at": 5}, "source_updated_at"),
        ({"topics": "Fishing"}, "topics must be a list"),
        ({"hashtags": ["ok", 3]}, "hashtags must be a list"),
        ({"title": ["x"]}, "title must be a string"),
        ({"types": ["title"]}, "topics is set but 'topic' is not in types"),
    ],
)
def test_invalid_gists_name_the_problem(change: dict, message: str) -> None:
    with pytest.raises(GistValidationError, match=message):
        normalize_gist(make_gist(**change), 3)


def test_missing_keys_listed() -> None:
    gist = make_gist()
    del gist["model"], gist["usage"]
    with pytest.raises(
        GistValidationError, match=r"gist #0 \(video_ref '6298d673f1090f1100476d4c'\).*model, usage"
    ):
        normalize_gist(gist)


def test_not_a_dict() -> None:
    with pytest.raises(GistValidationError, match="expected a gist dict, got str"):
        normalize_gists(["not a gist"])


def test_duplicates_collapse_to_last() -> None:
    out = normalize_gists([make_gist("a", title="1"), make_gist("b"), make_gist("a", title="2")])
    assert [(g["video_ref"], g.get("title")) for g in out] == [("a", "2"), ("b", "Sunrise Harbour Fishing")]
