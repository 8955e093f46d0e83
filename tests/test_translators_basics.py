"""translators: error bodies, retry hints, same-format model replacement, model listings."""

from __future__ import annotations

import email.utils
import json
import os
import time

import pytest
from hypothesis import given
from hypothesis import strategies as st

from translators.errors import error_body, retry_hint
from translators.formats import Format
from translators.listing import (
    ListedModel,
    anthropic_models,
    gemini_model,
    gemini_models,
    openai_models,
)
from translators.passthrough import replace_model

# -- error_body ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (402, "billing_error"),
        (403, "permission_error"),
        (404, "not_found_error"),
        (413, "request_too_large"),
        (429, "rate_limit_error"),
        (500, "api_error"),
        (502, "api_error"),
        (503, "overloaded_error"),
        (504, "timeout_error"),
        (418, "api_error"),
    ],
)
def test_anthropic_error_body(status, error_type):
    body = json.loads(error_body(Format.ANTHROPIC, status, "no credential left"))
    assert body == {"type": "error", "error": {"type": error_type, "message": "no credential left"}}


@pytest.mark.parametrize(
    ("status", "google_status"),
    [
        (400, "INVALID_ARGUMENT"),
        (401, "UNAUTHENTICATED"),
        (403, "PERMISSION_DENIED"),
        (404, "NOT_FOUND"),
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (502, "UNAVAILABLE"),
        (503, "UNAVAILABLE"),
        (504, "DEADLINE_EXCEEDED"),
        (418, "UNKNOWN"),
    ],
)
def test_gemini_error_body(status, google_status):
    body = json.loads(error_body(Format.GEMINI, status, "quota"))
    assert body == {"error": {"code": status, "message": "quota", "status": google_status}}


@pytest.mark.parametrize(("retry_after", "delay"), [(30, "30s"), (12.4, "12s"), (0.6, "1s"), (-5, "0s")])
def test_gemini_error_body_carries_retry_info(retry_after, delay):
    body = json.loads(error_body(Format.GEMINI, 429, "quota", retry_after=retry_after))
    assert body["error"]["details"] == [
        {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay}
    ]


def test_gemini_retry_info_round_trips_through_retry_hint():
    assert retry_hint({}, error_body(Format.GEMINI, 429, "quota", retry_after=17)) == 17


@pytest.mark.parametrize("fmt", [Format.OPENAI_CHAT, Format.OPENAI_RESPONSES])
@pytest.mark.parametrize(
    ("status", "error_type"),
    [
        (400, "invalid_request_error"),
        (401, "authentication_error"),
        (403, "permission_error"),
        (404, "invalid_request_error"),
        (429, "rate_limit_error"),
        (500, "server_error"),
        (503, "server_error"),
        (504, "server_error"),
        (422, "invalid_request_error"),
    ],
)
def test_openai_error_body(fmt, status, error_type):
    body = json.loads(error_body(fmt, status, "bad"))
    assert body == {"error": {"message": "bad", "type": error_type, "param": None, "code": None}}


def test_openai_error_body_carries_the_code():
    body = json.loads(error_body(Format.OPENAI_CHAT, 404, "unknown model", code="model_not_found"))
    assert body["error"]["code"] == "model_not_found"


@pytest.mark.parametrize("fmt", list(Format))
def test_error_messages_with_quotes_and_unicode_stay_valid_json(fmt):
    message = 'model "café" \\ is not offered\n'
    assert json.loads(error_body(fmt, 404, message))["error"]["message"] == message


# -- retry_hint ---------------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "seconds"), [("30", 30.0), ("0", 0.0), ("1.5", 1.5)])
def test_retry_after_seconds(value, seconds):
    assert retry_hint({"retry-after": value}, b"") == seconds


def test_retry_after_http_date():
    when = email.utils.formatdate(time.time() + 120, usegmt=True)
    assert retry_hint({"retry-after": when}, b"") == pytest.approx(120, abs=2)


def test_retry_after_http_date_in_the_past_is_zero():
    assert retry_hint({"retry-after": "Wed, 21 Oct 2015 07:28:00 GMT"}, b"") == 0.0


def test_retry_after_ms():
    assert retry_hint({"retry-after-ms": "1500"}, b"") == 1.5


def test_retry_after_ms_is_preferred_to_retry_after():
    assert retry_hint({"retry-after-ms": "250", "retry-after": "1"}, b"") == 0.25


def test_bad_retry_after_ms_falls_back_to_retry_after():
    assert retry_hint({"retry-after-ms": "soon", "retry-after": "7"}, b"") == 7.0


