"""Exposure of the two entrances, through a real mitmdump: loopback by default, api-keys required
beyond it, and the interception proxy asking for one of them as proxy credentials.

Some proxies here bind 0.0.0.0 (every test still talks to them over 127.0.0.1 only); each one
has api-keys, or is refused before it serves anything.
"""

from __future__ import annotations

import base64
import os
import socket
import ssl
import subprocess
import sys
import time

import anthropic
import httpx
import pytest

from tests.clients import ask_claude as ask
from tests.conftest import OMIT, ROOT, vendor_overrides
from tests.fakes.upstream import FakeUpstream

POOL = "sk-ant-pool-exposure-AAAA"
CLIENT_KEY = "client-key-exposure-0001"
CLI_OWN = "sk-ant-the-cli-own-key-0000"


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def pool_config(fake: FakeUpstream, **extra) -> dict:
    return {"claude-api-key": [{"api-key": POOL}], "upstream-overrides": vendor_overrides(fake), **extra}


def vendor_claude(proxy, proxy_url: str) -> anthropic.Anthropic:
    """Claude as a CLI uses it: the vendor's own host and key, through HTTPS_PROXY."""
    verify = ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))
    http_client = anthropic.DefaultHttpxClient(proxy=proxy_url, verify=verify, timeout=30, trust_env=False)
    return anthropic.Anthropic(api_key=CLI_OWN, max_retries=0, http_client=http_client)


def basic(user: str, password: str) -> str:
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()


def connect(proxy, headers: str = "") -> bytes:
    """Send a CONNECT for the Anthropic API to the interception proxy; its answer's head."""
    with socket.create_connection(("127.0.0.1", proxy.proxy_port), timeout=10) as raw:
        raw.sendall(f"CONNECT api.anthropic.com:443 HTTP/1.1\r\nHost: api.anthropic.com:443\r\n{headers}\r\n".encode())
        return raw.recv(4096)


def assert_exits_with_one_line(proxy, expected: str) -> None:
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) == 1
    output = proxy.output()
    assert f"{proxy.config_path}: {expected}" in output
    assert "Traceback" not in output
    lines = [line for line in output.splitlines() if str(proxy.config_path) in line]
    assert len(lines) == 1, output


# -- loopback by default -------------------------------------------------------------------


def settled_sockets(proxy, expected: set, timeout: float = 5.0) -> set:
    """The sockets the proxy listens on at the entrances' ports, once they are `expected` or
    `timeout` has passed (mitmproxy 12 may start its proxy before the addon has moved it to
    loopback)."""
    ports = {port for _, port in expected}
    deadline = time.monotonic() + timeout
    while (found := {s for s in proxy.listening() if s[1] in ports}) != expected and time.monotonic() < deadline:
        time.sleep(0.05)
    return found


def test_both_entrances_listen_on_loopback_by_default(make_proxy):
    proxy = make_proxy({"host": OMIT}, listen_host=None)
    expected = {("127.0.0.1", proxy.port), ("127.0.0.1", proxy.proxy_port)}
    assert settled_sockets(proxy, expected) == expected
    # Whatever else the proxy listens on (the relay to the upstreams) is loopback too.
    assert {host for host, _ in proxy.listening()} == {"127.0.0.1"}


def test_an_explicit_listen_host_wins(make_proxy, fake):
    proxy = make_proxy(pool_config(fake, **{"api-keys": [CLIENT_KEY]}), listen_host="0.0.0.0")
    assert ("0.0.0.0", proxy.proxy_port) in proxy.listening()
    assert ("127.0.0.1", proxy.port) in proxy.listening()


# -- beyond loopback without api-keys --------------------------------------------------------


def test_interception_proxy_beyond_loopback_without_api_keys_refuses_to_start(make_proxy, fake):
    proxy = make_proxy(pool_config(fake), start=False, listen_host="0.0.0.0")
    assert_exits_with_one_line(
        proxy,
        f"api-keys: required, because the interception proxy on 0.0.0.0:{proxy.proxy_port} listens "
        "beyond loopback",
    )
    assert fake.requests == []


@pytest.mark.parametrize("host", ["0.0.0.0", "", "::"])
def test_listener_beyond_loopback_without_api_keys_refuses_to_start(make_proxy, fake, host):
    proxy = make_proxy(pool_config(fake, host=host), start=False)
    assert_exits_with_one_line(proxy, "api-keys: required, because the API listener on ")
    assert "set allow-unauthenticated-exposure: true" in proxy.output()


