"""routing/names.py: model names and paths a client may send, and the URLs built from them;
translators/shape.py: the checks every request gets, passed through or not."""

from __future__ import annotations

import urllib.parse

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from auth.credential import Credential
from routing.endpoints import Endpoint, Kind
from routing.names import MAX_MODEL_LENGTH, model_problem, path_problem
from routing.router import Router
from routing.upstream import ClientRequest, target
from translators.fields import FieldError
from translators.formats import Format
from translators.shape import check_request

FUZZ = settings(max_examples=300, deadline=None)


@pytest.mark.parametrize(
    "model",
    [
        "gemini-2.5-pro",
        "work/gemini-2.5-pro",
        "gemini-2.5-pro(high)",
        "claude-sonnet-4-5(16384)",
        "claude-sonnet-4-5[1m]",
        "claude-3-5-sonnet@20240620",
        "llama3.1:8b",
        "us.anthropic.claude-3-5-sonnet-20241022-v2:0",
        "meta-llama/llama-3.3-70b-instruct",
        "anthropic/claude-3.5-sonnet:beta",
        "accounts/fireworks/models/llama-v3p1-70b-instruct",
        "a" * MAX_MODEL_LENGTH,
    ],
)
def test_real_model_names_are_accepted(model):
    assert model_problem(model) is None


@pytest.mark.parametrize(
    "model,problem",
    [
        ("", "empty"),
        ("../gemini-2.5-pro", "'..' path segment"),
        ("gemini-2.5-pro/../../v1/x", "'..' path segment"),
        ("./gemini", "'..' path segment"),
        ("%2e%2e/x", "'%'"),
        ("gemini%2Fx", "'%'"),
        ("gemini-2.5-pro?alt=json", "'?'"),
        ("gemini-2.5-pro#x", "'#'"),
        ("gemini\\..\\x", "'\\\\'"),
        ("gemini\x00", "control character (U+0000)"),
        ("gemini\r\nx-injected: 1", "control character (U+000D)"),
        ("gemini 2.5", "U+0020"),
        ("gemini\u2215x", "U+2215"),
        ("gemini\uff0fx", "U+FF0F"),
        ("/gemini", "empty path segment"),
        ("gemini/", "empty path segment"),
        ("work//gemini", "empty path segment"),
        ("g" * (MAX_MODEL_LENGTH + 1), f"longer than {MAX_MODEL_LENGTH}"),
    ],
)
def test_names_that_cannot_be_models_are_refused(model, problem):
    message = model_problem(model)
    assert message is not None and problem in message
    assert len(message) < 200  # the name itself is never echoed


@pytest.mark.parametrize(
    "path,refused",
    [
        ("/v1/messages", False),
        ("/api/oauth/profile", False),
        ("/v1beta/models/gemini-2.5-pro:generateContent", False),
        ("/a/b.c/..d", False),
        ("/v1/../admin", True),
        ("/v1/./x", True),
        ("/v1/%2e%2e/admin", True),
        ("/v1/%2E./admin", True),
        ("/v1%2f..%2fadmin", True),
        ("/..", True),
        ("/v1\\admin", True),
        ("/v1/%5cadmin", True),
    ],
)
def test_paths_that_could_climb_out_of_a_base_path(path, refused):
    assert (path_problem(path) is not None) is refused


# -- URLs built from accepted names ----------------------------------------------------------------


def _client(endpoint: Endpoint, model: str, query: tuple[tuple[str, str], ...] = ()) -> ClientRequest:
    return ClientRequest(endpoint, model, False, "POST", "/", query, {}, (), b"{}", {})


GEMINI_CHAT = Endpoint(Kind.GENERATE, Format.OPENAI_CHAT)
GEMINI_KEY = Credential(provider="gemini", source="gemini-api-key[0]", secret="AIza-x")
VERTEX = Credential(
    provider="vertex", source="vertex.json", secret="ya29.x", kind="service-account",
    project_id="proj-1", location="us-central1",
)

# Whatever the validator lets through, built from every character it could possibly see.
model_names = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs",)) | st.sampled_from("./%?#\\:@()[]+~-_"),
    min_size=1,
    max_size=40,
).filter(lambda m: model_problem(m) is None)


@FUZZ
@given(model=model_names)
def test_no_accepted_model_changes_the_gemini_url_structure(model):
    url = target(GEMINI_KEY, _client(GEMINI_CHAT, model), model, Format.GEMINI, {}).url
    parts = urllib.parse.urlsplit(url)
    assert (parts.scheme, parts.netloc, parts.query, parts.fragment) == ("https", "generativelanguage.googleapis.com", "", "")
    prefix, _, last = parts.path.rpartition("/")
    assert prefix == "/v1beta/models"  # one segment for the model, whatever it holds
    name, _, action = last.rpartition(":")
    assert action == "generateContent"
    assert urllib.parse.unquote(name) == model