def gemini_429(delay) -> bytes:
    return json.dumps(
        {
            "error": {
                "code": 429,
                "status": "RESOURCE_EXHAUSTED",
                "details": [
                    {"@type": "type.googleapis.com/google.rpc.QuotaFailure", "violations": []},
                    {"@type": "type.googleapis.com/google.rpc.RetryInfo", "retryDelay": delay},
                ],
            }
        }
    ).encode()


@pytest.mark.parametrize(("delay", "seconds"), [("41s", 41.0), ("1.5s", 1.5), ("0s", 0.0)])
def test_gemini_retry_info(delay, seconds):
    assert retry_hint({}, gemini_429(delay)) == seconds


def test_headers_win_over_the_body():
    assert retry_hint({"retry-after": "3"}, gemini_429("41s")) == 3.0


def test_codex_resets_in_seconds():
    body = json.dumps(
        {"error": {"type": "usage_limit_reached", "message": "limit", "resets_in_seconds": 3600}}
    ).encode()
    assert retry_hint({}, body) == 3600.0


@pytest.mark.parametrize(
    ("headers", "body"),
    [
        ({}, b""),
        ({"retry-after": "soon"}, b""),
        ({"retry-after": ""}, b""),
        ({"retry-after-ms": "x"}, b""),
        ({}, b"not json"),
        ({}, b"\xff\xfe\x00"),
        ({}, b"[1, 2]"),
        ({}, b'"error"'),
        ({}, b'{"error": "quota"}'),
        ({}, b'{"error": {"message": "no hint"}}'),
        ({}, b'{"error": {"resets_in_seconds": "60"}}'),
        ({}, gemini_429("30")),  # a Duration without its unit
        ({}, gemini_429("abcs")),
        ({}, gemini_429(30)),
        ({}, b'{"error": {"details": ["x", 1, null]}}'),
        ({}, gemini_429("30s") + b" " * 70_000),  # too large to parse
    ],
)
def test_no_usable_hint_is_none(headers, body):
    assert retry_hint(headers, body) is None


@pytest.mark.parametrize(
    "body",
    [
        b'{"error": {"details": [{"@type": 5}]}}',
        b'{"error": {"details": [{"@type": null}]}}',
        b'{"error": {"details": 5}}',
    ],
)
def test_malformed_error_details_give_no_hint(body):
    assert retry_hint({}, body) is None


@pytest.mark.parametrize(
    ("headers", "body"),
    [({"retry-after": "nan"}, b""), ({"retry-after-ms": "NaN"}, b""), ({}, gemini_429("nans"))],
)
def test_nan_is_not_a_hint(headers, body):
    assert retry_hint(headers, body) is None


@pytest.fixture
def non_utc_local_time():
    """Run with a local time zone five hours behind UTC (POSIX rule: needs no tz database)."""
    saved = os.environ.get("TZ")
    os.environ["TZ"] = "EST5"
    time.tzset()
    try:
        yield
    finally:
        if saved is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = saved
        time.tzset()


def test_retry_after_asctime_date_is_utc(non_utc_local_time):
    asctime = time.strftime("%a %b %d %H:%M:%S %Y", time.gmtime(time.time() + 120))
    assert retry_hint({"retry-after": asctime}, b"") == pytest.approx(120, abs=2)


# -- replace_model ---------------------------------------------------------------------------


def replaced(body: bytes, model: str) -> bytes:
    return replace_model(body, json.loads(body), model)


def test_only_the_model_value_bytes_change():
    body = (
        b'{\n  "stream" :true,\t"model"  :   "sonnet" ,\n'
        b'  "messages": [{"role": "user", "content": "caf\\u00e9 \\/ \\"q\\" \xc3\xa9"}],'
        b'"z": 1.50, "a": 1e2}'
    )
    assert replaced(body, "claude-sonnet-4-5") == body.replace(b'"sonnet"', b'"claude-sonnet-4-5"')


def test_an_unchanged_model_returns_the_body_itself():
    body = b'{ "model" : "claude-sonnet-4-5",  "x": [1,2] }'
    assert replaced(body, "claude-sonnet-4-5") is body


def test_a_nested_model_with_another_value_before_the_top_level_one_is_left_alone():
    body = b'{"tools": [{"model": "other"}], "model": "sonnet", "n": 1}'
    assert replaced(body, "claude-x") == b'{"tools": [{"model": "other"}], "model": "claude-x", "n": 1}'


def test_a_nested_model_with_the_same_value_before_the_top_level_one_is_left_alone():
    body = b'{"metadata": {"model": "sonnet"}, "input": [{"model": "sonnet"}], "model": "sonnet"}'
    assert json.loads(replaced(body, "claude-x")) == {
        "metadata": {"model": "sonnet"},
        "input": [{"model": "sonnet"}],
        "model": "claude-x",
    }