def test_a_reload_that_would_expose_without_keys_is_rejected(make_proxy, fake):
    proxy = make_proxy(pool_config(fake))
    mark = len(proxy.output())
    proxy.write_config(pool_config(fake, host="0.0.0.0"))
    proxy.wait_for_output("config edit rejected", start=mark)
    assert "api-keys: required, because the API listener on 0.0.0.0" in proxy.output()[mark:]
    assert ("127.0.0.1", proxy.port) in proxy.listening()
    client = anthropic.Anthropic(api_key="unused", base_url=proxy.base_url, max_retries=0)
    assert ask(client).content[0].text == fake.text
    assert proxy.process.poll() is None


def test_the_opt_out_serves_without_keys_and_warns_at_start_and_on_each_reload(make_proxy, fake):
    config = pool_config(fake, **{"allow-unauthenticated-exposure": True})
    proxy = make_proxy(config, listen_host="0.0.0.0")
    warning = f"WARNING: the interception proxy on 0.0.0.0:{proxy.proxy_port} serves the credential pool"
    assert warning in proxy.output()
    assert ask(vendor_claude(proxy, f"http://127.0.0.1:{proxy.proxy_port}")).content[0].text == fake.text
    mark = len(proxy.output())
    proxy.write_config({**config, "request-retry": 1})
    proxy.wait_for_output("reloaded", start=mark)
    assert warning in proxy.output()[mark:]


# -- the interception proxy asks for credentials ---------------------------------------------


@pytest.fixture
def exposed(make_proxy, fake):
    """The interception proxy on every interface, with a client key."""
    return make_proxy(pool_config(fake, **{"api-keys": [CLIENT_KEY, "second-client-key-0002"]}), listen_host="0.0.0.0")


def test_exposed_interception_proxy_refuses_a_client_without_credentials(exposed, fake):
    with pytest.raises(anthropic.APIConnectionError):
        ask(vendor_claude(exposed, f"http://127.0.0.1:{exposed.proxy_port}"))
    head = connect(exposed)
    assert head.startswith(b"HTTP/1.1 407")
    assert b'Proxy-Authenticate: Basic realm="cliproxy"' in head
    assert fake.requests == []


@pytest.mark.parametrize("credentials", [basic("cliproxy", "wrong-key"), basic(CLIENT_KEY, ""), "Bearer " + CLIENT_KEY])
def test_wrong_proxy_credentials_are_refused(exposed, fake, credentials):
    head = connect(exposed, f"Proxy-Authorization: {credentials}\r\n")
    assert head.startswith(b"HTTP/1.1 407")
    assert fake.requests == []


@pytest.mark.parametrize("user", ["cliproxy", "anyone"])
def test_exposed_interception_proxy_serves_a_client_with_credentials(exposed, fake, user):
    message = ask(vendor_claude(exposed, f"http://{user}:second-client-key-0002@127.0.0.1:{exposed.proxy_port}"))
    assert message.content[0].text == fake.text
    (seen,) = fake.requests
    assert seen.api_key == POOL
    assert "proxy-authorization" not in {k.lower() for k in seen.headers}


def test_a_plain_proxied_request_needs_credentials_too(exposed, fake):
    body = {"model": "claude-test-1", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    url = "http://api.anthropic.com/v1/messages"
    headers = {"x-api-key": CLI_OWN, "anthropic-version": "2023-06-01"}
    with httpx.Client(proxy=f"http://127.0.0.1:{exposed.proxy_port}", trust_env=False, timeout=30) as client:
        refused = client.post(url, json=body, headers=headers)
    assert refused.status_code == 407
    assert refused.headers["proxy-authenticate"] == 'Basic realm="cliproxy"'
    assert refused.json()["type"] == "error"  # in the API's own shape
    assert fake.requests == []
    with httpx.Client(
        proxy=f"http://cliproxy:{CLIENT_KEY}@127.0.0.1:{exposed.proxy_port}", trust_env=False, timeout=30
    ) as client:
        served = client.post(url, json=body, headers=headers)
    assert served.status_code == 200
    (seen,) = fake.requests
    assert seen.api_key == POOL
    assert "proxy-authorization" not in {k.lower() for k in seen.headers}
    assert CLIENT_KEY not in repr(seen.headers)


def test_the_listener_still_takes_its_keys_as_usual(exposed, fake):
    client = anthropic.Anthropic(api_key=CLIENT_KEY, base_url=exposed.base_url, max_retries=0)
    assert ask(client).content[0].text == fake.text
    with pytest.raises(anthropic.AuthenticationError):
        ask(anthropic.Anthropic(api_key="not-a-key", base_url=exposed.base_url, max_retries=0))


# -- cliproxy env ------------------------------------------------------------------------------


def cliproxy(*args: str, cwd=None) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k.lower() not in ("https_proxy", "http_proxy", "all_proxy")}
    return subprocess.run(
        [sys.executable, "-m", "routing.cli", *args], capture_output=True, text=True, timeout=60, env=env, cwd=cwd or ROOT
    )


