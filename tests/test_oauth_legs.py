"""Where OAuth and service-account credentials send a request, with which headers and body, and
how their answers come back (Codex's forced stream, the Code Assist envelope)."""

from __future__ import annotations

import json

from auth.credential import Credential
from routing import legs
from routing.endpoints import Endpoint, Kind
from routing.router import Route
from routing.upstream import ClientRequest
from translators.code_assist import Unwrapper
from translators.formats import Format


def oauth(provider: str, **kw) -> Credential:
    kw.setdefault("secret", "oauth-access-token")
    return Credential(provider=provider, source=f"{provider}-a.json", kind=kw.pop("kind", "oauth"),
                      path=f"/auth/{provider}-a.json", **kw)


def call(fmt: Format, body: dict | bytes, *, stream: bool = False, headers: dict | None = None,
         path: str = "", endpoint: Endpoint | None = None, query=()) -> ClientRequest:
    raw = body if isinstance(body, bytes) else json.dumps(body).encode()
    endpoint = endpoint or Endpoint(Kind.GENERATE, fmt)
    headers = headers or {}
    return ClientRequest(endpoint, "m", stream, "POST", path, tuple(query), headers, tuple(headers.items()),
                         raw, json.loads(raw))


ANTHROPIC_BODY = b'{"model": "claude-sonnet-4-5", "max_tokens": 5,  "messages": [{"role": "user", "content": "hi"}]}'
CHAT_BODY = {"model": "x", "messages": [{"role": "user", "content": "hi"}]}


def plan(cred: Credential, client: ClientRequest, model: str, overrides: dict | None = None) -> legs.Leg:
    return legs.plan(client, Route(cred, model), overrides or {})


def test_claude_oauth_uses_bearer_and_the_oauth_beta_and_keeps_the_body():
    client = call(Format.ANTHROPIC, ANTHROPIC_BODY, headers={"anthropic-beta": "interleaved-thinking-2025-05-14"})
    leg = plan(oauth("claude"), client, "claude-sonnet-4-5")
    assert leg.target.url == "https://api.anthropic.com/v1/messages"
    assert leg.target.auth_headers == {"authorization": "Bearer oauth-access-token"}
    assert leg.target.extra_headers["anthropic-beta"] == "interleaved-thinking-2025-05-14,oauth-2025-04-20"
    assert leg.body == ANTHROPIC_BODY and not leg.converts


def test_claude_oauth_beta_is_not_doubled():
    client = call(Format.ANTHROPIC, ANTHROPIC_BODY, headers={"anthropic-beta": "oauth-2025-04-20,claude-code-20250219"})
    leg = plan(oauth("claude"), client, "claude-sonnet-4-5")
    assert leg.target.extra_headers["anthropic-beta"] == "oauth-2025-04-20,claude-code-20250219"


def test_claude_oauth_follows_overrides():
    leg = plan(oauth("claude"), call(Format.ANTHROPIC, ANTHROPIC_BODY), "claude-x",
               {"api.anthropic.com": "http://127.0.0.1:9"})
    assert leg.target.url == "http://127.0.0.1:9/v1/messages"


def test_codex_oauth_goes_to_the_chatgpt_backend_with_the_account():
    body = {"model": "gpt-5", "input": "hi", "stream": True, "store": False, "instructions": "x",
            "include": ["reasoning.encrypted_content"]}
    raw = json.dumps(body).encode()
    leg = plan(oauth("codex", account_id="acct-1"), call(Format.OPENAI_RESPONSES, raw, stream=True), "gpt-5")
    assert leg.target.url == "https://chatgpt.com/backend-api/codex/responses"
    assert leg.target.auth_headers == {"authorization": "Bearer oauth-access-token"}
    assert leg.target.extra_headers["chatgpt-account-id"] == "acct-1"
    assert leg.target.extra_headers["originator"] == "codex_cli_rs"
    assert leg.body == raw  # already what the backend needs: untouched
    assert not leg.converts


def test_codex_oauth_keeps_the_clients_own_identity_headers():
    client = call(Format.OPENAI_RESPONSES, {"model": "gpt-5", "input": "hi"}, headers={"originator": "codex_vscode"})
    leg = plan(oauth("codex"), client, "gpt-5")
    assert "originator" not in leg.target.extra_headers
    assert "chatgpt-account-id" not in leg.target.extra_headers  # no account id known