@FUZZ
@given(model=model_names)
def test_no_accepted_model_changes_the_vertex_url_structure(model):
    url = target(VERTEX, _client(GEMINI_CHAT, model), model, Format.GEMINI, {}).url
    parts = urllib.parse.urlsplit(url)
    assert parts.query == "" and parts.fragment == ""
    segments = parts.path.split("/")
    assert segments[:8] == ["", "v1", "projects", "proj-1", "locations", "us-central1", "publishers", "google"]
    assert segments[8] == "models" and len(segments) == 10
    assert urllib.parse.unquote(segments[9].rpartition(":")[0]) == model


def test_only_each_apis_own_query_parameters_travel():
    gemini = _client(
        Endpoint(Kind.GENERATE, Format.GEMINI, "gemini-2.5-pro", "streamGenerateContent"),
        "gemini-2.5-pro",
        (("alt", "sse"), ("key", "client-key"), ("access_token", "t"), ("quotaUser", "u"), ("$fields", "x")),
    )
    assert target(GEMINI_KEY, gemini, "gemini-2.5-pro", Format.GEMINI, {}).url == (
        "https://generativelanguage.googleapis.com/v1beta/models/gemini-2.5-pro:streamGenerateContent?alt=sse"
    )
    claude = Credential(provider="claude", source="claude-api-key[0]", secret="sk-x")
    messages = _client(Endpoint(Kind.GENERATE, Format.ANTHROPIC), "claude-x", (("beta", "true"), ("x", "../y")))
    assert target(claude, messages, "claude-x", Format.ANTHROPIC, {}).url == "https://api.anthropic.com/v1/messages?beta=true"


def test_vendor_families_take_no_slashed_names():
    router = Router([GEMINI_KEY, Credential(provider="openai-compatibility", source="c", secret="k", service="or")])
    assert [r.credential.provider for r in router.resolve("gemini-2.5-pro")] == ["gemini", "openai-compatibility"]
    # OpenRouter-style ids belong to the catch-all of an OpenAI-compatible service only.
    assert [r.credential.provider for r in router.resolve("gemini-2.5-pro/x")] == ["openai-compatibility"]


# -- shape: every request, translated or passed through -------------------------------------------


@pytest.mark.parametrize(
    "fmt,body,kwargs,message",
    [
        (Format.OPENAI_CHAT, {}, {}, "messages: required"),
        (Format.OPENAI_CHAT, {"messages": "hi"}, {}, "messages: expected a list of messages, got a string"),
        (Format.OPENAI_CHAT, {"messages": []}, {}, "messages: must not be empty"),
        (Format.OPENAI_CHAT, {"messages": [{}], "stream": "yes"}, {}, "stream: expected a boolean, got a string"),
        (Format.ANTHROPIC, {"messages": {"role": "user"}}, {}, "messages: expected a list of messages, got an object"),
        (Format.ANTHROPIC, {"messages": None}, {"counting": True}, "messages: required"),
        (Format.OPENAI_RESPONSES, {}, {}, "input: required"),
        (Format.OPENAI_RESPONSES, {"input": 3}, {}, "input: expected a string or a list of input items, got a number"),
        (Format.OPENAI_RESPONSES, {"input": 3, "previous_response_id": "r"}, {},
         "input: expected a string or a list of input items, got a number"),
        (Format.GEMINI, {"contents": "hi"}, {}, "contents: expected a list of contents, got a string"),
        (Format.GEMINI, {"contents": []}, {}, "contents: must not be empty"),
        (Format.GEMINI, {"generateContentRequest": []}, {"counting": True},
         "generateContentRequest: expected an object, got a list"),
        (Format.GEMINI, {"model": "m", "request": "x"}, {"envelope": True}, "request: expected an object, got a string"),
        (Format.GEMINI, {"model": "m"}, {"envelope": True}, "request: required"),
        (Format.GEMINI, {"model": "m", "request": {}}, {"envelope": True}, "request.contents: required"),
        (Format.OPENAI_COMPLETIONS, {"prompt": 7}, {}, "prompt: expected a string or a list of strings, got a number"),
        (Format.OPENAI_RESPONSES, {"input": "hi", "include": "reasoning"}, {}, "include: expected a list of strings, got a string"),
    ],
)
def test_the_conversation_field_is_checked_on_every_path(fmt, body, kwargs, message):
    with pytest.raises(FieldError) as raised:
        check_request(fmt, body, **kwargs)
    assert str(raised.value) == message


@pytest.mark.parametrize(
    "fmt,body,kwargs",
    [
        (Format.OPENAI_CHAT, {"messages": [{"role": "user", "content": "hi"}], "stream": True}, {}),
        (Format.OPENAI_RESPONSES, {"input": "hi"}, {}),
        (Format.OPENAI_RESPONSES, {"previous_response_id": "resp_1"}, {}),
        (Format.GEMINI, {"contents": {"parts": [{"text": "hi"}]}}, {}),
        (Format.GEMINI, {"generateContentRequest": {"contents": [{}]}}, {"counting": True}),
        (Format.GEMINI, {"request": {"contents": [{}]}, "model": "m"}, {"envelope": True}),
    ],
)
def test_requests_of_the_right_shape_pass(fmt, body, kwargs):
    check_request(fmt, body, **kwargs)
