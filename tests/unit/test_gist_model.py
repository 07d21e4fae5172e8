from __future__ import annotations

import json

import pytest

from airflow_provider_gist import analysis as a
from airflow_provider_gist import model as g
from airflow_provider_gist.errors import GistModelOutputError, GistValidationError
from airflow_provider_gist.model import GistType

UNSUPPORTED_KEYWORDS = {"maxItems", "minLength", "maxLength", "uniqueItems", "additionalProperties"}


def _keywords(node: object) -> set[str]:
    if isinstance(node, dict):
        return set(node) | {k for v in node.values() for k in _keywords(v)}
    if isinstance(node, list):
        return {k for v in node for k in _keywords(v)}
    return set()


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (None, g.ALL_TYPES),
        (["hashtag", "title"], (GistType.TITLE, GistType.HASHTAG)),
        ("topic", (GistType.TOPIC,)),
        ("title, Topic", (GistType.TITLE, GistType.TOPIC)),
        (("title", "title"), (GistType.TITLE,)),
    ],
)
def test_parse_types_accepts_and_orders(value, expected):
    assert g.parse_types(value) == expected


@pytest.mark.parametrize(
    ("value", "needle"),
    [(["titel"], "'titel'"), ([], "at least one"), ("", "at least one"), ([3], "3"), ({"title": 1}, "list")],
)
def test_parse_types_rejects_with_field_name(value, needle):
    with pytest.raises(GistValidationError, match="types") as err:
        g.parse_types(value)
    assert needle in str(err.value)


@pytest.mark.parametrize("types", [(GistType.TITLE,), (GistType.TOPIC, GistType.HASHTAG), g.ALL_TYPES])
def test_schema_has_only_requested_properties_and_accepted_keywords(types):
    schema = a.build_json_schema(types)
    assert list(schema["properties"]) == [g.FIELD_OF[t] for t in types]
    assert schema["required"] == list(schema["properties"])
    assert not (_keywords(schema) & UNSUPPORTED_KEYWORDS)


def test_prompt_defines_only_requested_types():
    prompt = a.build_prompt((GistType.TITLE, GistType.HASHTAG))
    assert "`title`" in prompt and "`hashtags`" in prompt
    assert "`topics`" not in prompt
    assert "JSON" in prompt


def test_normalise_labels_trims_strips_hash_dedupes_keeping_order():
    raw = ["  #Fishing ", "fishing", "", "#", "Harbour  Life", None, "#harbour life", "Boats"]
    assert g.normalize_labels(raw) == ("Fishing", "Harbour Life", "Boats")
    assert g.normalize_labels(raw, hashtag=True) == ("Fishing", "HarbourLife", "Boats")
    assert g.normalize_labels(["a", "b", "c"], limit=2) == ("a", "b")


def _answer(data: object, finish_reason: str = "stop") -> dict:
    text = data if isinstance(data, str) else json.dumps(data)
    return {"id": "gen-1", "data": text, "finish_reason": finish_reason, "usage": {"output_tokens": 42}}


def _gist(answer: dict, types=g.ALL_TYPES):
    decoded = a.decode_analyze_data(answer, video_ref="a1")
    out, inp = a.usage_of(answer)
    return g.gist_from_answer(
        decoded,
        types=types,
        video_ref="a1",
        video_ref_type="asset_id",
        model="pegasus1.2",
        generation_id="gen-1",
        output_tokens=out,
        input_tokens=inp,
    )


def test_gist_to_dict_has_exactly_requested_parts_and_is_json_safe():
    answer = _answer({"title": ' "Dawn at the Harbour" ', "topics": ["Fishing", "fishing", "Boats"]})
    gist = _gist(answer, types=(GistType.TITLE, GistType.TOPIC))
    out = gist.to_dict()
    assert out["title"] == "Dawn at the Harbour"
    assert out["topics"] == ["Fishing", "Boats"]
    assert "hashtags" not in out
    assert out["usage"] == {"output_tokens": 42, "input_tokens": None}
    assert out["types"] == ["title", "topic"]
    assert json.loads(json.dumps(out)) == out
    assert len(json.dumps(out)) < 1000


def test_gist_is_immutable():
    gist = _gist(_answer({"title": "x", "topics": ["a"], "hashtags": ["#b"]}))
    with pytest.raises(AttributeError):
        gist.title = "changed"  # type: ignore[misc]


def test_counts_are_capped_as_the_prompt_asks():
    gist = _gist(
        _answer(
            {"title": "t", "topics": [f"t{i}" for i in range(9)], "hashtags": [f"#h{i}" for i in range(20)]}
        )
    )
    assert len(gist.topics or ()) == g.MAX_TOPICS
    assert len(gist.hashtags or ()) == g.MAX_HASHTAGS


@pytest.mark.parametrize(
    ("answer", "needle"),
    [
        (_answer('{"title": "cut off', finish_reason="length"), "cut off"),
        (_answer("Sure! Here is your JSON"), "not valid JSON"),
        (_answer("[1, 2]"), "not an object"),
        (_answer({"title": "x", "topics": ["a"]}), "'hashtags' is missing"),
        (_answer({"title": 3, "topics": ["a"], "hashtags": ["b"]}), "'title'"),
        (_answer({"title": "x", "topics": "a, b", "hashtags": ["b"]}), "'topics' is missing or not a list"),
        (_answer({"title": "x", "topics": ["", "#"], "hashtags": ["b"]}), "no usable entries"),
    ],
)
def test_bad_model_output_is_a_typed_error(answer, needle):
    with pytest.raises(GistModelOutputError, match="a1") as err:
        _gist(answer)
    assert needle in str(err.value)


def test_model_and_token_validation_names_the_field():
    with pytest.raises(GistValidationError, match=r"model_name 'pegasus1\.5' does not accept video_id"):
        a.validate_model("pegasus1.5", legacy_video_id=True)
    with pytest.raises(GistValidationError, match=r"model_name 'marengo3\.0' is not an analysis model"):
        a.validate_model("marengo3.0", legacy_video_id=False)
    assert a.validate_model("pegasus1.5", legacy_video_id=False) == "pegasus1.5"
    with pytest.raises(GistValidationError, match="max_tokens must be an integer from 512"):
        a.validate_max_tokens(100, "pegasus1.5")
    with pytest.raises(GistValidationError, match="temperature"):
        a.validate_temperature(1.5)


def test_control_characters_never_survive_normalisation():
    gist = _gist(
        _answer({"title": "Dawn\x00 at\nthe\tHarbour", "topics": ["A\x07B"], "hashtags": ["#x\x00y"]})
    )
    assert gist.title == "Dawn at the Harbour"
    assert gist.topics == ("A B",) and gist.hashtags == ("xy",)


def test_emoji_sequences_and_joiners_survive_while_invisible_tricks_do_not():
    family = "\U0001f468\u200d\U0001f469\u200d\U0001f467"  # one emoji held together by ZWJ
    persian = "\u0645\u06cc\u200c\u062e\u0648\u0627\u0647\u0645"  # needs the zero-width non-joiner
    gist = _gist(_answer({"title": f"{family} {persian} a\u200bb\u202e", "topics": ["x"], "hashtags": ["y"]}))
    assert gist.title == f"{family} {persian} a b"