def test_codex_oauth_forces_a_stream_and_reads_it_whole_for_a_non_stream_client():
    client = call(Format.OPENAI_RESPONSES, {"model": "gpt-5", "input": "hi", "max_output_tokens": 10})
    leg = plan(oauth("codex"), client, "gpt-5")
    sent = json.loads(leg.body)
    assert sent["stream"] is True and sent["store"] is False and "max_output_tokens" not in sent
    assert leg.aggregate and leg.converts
    stream = b"".join(
        b"event: %s\ndata: %s\n\n" % (e["type"].encode(), json.dumps(e).encode())
        for e in [
            {"type": "response.created", "response": {"id": "resp_1", "model": "gpt-5", "output": []}},
            {"type": "response.output_item.added", "output_index": 0,
             "item": {"type": "message", "id": "msg_1", "role": "assistant", "content": []}},
            {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "Hel"},
            {"type": "response.output_text.delta", "item_id": "msg_1", "output_index": 0, "content_index": 0, "delta": "lo"},
            {"type": "response.output_item.done", "output_index": 0,
             "item": {"type": "message", "id": "msg_1", "role": "assistant",
                      "content": [{"type": "output_text", "text": "Hello"}]}},
            {"type": "response.completed", "response": {"id": "resp_1", "model": "gpt-5", "status": "completed",
                                                        "usage": {"input_tokens": 3, "output_tokens": 2, "total_tokens": 5}}},
        ]
    )
    content_type, body = legs.whole_response(leg, client, 200, stream)
    answer = json.loads(body)
    assert content_type == "application/json"
    assert answer["object"] == "response" and answer["status"] == "completed"
    assert answer["output"][0]["content"][0]["text"] == "Hello"


def test_codex_oauth_serves_chat_clients_non_stream():
    client = call(Format.OPENAI_CHAT, CHAT_BODY)
    leg = plan(oauth("codex"), client, "gpt-5")
    assert leg.aggregate and leg.translated
    assert json.loads(leg.body)["stream"] is True


def test_codex_stream_error_becomes_an_error_answer():
    client = call(Format.OPENAI_RESPONSES, {"model": "gpt-5", "input": "hi"})
    leg = plan(oauth("codex"), client, "gpt-5")
    failed = b'data: {"type":"response.created","response":{"id":"r","model":"gpt-5"}}\n\n' \
             b'data: {"type":"response.failed","response":{"id":"r","status":"failed","error":{"code":"rate_limit_exceeded","message":"slow down"}}}\n\n'
    try:
        legs.whole_response(leg, client, 200, failed)
    except legs.UpstreamStreamError as e:
        assert "slow down" in e.message
    else:
        raise AssertionError("expected an UpstreamStreamError")


GEMINI_BODY = b'{"contents": [{"role": "user", "parts": [{"text": "hi", "thoughtSignature": "c2ln"}]}]}'


def gemini_call(action: str, body: bytes = GEMINI_BODY, query=()) -> ClientRequest:
    kind = Kind.COUNT_TOKENS if action == "countTokens" else Kind.GENERATE
    endpoint = Endpoint(kind, Format.GEMINI, "gemini-2.5-pro", action, "v1beta")
    return call(Format.GEMINI, body, stream=action == "streamGenerateContent", endpoint=endpoint, query=query)


def test_gemini_cli_wraps_the_clients_bytes_in_the_code_assist_envelope():
    leg = plan(oauth("gemini-cli", project_id="proj-1"), gemini_call("generateContent"), "gemini-2.5-pro")
    assert leg.target.url == "https://cloudcode-pa.googleapis.com/v1internal:generateContent"
    assert leg.target.auth_headers == {"authorization": "Bearer oauth-access-token"}
    assert leg.body == b'{"model":"gemini-2.5-pro","project":"proj-1","request":' + GEMINI_BODY + b"}"
    assert leg.envelope and leg.converts and not leg.translated
    answer = json.dumps({"response": {"candidates": [{"content": {"parts": [{"text": "ok"}]}}]}, "traceId": "t"}).encode()
    _, body = legs.whole_response(leg, gemini_call("generateContent"), 200, answer)
    # The envelope's traceId is the answer's responseId, as Gemini CLI's converter reads it.
    assert json.loads(body) == {"candidates": [{"content": {"parts": [{"text": "ok"}]}}], "responseId": "t"}


def test_gemini_cli_streams_over_sse_and_unwraps_each_event():
    for query, sse in (((("alt", "sse"),), True), ((), False)):
        client = gemini_call("streamGenerateContent", query=query)
        leg = plan(oauth("gemini-cli", project_id="p"), client, "gemini-2.5-pro")
        assert leg.target.url == "https://cloudcode-pa.googleapis.com/v1internal:streamGenerateContent?alt=sse"
        stream = legs.stream_translator(leg, client)
        assert isinstance(stream, Unwrapper)
        out = b"".join(
            stream(b'data: {"response": {"candidates": [{"content": {"parts": [{"text": "a"}]}}]}, "traceId": "t"}\r\n\r\ndata: {"resp')
            + stream(b'onse": {"candidates": [{"content": {"parts": [{"text": "b"}]}, "finishReason": "STOP"}]}}\r\n\r\n')
            + stream(b"")
        )
        if sse:
            texts = [json.loads(line[6:])["candidates"][0]["content"]["parts"][0]["text"]
                     for line in out.split(b"\r\n\r\n") if line]
        else:
            texts = [c["candidates"][0]["content"]["parts"][0]["text"] for c in json.loads(out)]
        assert texts == ["a", "b"]


