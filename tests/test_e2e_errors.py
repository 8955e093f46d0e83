"""Bad input and client authentication: clear errors in the API the client spoke, no leaks."""

from __future__ import annotations

import anthropic
import httpx
import openai
import pytest
from google import genai
from google.genai import errors as genai_errors
from google.genai import types as genai_types
from mitmproxy import io as mitm_io

from tests.conftest import free_port, vendor_overrides
from tests.fakes.upstream import FakeUpstream

CLIENT_KEY = "client-key-errors-test-9f8e7d"
CLAUDE_A = "sk-ant-errors-test-secret-A1"
CLAUDE_B = "sk-ant-errors-test-secret-B2"
GEMINI = "AIza-errors-test-secret-G3"
COMPAT = "sk-errors-test-secret-C4"


def config(fake: FakeUpstream, **extra) -> dict:
    return {
        "api-keys": [CLIENT_KEY],
        "claude-api-key": [{"api-key": CLAUDE_A}, {"api-key": CLAUDE_B}],
        "gemini-api-key": [{"api-key": GEMINI}],
        "openai-compatibility": [
            {
                "name": "compat",
                "base-url": fake.base_url + "/v1",
                "api-key-entries": [{"api-key": COMPAT}],
                "models": [{"name": "compat-model"}],
            }
        ],
        "upstream-overrides": vendor_overrides(fake),
        **extra,
    }


@pytest.fixture(scope="module")
def proxy(fake, make_module_proxy):
    return make_module_proxy(config(fake))


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def test_wrong_client_key_is_refused_in_every_format(proxy, fake):
    key = "wrong-key"
    with pytest.raises(openai.AuthenticationError):
        openai.OpenAI(api_key=key, base_url=proxy.base_url + "/v1", max_retries=0).chat.completions.create(
            model="compat-model", messages=[]
        )
    claude = anthropic.Anthropic(api_key=key, base_url=proxy.base_url, max_retries=0)
    with pytest.raises(anthropic.AuthenticationError) as raised:
        claude.messages.create(model="claude-test-1", max_tokens=5, messages=[])
    assert raised.value.body["error"]["type"] == "authentication_error"
    gemini = genai.Client(
        api_key=key,
        http_options=genai_types.HttpOptions(
            base_url=proxy.base_url, retry_options=genai_types.HttpRetryOptions(attempts=1)
        ),
    )
    with pytest.raises(genai_errors.ClientError) as graised:
        gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    assert graised.value.code == 401 and graised.value.status == "UNAUTHENTICATED"
    assert fake.requests == []


@pytest.mark.parametrize(
    "path,error_of",
    [
        ("/v1/chat/completions", lambda b: b["error"]["type"]),
        ("/v1/messages", lambda b: b["error"]["type"]),
        ("/v1beta/models/gemini-2.5-flash:generateContent", lambda b: b["error"]["status"]),
    ],
)
def test_missing_client_key_is_a_401(proxy, fake, path, error_of):
    r = proxy.post(path, json={"model": "compat-model"})
    assert r.status_code == 401
    assert error_of(r.json()) in ("authentication_error", "UNAUTHENTICATED")
    assert fake.requests == []


@pytest.mark.parametrize(
    "how",
    [
        {"headers": {"authorization": f"Bearer {CLIENT_KEY}"}},
        {"headers": {"x-api-key": CLIENT_KEY}},
        {"headers": {"x-goog-api-key": CLIENT_KEY}},
        {"params": {"key": CLIENT_KEY}},
    ],
)
def test_every_sdk_way_of_sending_the_key_works(proxy, how):
    assert proxy.get("/v1/models", **how).status_code == 200


@pytest.mark.parametrize(
    "path,shape",
    [
        ("/v1/chat/completions", "openai"),
        ("/v1/messages", "anthropic"),
        ("/v1beta/models/gemini-2.5-flash:generateContent", "gemini"),
    ],
)
def test_malformed_json_is_a_400_in_the_clients_shape(proxy, fake, path, shape):
    r = proxy.post(path, content=b'{"model": "x", ', headers={"x-api-key": CLIENT_KEY})
    assert r.status_code == 400
    body = r.json()
    if shape == "anthropic":
        assert body["type"] == "error" and body["error"]["type"] == "invalid_request_error"
    elif shape == "gemini":
        assert body["error"]["status"] == "INVALID_ARGUMENT"
    else:
        assert body["error"]["type"] == "invalid_request_error"
    assert "not valid JSON" in str(body)
    assert fake.requests == []


