"""auth/providers: the contract every registered account type keeps, the rule that no other product
code names one, and that a new provider is one module plus one registry line."""

from __future__ import annotations

import asyncio
import json
import re
import time
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from auth import providers
from auth.credential import Credential
from auth.providers.base import Login, Provider, redirect
from auth.providers.grant import Refreshed, refresh_token_grant, refreshed
from auth.refresh import refresh_token
from auth.store import AuthStore
from auth.tokens import TokenFile, save_token_file
from routing import legs
from routing.endpoints import match
from routing.router import Router
from routing.upstream import ClientRequest
from tests.fakes.tokens import FakeTokenServer

ROOT = Path(__file__).resolve().parent.parent
PRODUCT = ("addons", "auth", "routing", "translators")

# Fields CLIProxyAPI or a user may have put in a token file that this proxy does not know: they
# must come back from a refresh exactly as they were (values, order, unicode, number spelling).
UNKNOWN = {
    "zz_custom": {"nested": [1, 2.5, "é", None, True], "b": {"c": "d"}},
    "aa_note": "ünïcode ✓",
    "big": 12345678901234567890,
}

# Per token-file type: what a CLIProxyAPI file of that type carries beyond the tokens. Every
# registered type needs a sample here (see test_every_file_type_has_a_contract_sample).
SAMPLES: dict[str, dict[str, Any]] = {
    "claude": {"email": "a@example.com"},
    "codex": {"email": "a@example.com", "account_id": "acct-1", "id_token": "x.e30.y"},
    "gemini": {"email": "a@example.com", "project_id": "proj-1"},
    "antigravity": {"email": "a@example.com", "project_id": "proj-1", "timestamp": 1700000000000, "expires_in": 3599},
    "qwen": {"email": "a@example.com", "resource_url": "portal.qwen.ai"},
    "kimi": {"device_id": "dev-1", "token_type": "Bearer", "scope": "kimi-code"},
    "iflow": {"email": "a@example.com", "api_key": "sk-iflow-old-key"},
    "xai": {"email": "a@example.com"},
    "vertex": {},  # a service account, made per test (a fresh RSA key)
}


@pytest.fixture
def tokens():
    with FakeTokenServer() as server:
        yield server


def _file_providers() -> list[Provider]:
    return [p for p in providers.all_providers() if p.file_type]


def _sample(tokens: FakeTokenServer, directory: Path, spec: Provider) -> Path:
    data: dict[str, Any] = {"type": spec.file_type}
    if spec.kind == "service-account":
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.asymmetric import rsa

        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
        pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ).decode()
        email = "sa@proj.iam.gserviceaccount.com"
        tokens.public_keys[email] = key.public_key()
        data["service_account"] = {"type": "service_account", "project_id": "proj", "private_key": pem,
                                   "client_email": email, "token_uri": "https://oauth2.googleapis.com/token"}
        data["project_id"] = "proj"
    else:
        pair = tokens.issue(spec.name)
        data.update(access_token=pair.access, refresh_token=pair.refresh, expired="2020-01-01T00:00:00Z")
    data.update(SAMPLES[spec.file_type])
    data.update(UNKNOWN)
    path = directory / f"{spec.file_type}-sample.json"
    save_token_file(TokenFile(path, data))
    return path


def _chat(model: str, headers: Mapping[str, str] | None = None) -> ClientRequest:
    body = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
    raw = json.dumps(body).encode()
    headers = dict(headers or {})
    return ClientRequest(match("POST", "/v1/chat/completions", {}), model, False, "POST",
                         "/v1/chat/completions", (), headers, tuple(headers.items()), raw, body)


def _model(spec: Provider) -> str:
    return spec.listing[0] if spec.listing else "some-model"


# -- the contract, for every registered provider -----------------------------------------------------


def test_every_file_type_has_a_contract_sample():
    assert set(providers.file_types()) == set(SAMPLES)


