from __future__ import annotations

import pytest

from airflow_provider_gist.errors import GistValidationError
from airflow_provider_gist.ids import validate_filename, validate_id, validate_index_name, validate_video_url

BAD_IDS = ["", "../etc", "a/b", "a?b=1", "a#b", "a%2Fb", "vidéo", "a b", "x" * 65, "-leading", None, 123]


@pytest.mark.parametrize("value", BAD_IDS)
def test_bad_ids_are_refused_naming_the_field(value):
    with pytest.raises(GistValidationError, match="asset_id"):
        validate_id(value, "asset_id")


def test_real_ids_pass():
    assert validate_id("6298d673f1090f1100476d4c", "video_id") == "6298d673f1090f1100476d4c"
    assert validate_id("a_b-C9", "index_id") == "a_b-C9"


@pytest.mark.parametrize(
    "url",
    [
        "ftp://x/y.mp4",
        "file:///etc/passwd",
        "javascript:alert(1)",
        "//host/x",
        "http://",
        "https://host/a b.mp4",
        "",
    ],
)
def test_bad_urls_are_refused(url):
    with pytest.raises(GistValidationError, match="video_url"):
        validate_video_url(url)


def test_good_url_and_index_names():
    assert validate_video_url(" https://cdn.example.com/a.mp4 ") == "https://cdn.example.com/a.mp4"
    assert validate_index_name("  catalog 2026 ") == "catalog 2026"
    for bad in ("", "   ", "a\nb", "x" * 201):
        with pytest.raises(GistValidationError, match="index_name"):
            validate_index_name(bad)


@pytest.mark.parametrize(
    "name", ["", "  ", "../clip.mp4", "dir/clip.mp4", "dir\\clip.mp4", "..", "a\x00b", "x" * 201]
)
def test_bad_filenames_are_refused(name):
    with pytest.raises(GistValidationError, match="filename"):
        validate_filename(name)


def test_good_filename_is_stripped():
    assert validate_filename("  harbour dawn.mp4 ") == "harbour dawn.mp4"