def test_a_model_key_inside_a_string_is_not_touched():
    body = b'{"prompt": "{\\"model\\": \\"sonnet\\"}", "model": "sonnet"}'
    assert json.loads(replaced(body, "claude-x")) == {"prompt": '{"model": "sonnet"}', "model": "claude-x"}


def test_an_escaped_key_spelling_is_handled():
    body = b'{"mod\\u0065l": "sonnet", "x": 1}'
    assert json.loads(replaced(body, "claude-x")) == {"model": "claude-x", "x": 1}


def test_a_new_model_needing_escapes_stays_valid_json():
    body = b'{"model": "sonnet"}'
    assert json.loads(replaced(body, 'we"ird\\name\u00e9')) == {"model": 'we"ird\\name\u00e9'}


def test_duplicate_model_keys_resolve_like_a_json_parser():
    body = b'{"model": "first", "model": "second"}'
    assert json.loads(replaced(body, "claude-x")) == {"model": "claude-x"}


def test_a_missing_model_is_added():
    assert json.loads(replace_model(b'{"x": 1}', {"x": 1}, "claude-x")) == {"x": 1, "model": "claude-x"}


JSON_SCALARS = st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text()
JSON_VALUES = st.recursive(
    JSON_SCALARS,
    lambda inner: st.lists(inner, max_size=4)
    | st.dictionaries(st.text(max_size=8) | st.just("model"), inner, max_size=4),
    max_leaves=20,
)


@given(
    obj=st.dictionaries(st.text(max_size=8), JSON_VALUES, max_size=5),
    old=st.text(),
    new=st.text(),
    indent=st.sampled_from([None, 2]),
)
def test_replace_model_property(obj, old, new, indent):
    obj = {**obj, "model": old}
    body = json.dumps(obj, indent=indent).encode()
    assert json.loads(replace_model(body, obj, new)) == {**obj, "model": new}


def test_fallback_survives_a_lone_surrogate_escape():
    body = b'{"meta": {"model": "a"}, "model": "a", "text": "\\ud800"}'
    assert json.loads(replaced(body, "b")) == {"meta": {"model": "a"}, "model": "b", "text": "\ud800"}


def test_a_raw_utf8_model_keeps_the_rest_of_the_body():
    body = '{ "model" : "modèle-rapide",  "x": [1, 2] }'.encode()
    assert replaced(body, "claude-x") == b'{ "model" : "claude-x",  "x": [1, 2] }'


# -- listings -------------------------------------------------------------------------------------

MODELS = [ListedModel("claude-sonnet-4-5", "claude"), ListedModel("work/kimi-k2", "openrouter")]


def test_openai_listing():
    body = json.loads(openai_models(MODELS))
    assert body["object"] == "list"
    assert [(m["id"], m["object"], m["owned_by"]) for m in body["data"]] == [
        ("claude-sonnet-4-5", "model", "claude"),
        ("work/kimi-k2", "model", "openrouter"),
    ]
    assert all(isinstance(m["created"], int) for m in body["data"])


def test_anthropic_listing():
    body = json.loads(anthropic_models(MODELS))
    assert body["has_more"] is False
    assert (body["first_id"], body["last_id"]) == ("claude-sonnet-4-5", "work/kimi-k2")
    first = body["data"][0]
    assert first["type"] == "model"
    assert first["id"] == first["display_name"] == "claude-sonnet-4-5"
    assert first["created_at"].endswith("Z")


def test_empty_anthropic_listing():
    assert json.loads(anthropic_models([])) == {"data": [], "has_more": False, "first_id": None, "last_id": None}


def test_gemini_listing():
    body = json.loads(gemini_models(MODELS))
    assert [m["name"] for m in body["models"]] == ["models/claude-sonnet-4-5", "models/work/kimi-k2"]
    assert body["models"][0] == gemini_model(MODELS[0])


def test_gemini_model():
    m = gemini_model(ListedModel("gemini-2.5-pro", "gemini"))
    assert m["name"] == "models/gemini-2.5-pro"
    assert m["displayName"] == "gemini-2.5-pro"
    assert set(m["supportedGenerationMethods"]) == {"generateContent", "streamGenerateContent", "countTokens"}


@pytest.mark.parametrize("encode", [openai_models, anthropic_models, gemini_models])
def test_listings_are_identical_from_one_call_to_the_next(encode):
    assert encode(MODELS) == encode(list(MODELS))