@pytest.mark.parametrize("spec", _file_providers(), ids=lambda p: p.file_type)
def test_a_token_file_loads_refreshes_and_keeps_unknown_fields_byte_stable(tokens, tmp_path, spec):
    path = _sample(tokens, tmp_path, spec)
    before = json.loads(path.read_text())
    store = AuthStore()
    store.set_directory(tmp_path)
    assert store.problems() == {}
    [cred] = store.credentials()
    assert (cred.provider, cred.kind) == (spec.name, spec.kind)
    assert providers.of(cred) is spec

    async def refresh() -> Refreshed:
        async with httpx.AsyncClient() as client:
            return await refresh_token(cred, store.entry(cred.id).token, client, tokens.overrides())

    result = asyncio.run(refresh())
    assert tokens.calls, "the refresh reached the (fake) token endpoint"
    if result.persist:
        assert result.token.access_token and result.token.access_token != before["access_token"]
        save_token_file(result.token)
    else:
        assert result.secret.startswith("at-") and result.expires_at and result.expires_at > time.time()
    after = json.loads(path.read_text())
    for key, value in UNKNOWN.items():
        assert json.dumps(after[key], ensure_ascii=False) == json.dumps(value, ensure_ascii=False)
    # Unknown fields keep their place in the file too.
    assert [k for k in after if k in UNKNOWN] == [k for k in before if k in UNKNOWN]
    text = path.read_text()
    for key in UNKNOWN:
        assert json.dumps({key: UNKNOWN[key]}, indent=2, ensure_ascii=False)[2:-2] in text


@pytest.mark.parametrize("spec", providers.all_providers(), ids=lambda p: f"{p.name}-{p.kind}")
def test_an_upstream_request_is_decorated_as_the_provider_says(spec):
    ids = {"project_id": "proj", "location": "europe-west4", "account_id": "acct-1", "device_id": "dev-1"}
    # A service of its own (OpenAI-compatible) has no base URL but the one configured.
    base_url = "" if spec.upstream_base(Credential(spec.name, "x", "", kind=spec.kind, **ids)) else "https://compat.example/v1"
    cred = Credential(provider=spec.name, source="contract", secret="s" * 24, kind=spec.kind, base_url=base_url, **ids)
    client = _chat(_model(spec), {"user-agent": "contract-test/1"})
    overrides = {"api.anthropic.com": "http://127.0.0.1:1"}
    leg = legs.plan(client, Router([cred]).resolve(_model(spec))[0], overrides)
    assert leg.upstream.value == spec.wire
    assert leg.target.url.startswith(redirect(spec.upstream_base(cred), overrides))
    assert leg.target.auth_headers == spec.auth_headers(cred) and "s" * 24 in "".join(leg.target.auth_headers.values())
    expected = spec.headers(cred, client.headers)
    assert set(expected) <= set(leg.target.extra_headers)
    volatile = {"session-id", "x-iflow-timestamp", "x-iflow-signature"}  # fresh per attempt
    assert {k: v for k, v in expected.items() if k not in volatile} == {
        k: v for k, v in leg.target.extra_headers.items() if k in expected and k not in volatile}


def test_every_provider_names_its_families_wire_and_marker():
    from translators.formats import CLIENT_ONLY, Format

    for spec in providers.all_providers():
        assert Format(spec.wire) not in CLIENT_ONLY
        assert spec.families and spec.marker.startswith(":")
        assert all(Router([Credential(spec.name, "x", "k", kind=spec.kind, base_url="http://h")]).resolve(m)
                   for m in spec.listing)


def test_logins_point_at_modules_that_have_a_login_flow():
    import importlib

    for command, spec in providers.logins().items():
        assert spec.login is not None and spec.login.command == command
        assert callable(importlib.import_module(spec.login.module).login)


# -- no other code names a provider --------------------------------------------------------------


def _type_strings() -> set[str]:
    """The names a subscription provider goes by: its pool name and its token-file type. A wire
    format's name ("gemini") is not one, even where a file type borrows it."""
    wires = {p.wire for p in providers.all_providers()}
    names = {p.name for p in providers.all_providers() if p.kind != "api-key"}
    names |= {p.file_type for p in providers.all_providers() if p.file_type}
    return names - wires


