"""Transparent interception through mitmdump's regular proxy, with the official SDKs as the
vendor clients (the real CLIs are driven in test_e2e_cli.py)."""

from __future__ import annotations

import datetime
import functools
import socket
import ssl
import threading

import anthropic
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from google import genai
from google.genai import types as genai_types

from tests.clients import ask_claude
from tests.conftest import vendor_overrides
from tests.fakes.upstream import FakeUpstream

POOL_A = "sk-ant-pool-intercept-AAAA"
POOL_B = "sk-ant-pool-intercept-BBBB"
POOL_GEMINI = "AIza-pool-intercept-GGGG"
CLI_OWN = "sk-ant-the-cli-own-key-0000"


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy(
        {
            "claude-api-key": [
                {"api-key": POOL_A, "excluded-models": ["claude-unpooled-*"]},
                {"api-key": POOL_B, "excluded-models": ["claude-unpooled-*"]},
            ],
            "gemini-api-key": [
                {"api-key": POOL_GEMINI, "models": [{"name": "gemini-2.5-pro", "alias": "claude-routed-to-gemini"}]}
            ],
            "upstream-overrides": vendor_overrides(fake),
            "routing": {"strategy": "fill-first"},
        }
    )


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream):
    fake.clear()


def trusting_mitmproxy(proxy) -> ssl.SSLContext:
    return ssl.create_default_context(cafile=str(proxy.confdir / "mitmproxy-ca-cert.pem"))


def http_client(proxy):
    proxy_url = f"http://127.0.0.1:{proxy.proxy_port}"
    return anthropic.DefaultHttpxClient(proxy=proxy_url, verify=trusting_mitmproxy(proxy), timeout=30)


def vendor_claude(proxy, **kw) -> anthropic.Anthropic:
    """Claude as a CLI would use it: the vendor's own host, its own key, HTTPS_PROXY."""
    return anthropic.Anthropic(api_key=CLI_OWN, max_retries=0, http_client=http_client(proxy), **kw)


ask = functools.partial(ask_claude, max_tokens=16)


def test_cli_call_is_served_by_a_pool_credential(proxy, fake):
    message = ask(vendor_claude(proxy))
    assert message.content[0].text == fake.text
    (seen,) = fake.requests
    assert seen.api_key == POOL_A
    assert CLI_OWN not in repr(seen.headers)


def test_only_the_credential_changes(proxy, fake):
    """What reaches the upstream equals what the client sends it directly, but for the key."""
    direct = anthropic.Anthropic(
        api_key=CLI_OWN, base_url=fake.base_url, max_retries=0, http_client=anthropic.DefaultHttpxClient(timeout=30)
    )
    ask(direct)
    ask(vendor_claude(proxy))
    sent, proxied = fake.requests
    assert proxied.body == sent.body
    assert proxied.path == sent.path
    ignore = {"x-api-key", "authorization", "host", "x-stainless-retry-count", "x-stainless-read-timeout"}
    strip = lambda h: {k: v for k, v in h.items() if k not in ignore}  # noqa: E731
    assert strip(proxied.headers) == strip(sent.headers)


def test_rate_limited_pool_key_is_invisible_to_the_cli(proxy, fake):
    fake.fail(POOL_A, 429, headers={"Retry-After": "30"}, times=1)
    with vendor_claude(proxy).messages.stream(
        model="claude-test-9", max_tokens=16, messages=[{"role": "user", "content": "hi"}]
    ) as stream:
        assert "".join(stream.text_stream) == fake.expected_stream_text()
    assert fake.keys_used() == [POOL_A, POOL_B]


def test_cli_model_routed_to_another_provider_is_translated(proxy, fake):
    message = ask(vendor_claude(proxy), "claude-routed-to-gemini")
    assert message.content[0].text == fake.text
    (seen,) = fake.requests
    assert (seen.vendor, seen.api_key) == ("gemini", POOL_GEMINI)
    assert seen.path == "/v1beta/models/gemini-2.5-pro:generateContent"