def exported_proxy(output: str) -> str:
    """HTTPS_PROXY as a shell evaluating `output` would set it."""
    script = f'{output}\nprintf %s "$HTTPS_PROXY"'
    return subprocess.run(["bash", "-c", script], capture_output=True, text=True, check=True).stdout


def test_env_prints_credentials_when_the_interception_proxy_asks_for_them(make_proxy, fake):
    # A key with characters that both a URL and a shell would otherwise take apart.
    key = "k3y/with:@ $pecial 'chars'%"
    proxy = make_proxy(pool_config(fake, **{"api-keys": [key]}), listen_host="0.0.0.0")
    result = cliproxy(
        "--config", str(proxy.config_path), "env", "claude",
        "--proxy-port", str(proxy.proxy_port), "--confdir", str(proxy.confdir),
    )
    assert result.returncode == 0, result.stderr
    url = exported_proxy(result.stdout)
    assert url.startswith("http://cliproxy:") and url.endswith(f"@127.0.0.1:{proxy.proxy_port}")
    assert ask(vendor_claude(proxy, url)).content[0].text == fake.text


def test_env_prints_no_credentials_where_none_are_needed(make_proxy, fake):
    proxy = make_proxy(pool_config(fake, **{"api-keys": [CLIENT_KEY]}))
    result = cliproxy(
        "--config", str(proxy.config_path), "env", "claude",
        "--proxy-port", str(proxy.proxy_port), "--confdir", str(proxy.confdir),
    )
    assert result.returncode == 0, result.stderr
    assert exported_proxy(result.stdout) == f"http://127.0.0.1:{proxy.proxy_port}"
    assert CLIENT_KEY not in result.stdout


def test_env_says_so_when_the_config_has_no_key_the_proxy_accepts(make_proxy, fake, tmp_path):
    proxy = make_proxy(pool_config(fake, **{"api-keys": [CLIENT_KEY]}), listen_host="0.0.0.0")
    other = tmp_path / "other.yaml"
    other.write_text("api-keys: [some-other-client-key]\n")
    result = cliproxy("--config", str(other), "env", "claude", "--proxy-port", str(proxy.proxy_port), "--confdir", str(proxy.confdir))
    assert result.returncode == 1
    assert result.stdout == ""
    assert "refuses the first api-key" in result.stderr
    assert "some-other-client-key" not in result.stderr


def test_proxy_credentials_sent_where_none_are_needed_are_never_passed_on(make_proxy, fake):
    config = pool_config(fake, **{"api-keys": [CLIENT_KEY]})
    config["claude-api-key"][0]["excluded-models"] = ["claude-unpooled-*"]
    proxy = make_proxy(config)
    body = {"model": "claude-unpooled-1", "max_tokens": 8, "messages": [{"role": "user", "content": "hi"}]}
    headers = {"x-api-key": CLI_OWN, "anthropic-version": "2023-06-01"}
    with httpx.Client(proxy=f"http://cliproxy:{CLIENT_KEY}@127.0.0.1:{proxy.proxy_port}", trust_env=False, timeout=30) as client:
        # A model no pool key serves: the call goes on as the client made it, but for the proxy's credentials.
        client.post("http://api.anthropic.com/v1/messages", json=body, headers=headers)
    (seen,) = fake.requests
    assert seen.api_key == CLI_OWN
    assert "proxy-authorization" not in {k.lower() for k in seen.headers}