def _allowed() -> set[Path]:
    """The provider modules, the registry, and each provider's own login flow."""
    allowed = set((ROOT / "auth" / "providers").rglob("*.py"))
    for spec in providers.logins().values():
        assert spec.login is not None
        allowed.add((ROOT / Path(*spec.login.module.split("."))).with_suffix(".py"))
    # CLIProxyAPI's config.yaml keys (`xai:`, `codex:` sections this proxy does not implement),
    # listed so that a CLIProxyAPI config loads with a warning: key names, not provider types.
    allowed.add(ROOT / "routing" / "config_keys.py")
    return allowed


def test_no_product_code_outside_the_provider_modules_names_a_provider():
    names = sorted(_type_strings())
    assert {"claude", "codex", "gemini-cli", "antigravity", "qwen", "kimi", "iflow", "vertex", "xai"} <= set(names)
    quoted = re.compile("[\"'](" + "|".join(map(re.escape, names)) + ")[\"']")
    allowed = _allowed()
    offenders = []
    for package in PRODUCT:
        for path in sorted((ROOT / package).rglob("*.py")):
            if path in allowed:
                continue
            for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
                if quoted.search(line):
                    offenders.append(f"{path.relative_to(ROOT)}:{number}: {line.strip()}")
    assert offenders == [], "provider type strings outside auth/providers/:\n" + "\n".join(offenders)


def test_each_subscription_type_string_lives_in_at_most_three_product_files():
    counts = {}
    for name in _type_strings():
        quoted = re.compile(f"[\"']{re.escape(name)}[\"']")
        files = [p for package in PRODUCT for p in (ROOT / package).rglob("*.py")
                 if p != ROOT / "routing" / "config_keys.py" and quoted.search(p.read_text(encoding="utf-8"))]
        counts[name] = len(files)
    assert max(counts.values()) <= 3, counts


# -- a new provider: one module, one registry line ------------------------------------------------


@dataclass(frozen=True)
class ToyCo(Provider):
    """A made-up vendor: OAuth, Chat Completions, an id header from its token file."""

    def read(self, token: TokenFile) -> dict[str, Any]:
        return {"account_id": str(token.data.get("toy_account") or "")}

    async def refresh(self, cred, token, client, overrides) -> Refreshed:
        _, fields = await refresh_token_grant(self, cred, token, client, overrides)
        return refreshed(token, fields)

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        return {"x-toy-account": cred.account_id}


TOY = ToyCo(
    "toyco", "oauth", wire="openai-chat", families=("toy-*",), listing=("toy-1",), marker=":robot:",
    file_type="toyco", base_url="https://api.toy.example/v2", token_url="https://auth.openai.com/oauth/token",
    client_id="toy-client", login=Login("toyco", "ToyCo", "auth.login.claude"),
)


@pytest.fixture
def toy():
    providers.register(TOY)
    yield TOY
    providers.unregister(TOY)
    assert providers.by_file_type("toyco") is None


def test_a_provider_registered_at_run_time_is_loaded_routed_planned_and_refreshed(toy, tokens, tmp_path):
    pair = tokens.issue("toy")
    save_token_file(TokenFile(tmp_path / "toyco-me.json", {
        "type": "toyco", "access_token": pair.access, "refresh_token": pair.refresh, "toy_account": "T-42"}))
    store = AuthStore()
    store.set_directory(tmp_path)
    [cred] = store.credentials()
    assert (cred.provider, cred.account_id) == ("toyco", "T-42")

    router = Router(store.credentials())
    assert [m.id for m in router.models()] == ["toy-1"]
    [route] = router.resolve("toy-7b")  # its family, not only its listing
    leg = legs.plan(_chat("toy-7b"), route, {})
    assert leg.target.url == "https://api.toy.example/v2/chat/completions"
    assert leg.target.auth_headers == {"authorization": f"Bearer {pair.access}"}
    assert leg.target.extra_headers["x-toy-account"] == "T-42"
    assert leg.request is None  # a Chat Completions client on a Chat Completions upstream

    async def refresh() -> Refreshed:
        async with httpx.AsyncClient() as client:
            return await refresh_token(cred, store.entry(cred.id).token, client, tokens.overrides())

    result = asyncio.run(refresh())
    assert tokens.calls[-1].client_id == "toy-client"
    assert result.token.access_token == tokens.current("toy").access
    assert result.token.data["toy_account"] == "T-42"
    assert providers.logins()["toyco"] is toy