def test_unknown_route_is_a_404(proxy):
    r = proxy.post("/v1/nothing-here", json={}, headers={"x-api-key": CLIENT_KEY})
    assert r.status_code == 404
    assert "no such endpoint" in r.json()["error"]["message"]


def test_missing_model_is_a_400(proxy):
    r = proxy.post("/v1/messages", json={"messages": []}, headers={"x-api-key": CLIENT_KEY})
    assert r.status_code == 400
    assert "model" in r.json()["error"]["message"]


def test_no_secret_reaches_the_log_or_saved_flows(fake, make_proxy, tmp_path):
    """Debug logging, full flow dumps, a failover and a dead upstream: no pool key, and not the
    client's own key either, anywhere."""
    flows = tmp_path / "flows.mitm"
    dead = f"http://127.0.0.1:{free_port()}"
    cfg = config(fake, debug=True, routing={"strategy": "fill-first"})
    cfg["claude-api-key"].append({"api-key": "sk-ant-errors-test-dead-D5", "base-url": dead, "priority": 5})
    proxy = make_proxy(cfg, extra_args=("--set", "flow_detail=4", "-w", str(flows)))
    fake.fail(CLAUDE_A, 429, headers={"Retry-After": "30"}, times=1)
    claude = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=proxy.base_url, max_retries=0)
    # The dead upstream, then the 429: the third credential answers.
    claude.messages.create(model="claude-test-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    claude.messages.create(model="claude-test-1", max_tokens=5, messages=[{"role": "user", "content": "hi"}])
    gemini = genai.Client(api_key=CLIENT_KEY, http_options=genai_types.HttpOptions(base_url=proxy.base_url))
    gemini.models.generate_content(model="gemini-2.5-flash", contents="hi")
    openai.OpenAI(api_key=CLIENT_KEY, base_url=proxy.base_url + "/v1").chat.completions.create(
        model="compat-model", messages=[{"role": "user", "content": "hi"}]
    )
    assert fake.keys_used() == [CLAUDE_A, CLAUDE_B, CLAUDE_B, GEMINI, COMPAT]
    # Answered by the listener itself: a wrong key, an unknown route, the health check.
    proxy.get("/healthz", headers={"authorization": f"Bearer {CLIENT_KEY}"})
    proxy.post("/v1/nothing", json={}, headers={"x-api-key": CLIENT_KEY})
    proxy.post("/v1/messages", content=b"{", headers={"x-api-key": CLIENT_KEY})
    proxy.get(f"/v1beta/models?key={CLIENT_KEY}")
    # Refused by the size limits before the listener sees the call.
    too_big = proxy.post("/v1/messages", content=b"{}", headers={"x-api-key": CLIENT_KEY, "x-padding": "a" * 17_000})
    assert too_big.status_code == 431
    proxy.stop()

    output = proxy.output()
    assert "cliproxy" in output and "resting it" in output  # debug output really was produced
    saved = flows.read_bytes()
    for secret in (CLIENT_KEY, CLAUDE_A, CLAUDE_B, GEMINI, COMPAT, "sk-ant-errors-test-dead-D5"):
        assert secret not in output
        assert secret.encode() not in saved

    with flows.open("rb") as f:
        recorded = [fl for fl in mitm_io.FlowReader(f).stream() if fl.type == "http"]
    served = [fl for fl in recorded if fl.request.method == "POST" and fl.response and fl.response.status_code == 200]
    annotations = [fl.metadata["cliproxy"] for fl in served]
    assert {a["provider"] for a in annotations} == {"claude", "gemini", "compat"}
    failed_over = next(a for a in annotations if a["provider"] == "claude")
    assert failed_over["attempts"] == 3 and failed_over["credential"].startswith("claude-api-key[1]")
    outcomes = [a["outcome"] for a in failed_over["attempt_log"]]
    assert outcomes == ["unreachable (connection refused)", "429", "200"]
    assert all("cliproxy:" in fl.comment for fl in served)


def test_cors_preflight(proxy):
    r = httpx.options(proxy.base_url + "/v1/chat/completions")
    assert r.status_code == 204
    assert r.headers["access-control-allow-origin"] == "*"
