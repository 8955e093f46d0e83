"""Malformed client input through a real mitmdump: every bad call is answered with a 400 (413,
431) in the API the client spoke, nothing of it reaches an upstream, and the proxy serves the
next call. Model names that could change an upstream path never reach any path but the
model's own.

Path tricks go over raw sockets (httpx would resolve `..` itself), to the listener and through
the interception port (CONNECT + TLS with mitmproxy's CA), so that the exact bytes arrive.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import socket
import ssl
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types

from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

POOL_GEMINI = "AIza-pool-hardening-G1"
POOL_WORK = "AIza-pool-hardening-W2"
POOL_CLAUDE = "sk-ant-pool-hardening-C3"
POOL_COMPAT = "sk-pool-hardening-O4"
POOL_KEYS = {POOL_GEMINI, POOL_WORK, POOL_CLAUDE, POOL_COMPAT}
CLI_OWN = "sk-cli-own-hardening-0000"
MIB = 1024 * 1024


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(
        {
            "gemini-api-key": [{"api-key": POOL_GEMINI}, {"api-key": POOL_WORK, "prefix": "work"}],
            "claude-api-key": [{"api-key": POOL_CLAUDE}],
            "openai-compatibility": [
                {
                    "name": "compat",
                    "base-url": fake.base_url + "/v1",
                    "api-key-entries": [{"api-key": POOL_COMPAT}],
                    "models": [{"name": "compat-model"}],
                }
            ],
            "upstream-overrides": {**vendor_overrides(fake), "cloudcode-pa.googleapis.com": fake.base_url},
            "routing": {"strategy": "fill-first"},
        }
    )


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


# -- raw HTTP, to the listener or through the interception port --------------------------------------


def exchange(sock: socket.socket, method: str, target: bytes, headers: dict[str, str], body: bytes = b"") -> tuple[int, bytes]:
    head = method.encode() + b" " + target + b" HTTP/1.1\r\n"
    head += b"".join(f"{k}: {v}\r\n".encode() for k, v in {**headers, "content-length": str(len(body))}.items())
    sock.sendall(head + b"\r\n" + body)
    response = http.client.HTTPResponse(sock)
    response.begin()
    return response.status, response.read()


@contextlib.contextmanager
def listener(proxy) -> Iterator[socket.socket]:
    with socket.create_connection(("127.0.0.1", proxy.port), timeout=30) as sock:
        yield sock


@contextlib.contextmanager
def intercepted(proxy, host: str) -> Iterator[socket.socket]:
    raw = socket.create_connection(("127.0.0.1", proxy.proxy_port), timeout=30)
    raw.sendall(f"CONNECT {host}:443 HTTP/1.1\r\nHost: {host}:443\r\n\r\n".encode())
    reply = b""
    while b"\r\n\r\n" not in reply:
        reply += raw.recv(1024)
    assert reply.startswith(b"HTTP/1.1 200"), reply
    context = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    with context.wrap_socket(raw, server_hostname=host) as tls:
        yield tls


def post(proxy, target: str | bytes, body: Any, *, host: str | None = None, **extra: str) -> tuple[int, Any]:
    """POST to the listener, or with `host` to that vendor host through the interception port."""
    raw_target = target if isinstance(target, bytes) else target.encode()
    data = body if isinstance(body, bytes) else json.dumps(body).encode()
    headers = {"host": host or "127.0.0.1", "content-type": "application/json", "x-api-key": CLI_OWN, **extra}
    with intercepted(proxy, host) if host else listener(proxy) as sock:
        status, answer = exchange(sock, "POST", raw_target, headers, data)
    return status, answer if answer.startswith(b"data:") else json.loads(answer)


def error_message(shape: str, status: int, body: Any) -> str:
    """The error's message, after checking it has the shape that API's SDK reads."""
    if shape == "anthropic":
        assert body["type"] == "error"
        assert body["error"]["type"] == ("request_too_large" if status == 413 else "invalid_request_error")
        return body["error"]["message"]
    if shape == "gemini":
        assert (body["error"]["code"], body["error"]["status"]) == (status, "INVALID_ARGUMENT")
        return body["error"]["message"]
    assert body["error"]["type"] == "invalid_request_error"
    return body["error"]["message"]


# -- model names carrying path tricks -------------------------------------------------------------

TRICKS = {
    "dot-dot": "../../v1beta/models/gemini-2.5-flash",
    "dot-dot-inside": "gemini-2.5-pro/../../../v1/models/x",
    "encoded-dots": "%2e%2e/%2e%2e/gemini-2.5-pro",
    "encoded-slash": "gemini-2.5-pro%2F..%2Fx",
    "query": "gemini-2.5-pro:generateContent?alt=json&x=1",
    "fragment": "gemini-2.5-pro#frag",
    "backslash": "gemini-2.5-pro\\..\\..\\x",
    "crlf": "gemini-2.5-pro\r\nx-injected: 1",
    "nul": "gemini-2.5-pro\x00",
    "space": "gemini 2.5 pro",
    "division-slash": "gemini-2.5-pro\u2215..\u2215x",
    "fullwidth-slash": "gemini-2.5-pro\uff0f..\uff0fx",
    "very-long": "gemini-" + "9" * 5000,
}


def _body(api: str, model: str) -> tuple[str, str, dict]:
    hi = [{"role": "user", "content": "hi"}]
    contents = [{"role": "user", "parts": [{"text": "hi"}]}]
    return {
        "chat": ("/v1/chat/completions", "openai", {"model": model, "messages": hi}),
        "responses": ("/v1/responses", "openai", {"model": model, "input": "hi"}),
        "completions": ("/v1/completions", "openai", {"model": model, "prompt": "hi"}),
        "messages": ("/v1/messages", "anthropic", {"model": model, "max_tokens": 8, "messages": hi}),
        "code-assist": ("/v1internal:generateContent", "gemini", {"model": model, "project": "p", "request": {"contents": contents}}),
    }[api]


@pytest.mark.parametrize("trick", list(TRICKS))
@pytest.mark.parametrize("api", ["chat", "responses", "completions", "messages", "code-assist"])
def test_a_path_trick_in_a_body_model_is_a_400_and_reaches_no_upstream(proxy, fake, api, trick):
    path, shape, body = _body(api, TRICKS[trick])
    status, answer = post(proxy, path, body)
    assert status == 400
    message = error_message(shape, 400, answer)
    assert "invalid model" in message and len(message) < 400  # never the whole name back
    assert fake.requests == []
    # ... and the proxy goes on serving.
    status, _ = post(proxy, path, _body(api, "gemini-2.5-flash")[2])
    assert status == 200 and fake.requests[0].path == "/v1beta/models/gemini-2.5-flash:generateContent"


PATH_TRICKS = {
    "dot-dot": b"/v1beta/models/../../v1/models/x:generateContent",
    "dot-dot-inside": b"/v1beta/models/gemini-2.5-pro/../../../v1/x:generateContent",
    "encoded-dots": b"/v1beta/models/%2e%2e%2f%2e%2e%2fx:generateContent",
    "encoded-query": b"/v1beta/models/gemini-2.5-pro%3Falt=json:generateContent",
    "encoded-fragment": b"/v1beta/models/gemini-2.5-pro%23frag:generateContent",
    "backslash": b"/v1beta/models/gemini-2.5-pro\\..\\x:generateContent",
    "encoded-nul": b"/v1beta/models/gemini-2.5-pro%00:generateContent",
    "division-slash": b"/v1beta/models/gemini-2.5-pro%E2%88%95x:generateContent",
    "raw-utf8-slash": "/v1beta/models/gemini\u2215x:generateContent".encode(),
    "very-long": b"/v1beta/models/gemini-" + b"9" * 5000 + b":generateContent",
}
CONTENTS = {"contents": [{"role": "user", "parts": [{"text": "hi"}]}]}


@pytest.mark.parametrize("trick", list(PATH_TRICKS))
def test_a_path_trick_in_a_gemini_path_is_a_400_and_reaches_no_upstream(proxy, fake, trick):
    status, answer = post(proxy, PATH_TRICKS[trick], CONTENTS)
    assert status == 400
    assert "invalid model" in error_message("gemini", 400, answer)
    assert fake.requests == []


@pytest.mark.parametrize(
    "target",
    [
        b"/v1beta/models/gemini-2.5-pro/x:generateContent",  # a name no credential serves
        b"/v1beta/models/gemini-2.5-pro:generateContent#frag",  # not a model call at all
        b"/v1beta/models/gemini-2.5-pro?x=1#:generateContent",
    ],
)
def test_gemini_paths_that_name_no_served_model_reach_no_upstream(proxy, fake, target):
    status, answer = post(proxy, target, CONTENTS)
    assert status == 404 and answer["error"]["status"] == "NOT_FOUND"
    assert fake.requests == []


@pytest.mark.parametrize("trick", list(PATH_TRICKS))
def test_an_intercepted_gemini_call_with_a_path_trick_reaches_no_upstream_with_a_pool_key(proxy, fake, trick):
    target = PATH_TRICKS[trick]
    status, answer = post(proxy, target, CONTENTS, host="generativelanguage.googleapis.com")
    assert status == 400 and answer["error"]["status"] == "INVALID_ARGUMENT"
    assert fake.requests == []


@pytest.mark.parametrize("trick", list(TRICKS))
@pytest.mark.parametrize(
    "host,path,shape,make",
    [
        ("api.anthropic.com", "/v1/messages", "anthropic",
         lambda m: {"model": m, "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}),
        ("cloudcode-pa.googleapis.com", "/v1internal:generateContent", "gemini",
         lambda m: {"model": m, "project": "cli-project", "request": CONTENTS}),
    ],
    ids=["claude-code", "gemini-cli"],
)
def test_an_intercepted_body_model_with_a_path_trick_is_a_400(proxy, fake, host, path, shape, make, trick):
    status, answer = post(proxy, path, make(TRICKS[trick]), host=host)
    assert status == 400 and "invalid model" in error_message(shape, 400, answer)
    assert fake.requests == []


def test_an_intercepted_call_the_pool_does_not_serve_goes_on_unchanged(proxy, fake):
    """Not a model call: the vendor answers it, on the CLI's own key and at the CLI's own path."""
    target = b"/v1beta/models/gemini-2.5-pro?x=1#:generateContent"
    post(proxy, target, CONTENTS, host="generativelanguage.googleapis.com")
    (seen,) = fake.requests
    assert (seen.path, seen.api_key) == ("/v1beta/models/gemini-2.5-pro", CLI_OWN)


def test_an_intercepted_dot_segment_is_not_glued_onto_an_override(proxy, fake):
    status, answer = post(proxy, b"/v1/../../admin/keys", {}, host="api.anthropic.com")
    assert status == 400 and answer["type"] == "error" and "'..' segment" in answer["error"]["message"]
    assert fake.requests == []


@pytest.mark.parametrize("size,status", [(17 * 1024, 431), (8 * 1024, 200)])
def test_an_intercepted_call_with_an_oversized_header_is_not_sent_on(proxy, fake, size, status):
    body = {"model": "claude-test-1", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    answer_status, answer = post(proxy, "/v1/messages", body, host="api.anthropic.com", **{"x-padding": "a" * size})
    assert answer_status == status
    if status == 431:
        assert answer["error"]["type"] == "invalid_request_error" and "'x-padding'" in answer["error"]["message"]
        assert fake.requests == []
    else:
        (seen,) = fake.requests
        assert seen.api_key == POOL_CLAUDE and len(seen.headers["x-padding"]) == size


@dataclass(frozen=True)
class Accepted:
    target: bytes
    body: dict
    path: str
    query: dict
    key: str


ACCEPTED = {
    "prefix-in-body": Accepted(b"/v1/chat/completions", {"model": "work/gemini-2.5-pro", "messages": [{"role": "user", "content": "hi"}]},
                               "/v1beta/models/gemini-2.5-pro:generateContent", {}, POOL_WORK),
    "prefix-in-path": Accepted(b"/v1beta/models/work/gemini-2.5-pro:generateContent?alt=json&key=k&quotaUser=q&access_token=t",
                               CONTENTS, "/v1beta/models/gemini-2.5-pro:generateContent", {"alt": "json"}, POOL_WORK),
    "reasoning-suffix": Accepted(b"/v1beta/models/gemini-2.5-pro(low):streamGenerateContent?alt=sse", CONTENTS,
                                 "/v1beta/models/gemini-2.5-pro:streamGenerateContent", {"alt": "sse"}, POOL_GEMINI),
    "url-characters-quoted": Accepted(b"/v1/messages", {"model": "gemini-2.5-pro@v1[x]+y", "max_tokens": 8,
                                                        "messages": [{"role": "user", "content": "hi"}]},
                                      "/v1beta/models/gemini-2.5-pro%40v1%5Bx%5D%2By:generateContent", {}, POOL_GEMINI),
}


@pytest.mark.parametrize("how", ["listener", "intercepted"])
@pytest.mark.parametrize("case", list(ACCEPTED))
def test_an_accepted_model_reaches_exactly_its_template_path(proxy, fake, case, how):
    accepted = ACCEPTED[case]
    host = None
    if how == "intercepted":
        host = "api.anthropic.com" if accepted.target == b"/v1/messages" else "generativelanguage.googleapis.com"
        if accepted.target == b"/v1/chat/completions":
            host = "api.openai.com"
    status, _ = post(proxy, accepted.target, accepted.body, host=host)
    assert status == 200
    (seen,) = fake.requests
    assert (seen.path, seen.query, seen.api_key) == (accepted.path, accepted.query, accepted.key)


# -- malformed bodies, per client API -----------------------------------------------------------------

HI = [{"role": "user", "content": "hi"}]


@dataclass(frozen=True)
class Api:
    path: str
    shape: str
    good: dict
    conversation: tuple[str, ...]  # where the conversation sits in the body
    wrong: tuple[tuple[str, ...], Any, str]  # a field deep inside, a wrong value, the path named


APIS = {
    "chat": Api("/v1/chat/completions", "openai", {"model": "claude-test-1", "messages": HI}, ("messages",),
                (("messages", 0, "content"), 5, "messages[0].content")),
    "responses": Api("/v1/responses", "openai", {"model": "claude-test-1", "input": [{"role": "user", "content": "hi"}]},
                     ("input",), (("input", 0, "content"), {"text": "hi"}, "input[0].content")),
    "completions": Api("/v1/completions", "openai", {"model": "claude-test-1", "prompt": "hi", "max_tokens": 8},
                       ("prompt",), (("max_tokens",), "8", "max_tokens")),
    "messages": Api("/v1/messages", "anthropic", {"model": "gemini-2.5-flash", "max_tokens": 8, "messages": HI},
                    ("messages",), (("messages", 0, "content"), 5, "messages[0].content")),
    "count_tokens": Api("/v1/messages/count_tokens", "anthropic", {"model": "gemini-2.5-flash", "messages": HI},
                        ("messages",), (("system",), 3, "system")),
    "generateContent": Api("/v1beta/models/claude-test-1:generateContent", "gemini", CONTENTS, ("contents",),
                           (("contents", 0, "parts", 0, "text"), 5, "contents[0].parts[0].text")),
    "streamGenerateContent": Api("/v1beta/models/claude-test-1:streamGenerateContent?alt=sse", "gemini", CONTENTS,
                                 ("contents",), (("generationConfig",), [], "generationConfig")),
    "countTokens": Api("/v1beta/models/claude-test-1:countTokens", "gemini", CONTENTS, ("contents",),
                       (("contents", 0, "parts"), {"text": "hi"}, "contents[0].parts")),
    "v1internal:generateContent": Api("/v1internal:generateContent", "gemini",
                                      {"model": "claude-test-1", "project": "p", "request": CONTENTS},
                                      ("request", "contents"), (("request", "contents", 0, "role"), 1, "contents[0].role")),
    "v1internal:streamGenerateContent": Api("/v1internal:streamGenerateContent?alt=sse", "gemini",
                                            {"model": "claude-test-1", "project": "p", "request": CONTENTS},
                                            ("request", "contents"),
                                            (("request", "systemInstruction"), 5, "systemInstruction")),
    "v1internal:countTokens": Api("/v1internal:countTokens", "gemini",
                                  {"request": {"model": "models/claude-test-1", **CONTENTS}}, ("request", "contents"),
                                  (("request", "contents", 0, "parts", 0), "hi", "contents[0].parts[0]")),
}


def _set(body: dict, where: tuple, value: Any) -> dict:
    body = json.loads(json.dumps(body))
    node: Any = body
    for key in where[:-1]:
        node = node[key]
    node[where[-1]] = value
    return body


def _with_raw(body: dict, where: tuple[str, ...], raw: bytes) -> bytes:
    """`body` serialised with the field at `where` replaced by the raw JSON text `raw`."""
    marker = "__RAW__"
    return json.dumps(_set(body, where, marker)).encode().replace(b'"' + marker.encode() + b'"', raw)


def _empty(api: Api) -> Any:
    return "" if api.conversation[-1] in ("prompt", "input") and api.path != "/v1/responses" else []


def _malformed(api: Api, kind: str) -> tuple[int, bytes, dict[str, str], str]:
    """(status, body, extra headers, what the message names) for each class of bad call."""
    if kind == "not-json":
        return 400, b'{"model": "claude-test-1", "messages": [', {}, "not valid JSON"
    if kind == "not-an-object":
        return 400, b'[{"role": "user", "content": "hi"}]', {}, "must be a JSON object"
    if kind == "conversation-wrong-type":
        return 400, json.dumps(_set(api.good, api.conversation, 42)).encode(), {}, ".".join(api.conversation[-1:]) + ": expected"
    if kind == "field-wrong-type":
        where, value, named = api.wrong
        return 400, json.dumps(_set(api.good, where, value)).encode(), {}, named + ": expected"
    if kind == "model-wrong-type":
        if "/models/" in api.path:
            return 400, b"{}", {}, "contents: required"  # the model is in the path: nothing to type
        return 400, json.dumps({**api.good, "model": ["claude-test-1"]}).encode(), {}, "model"
    if kind == "nested-100000":
        return 400, _with_raw(api.good, api.conversation, b"[" * 100_000 + b"]" * 100_000), {}, "nested too deeply"
    if kind == "empty-conversation":
        return 400, json.dumps(_set(api.good, api.conversation, _empty(api))).encode(), {}, api.conversation[-1]
    if kind == "huge-header":
        return 431, json.dumps(api.good).encode(), {"x-padding": "a" * 70_000}, "x-padding"
    if kind == "huge-body":
        return 413, json.dumps({**api.good, "padding": "a" * (33 * MIB)}).encode(), {}, "larger than the 32 MiB"
    raise AssertionError(kind)


MALFORMED = ["not-json", "not-an-object", "conversation-wrong-type", "field-wrong-type", "model-wrong-type",
             "nested-100000", "empty-conversation", "huge-header", "huge-body"]


@pytest.mark.parametrize("kind", MALFORMED)
@pytest.mark.parametrize("name", list(APIS))
def test_a_malformed_call_is_answered_in_the_clients_shape_and_the_next_one_served(proxy, fake, name, kind):
    api = APIS[name]
    status, body, headers, named = _malformed(api, kind)
    with httpx.Client(base_url=proxy.base_url, timeout=60) as client:
        r = client.post(api.path, content=body, headers={"content-type": "application/json", **headers})
        assert r.status_code == status, r.text[:500]
        message = error_message(api.shape, status, r.json())
        assert named in message and len(message) < 1000
        assert fake.requests == []
        good = client.post(api.path, json=api.good)
    assert good.status_code == 200, good.text[:500]
    assert len(fake.requests) == 1


def test_a_body_without_a_length_is_measured_once_read(proxy, fake):
    def chunks():
        yield b'{"model": "compat-model", "messages": [{"role": "user", "content": "'
        for _ in range(33):
            yield b"a" * MIB
        yield b'"}]}'

    r = httpx.post(proxy.base_url + "/v1/chat/completions", content=chunks(), timeout=60)
    assert "content-length" not in r.request.headers
    assert r.status_code == 413 and "larger than the 32 MiB" in r.json()["error"]["message"]
    assert fake.requests == []


@pytest.mark.parametrize(
    "api,body",
    [
        ("/v1/chat/completions", {"model": "compat-model", "messages": [{"role": "user", "content": "hi"}], "stream": "yes"}),
        ("/v1/messages", {"model": "claude-test-1", "max_tokens": 8, "messages": {"role": "user", "content": "hi"}}),
        ("/v1beta/models/gemini-2.5-flash:generateContent", {"contents": "hi"}),
    ],
)
def test_a_pass_through_call_gets_the_cheap_checks_too(proxy, fake, api, body):
    """Same format as its credential: sent on undecoded, so the shape check is all it gets."""
    r = httpx.post(proxy.base_url + api, json=body, timeout=30)
    assert r.status_code == 400 and "invalid request" in r.text
    assert fake.requests == []


# -- the official SDKs read these errors as their own ---------------------------------------------


def test_openai_sdk_reads_the_errors(proxy, fake):
    client = openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0)
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="claude-test-1", messages=[{"role": "user", "content": [{"type": "text", "text": 5}]}])
    assert "messages[0].content[0].text: expected a string, got a number" in raised.value.message
    with pytest.raises(openai.BadRequestError) as raised:
        client.chat.completions.create(model="gemini-2.5-pro/../../x", messages=[{"role": "user", "content": "hi"}])
    assert "'..' path segment" in raised.value.message
    with pytest.raises(openai.APIStatusError) as status:
        client.chat.completions.create(model="compat-model", messages=HI, extra_headers={"x-padding": "a" * 70_000})
    assert status.value.status_code == 431 and "x-padding" in status.value.message
    with pytest.raises(openai.APIStatusError) as status:
        client.responses.create(model="claude-test-1", input="a" * (33 * MIB))
    assert status.value.status_code == 413
    assert fake.requests == []
    assert client.chat.completions.create(model="compat-model", messages=HI).choices[0].message.content == fake.text


def test_anthropic_sdk_reads_the_errors(proxy, fake):
    client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.create(model="gemini-2.5-flash", max_tokens=8, messages=[{"role": "user", "content": [{"type": "text", "text": "a"}, 7]}])
    assert "messages[0].content[1]: expected an object, got a number" in raised.value.body["error"]["message"]
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-test-1\r\nx: y", max_tokens=8, messages=HI)
    with pytest.raises(anthropic.BadRequestError) as raised:
        client.messages.count_tokens(model="gemini-2.5-flash", messages=[])
    assert "messages: must not be empty" in raised.value.body["error"]["message"]
    with pytest.raises(anthropic.APIStatusError) as status:
        client.messages.create(model="claude-test-1", max_tokens=8, messages=[{"role": "user", "content": "a" * (33 * MIB)}])
    assert status.value.status_code == 413 and status.value.body["error"]["type"] == "request_too_large"
    assert fake.requests == []
    assert client.messages.create(model="claude-test-1", max_tokens=8, messages=HI).content[0].text == fake.text


def test_google_genai_reads_the_errors(proxy, fake):
    def client(**headers: str) -> genai.Client:
        return genai.Client(
            api_key="unused",
            http_options=genai_types.HttpOptions(
                base_url=proxy.base_url, headers=headers, retry_options=genai_types.HttpRetryOptions(attempts=1)
            ),
        )

    padded, plain = client(**{"x-padding": "a" * 70_000}), client()  # held: a dropped Client closes itself
    with pytest.raises(genai_errors.ClientError) as raised:
        padded.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert (raised.value.code, raised.value.status) == (431, "INVALID_ARGUMENT")
    with pytest.raises(genai_errors.ClientError) as raised:
        plain.models.generate_content(model="gemini-2.5-flash", contents="a" * (33 * MIB))
    assert raised.value.code == 413
    with pytest.raises(genai_errors.ClientError) as raised:
        plain.models.generate_content(model="gemini-2.5-pro%23x", contents="hi")
    assert raised.value.code == 400 and "invalid model" in raised.value.message
    assert fake.requests == []
    assert plain.models.generate_content(model="gemini-2.5-flash", contents="hi").text == fake.text