def test_call_without_a_pool_credential_passes_through(proxy, fake):
    ask(vendor_claude(proxy), "claude-unpooled-1")
    (seen,) = fake.requests
    assert seen.api_key == CLI_OWN  # the CLI's own credential, as it sent it
    assert "no pool credential serves 'claude-unpooled-1'" in proxy.output()


def test_gemini_sdk_is_intercepted_too(proxy, fake):
    client = genai.Client(
        api_key="AIza-the-cli-own-gemini-key",
        http_options=genai_types.HttpOptions(
            api_version="v1beta",
            client_args={"proxy": f"http://127.0.0.1:{proxy.proxy_port}", "verify": trusting_mitmproxy(proxy)},
        ),
    )
    result = client.models.generate_content(model="claude-routed-to-gemini", contents="hi")
    assert result.text == fake.text
    assert fake.requests[0].api_key == POOL_GEMINI


def _self_signed() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "not-intercepted.test")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(days=1))
        .not_valid_after(now + datetime.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    return (
        cert.public_bytes(serialization.Encoding.PEM),
        key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()),
    )


def test_other_hosts_tunnel_without_tls_interception(proxy, tmp_path):
    cert, key = _self_signed()
    (tmp_path / "cert.pem").write_bytes(cert)
    (tmp_path / "key.pem").write_bytes(key)
    server_ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    server_ctx.load_cert_chain(tmp_path / "cert.pem", tmp_path / "key.pem")
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]

    def serve_one() -> None:
        conn, _ = listener.accept()
        with server_ctx.wrap_socket(conn, server_side=True) as tls:
            tls.recv(1024)
            tls.sendall(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\nconnection: close\r\n\r\nok")

    threading.Thread(target=serve_one, daemon=True).start()
    with socket.create_connection(("127.0.0.1", proxy.proxy_port), timeout=10) as raw:
        raw.sendall(f"CONNECT 127.0.0.1:{port} HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\n\r\n".encode())
        assert raw.recv(1024).startswith(b"HTTP/1.1 200")
        client_ctx = ssl.create_default_context(cafile=str(tmp_path / "cert.pem"))
        client_ctx.check_hostname = False
        # Only the origin's own certificate verifies: a certificate minted by mitmproxy would not.
        with client_ctx.wrap_socket(raw, server_hostname="not-intercepted.test") as tls:
            tls.sendall(b"GET / HTTP/1.1\r\nhost: x\r\n\r\n")
            assert tls.recv(1024).endswith(b"ok")
    listener.close()


def test_the_clis_own_key_stays_out_of_kept_flows(fake, make_proxy, tmp_path):
    """Served by the pool, passed through with the CLI's key, refused, or refused as malformed:
    the CLI's own key is in no saved flow and no line of a full flow dump."""
    from mitmproxy import io as mitm_io

    flows = tmp_path / "intercepted.mitm"
    proxy = make_proxy(
        {
            "claude-api-key": [{"api-key": POOL_A, "excluded-models": ["claude-unpooled-*"]}],
            "upstream-overrides": vendor_overrides(fake),
        },
        extra_args=("--set", "flow_detail=4", "-w", str(flows)),
    )
    client = vendor_claude(proxy)
    ask(client)  # the pool serves it
    ask(client, "claude-unpooled-1")  # passed through on the CLI's own key
    with pytest.raises(anthropic.BadRequestError):
        client.messages.create(model="claude-test-1", max_tokens=8, messages="hi")
    with pytest.raises(anthropic.BadRequestError):  # a model name that would change the path
        ask(client, "../../v1/models")
    assert [r.api_key for r in fake.requests] == [POOL_A, CLI_OWN]
    proxy.stop()
    assert CLI_OWN not in proxy.output()
    assert CLI_OWN.encode() not in flows.read_bytes()
    with flows.open("rb") as f:
        kept = [fl for fl in mitm_io.FlowReader(f).stream() if fl.type == "http"]
    assert len(kept) == 4