def test_gemini_cli_count_tokens():
    leg = plan(oauth("gemini-cli", project_id="p"), gemini_call("countTokens"), "gemini-2.5-pro")
    assert leg.target.url == "https://cloudcode-pa.googleapis.com/v1internal:countTokens"
    assert json.loads(leg.body) == {"request": {"model": "models/gemini-2.5-pro", "contents": json.loads(GEMINI_BODY)["contents"]}}
    _, body = legs.whole_response(leg, gemini_call("countTokens"), 200, b'{"totalTokens": 7}')
    assert json.loads(body) == {"totalTokens": 7}


def test_other_formats_reach_code_assist_translated_and_wrapped():
    client = call(Format.OPENAI_CHAT, CHAT_BODY)
    leg = plan(oauth("antigravity", project_id="ag-proj"), client, "gemini-2.5-flash")
    assert leg.target.url == "https://daily-cloudcode-pa.googleapis.com/v1internal:generateContent"
    sent = json.loads(leg.body)
    assert (sent["model"], sent["project"]) == ("gemini-2.5-flash", "ag-proj")
    assert sent["request"]["contents"][0]["parts"][0]["text"] == "hi"
    answer = json.dumps({"response": {"candidates": [{"content": {"role": "model", "parts": [{"text": "ok"}]},
                                                      "finishReason": "STOP"}]}}).encode()
    _, body = legs.whole_response(leg, client, 200, answer)
    assert json.loads(body)["choices"][0]["message"]["content"] == "ok"


def test_qwen_kimi_iflow_xai_targets():
    chat = call(Format.OPENAI_CHAT, CHAT_BODY)
    qwen = plan(oauth("qwen", base_url="https://dashscope.example/v1"), chat, "qwen3-coder-plus")
    assert qwen.target.url == "https://dashscope.example/v1/chat/completions"
    assert qwen.target.extra_headers["x-dashscope-authtype"] == "qwen-oauth"
    assert plan(oauth("qwen"), chat, "qwen3-coder-plus").target.url == "https://portal.qwen.ai/v1/chat/completions"
    iflow = plan(oauth("iflow", secret="sk-iflow-key"), chat, "glm-4.6")
    assert iflow.target.url == "https://apis.iflow.cn/v1/chat/completions"
    assert iflow.target.auth_headers == {"authorization": "Bearer sk-iflow-key"}
    kimi = plan(oauth("kimi"), call(Format.ANTHROPIC, ANTHROPIC_BODY), "kimi-k2")
    assert kimi.target.url == "https://api.kimi.com/coding/v1/messages"
    assert json.loads(kimi.body)["model"] == "k2"  # as CLIProxyAPI's Kimi executor sends it
    assert kimi.target.auth_headers == {"authorization": "Bearer oauth-access-token"}
    assert "anthropic-beta" not in kimi.target.extra_headers
    xai = plan(oauth("xai"), call(Format.OPENAI_RESPONSES, {"model": "grok-4", "input": "hi"}), "grok-4")
    assert xai.target.url == "https://cli-chat-proxy.grok.com/v1/responses"


def test_vertex_targets():
    sa = oauth("vertex", kind="service-account", project_id="proj", location="europe-west4")
    leg = plan(sa, gemini_call("generateContent"), "gemini-2.5-pro")
    assert leg.target.url == (
        "https://europe-west4-aiplatform.googleapis.com/v1/projects/proj/locations/europe-west4"
        "/publishers/google/models/gemini-2.5-pro:generateContent"
    )
    assert leg.target.auth_headers == {"authorization": "Bearer oauth-access-token"}
    assert leg.body == GEMINI_BODY
    glob = oauth("vertex", kind="service-account", project_id="proj", location="global")
    url = plan(glob, call(Format.OPENAI_CHAT, CHAT_BODY, stream=True), "gemini-2.5-pro").target.url
    assert url == ("https://aiplatform.googleapis.com/v1/projects/proj/locations/global"
                   "/publishers/google/models/gemini-2.5-pro:streamGenerateContent?alt=sse")


def test_api_keys_are_unchanged():
    key = Credential(provider="claude", source="claude-api-key[0]", secret="sk-ant-key")
    leg = plan(key, call(Format.ANTHROPIC, ANTHROPIC_BODY), "claude-x")
    assert leg.target.auth_headers == {"x-api-key": "sk-ant-key"} and leg.target.extra_headers == {}
    codex = Credential(provider="codex", source="codex-api-key[0]", secret="sk-key")
    leg = plan(codex, call(Format.OPENAI_RESPONSES, {"model": "gpt-5", "input": "hi"}), "gpt-5")
    assert leg.target.url == "https://api.openai.com/v1/responses" and not leg.aggregate


def test_oauth_ids_survive_a_refresh():
    a = oauth("claude", secret="token-1")
    b = oauth("claude", secret="token-2")
    assert a.id == b.id == "claude:claude-a.json"
    assert "token" not in a.label
