"""The image fetcher (addons.images) against real loopback servers: it connects to the address it
checked (one resolution, Host and TLS server name kept), re-checks every redirect hop, and caps
size and total time. Host names resolve through a stub, so nothing leaves loopback."""

from __future__ import annotations

import asyncio
import base64
import datetime
import ipaddress
import ssl
import time

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from addons.images import ImageFetcher
from routing.fetch_policy import FetchPolicy
from tests.fakes.image_host import PNG, ImageHost, Tripwire
from translators.canonical import Image
from translators.translate import TranslationError

LOOPBACK = ipaddress.ip_address("127.0.0.1")


class StubDNS:
    """Resolves made-up names to loopback addresses, counting the lookups."""

    def __init__(self, names: dict[str, list[str]]) -> None:
        self.names = names
        self.lookups: list[str] = []

    async def __call__(self, host: str, port: int):
        self.lookups.append(host)
        if host in self.names:
            return [ipaddress.ip_address(a) for a in self.names[host]]
        return [ipaddress.ip_address(host)]  # a literal: as the C library would


def fetch(url: str, policy: FetchPolicy, dns: StubDNS | None = None, **kw) -> Image:
    image = Image("", url=url)
    fetcher = ImageFetcher(resolver=dns or StubDNS({}), **kw)
    asyncio.run(fetcher.inline(image, policy))
    return image


def refused(url: str, policy: FetchPolicy, dns: StubDNS | None = None, **kw) -> str:
    with pytest.raises(TranslationError) as raised:
        fetch(url, policy, dns, **kw)
    return str(raised.value)


ALLOW_PUBLIC_TEST = FetchPolicy(allowed_hosts=("public.test",))


def test_the_connection_goes_to_the_checked_address_with_the_host_kept():
    # pinned.test exists only in the stub: a second resolution by the HTTP client would fail.
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        image = fetch(f"http://public.test:{host.port}/cat.png?sig=abc", ALLOW_PUBLIC_TEST, dns)
    assert (image.data, image.media_type, image.url) == (base64.b64encode(PNG).decode(), "image/png", None)
    assert [(s.path, s.host) for s in host.seen] == [("/cat.png?sig=abc", f"public.test:{host.port}")]
    assert dns.lookups == ["public.test"]


def test_the_next_checked_address_is_tried_when_one_refuses_the_connection():
    # Nothing listens on 127.0.0.2 at the image host's port.
    dns = StubDNS({"public.test": ["127.0.0.2", "127.0.0.1"]})
    with ImageHost() as host:
        image = fetch(f"http://public.test:{host.port}/cat.png", ALLOW_PUBLIC_TEST, dns)
    assert image.data == base64.b64encode(PNG).decode()
    assert len(host.seen) == 1


def test_a_redirect_into_a_refused_address_is_not_followed():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with Tripwire() as target, ImageHost() as host:
        message = refused(
            f"http://public.test:{host.port}/redirect?to=http://127.0.0.1:{target.port}/secret%3Fkey%3DSECRET&sig=SIG",
            ALLOW_PUBLIC_TEST, dns,
        )
        time.sleep(0.2)
    assert message.startswith(f"the image at http://public.test:{host.port}/redirect redirects to a host that does not")
    assert "SECRET" not in message and "SIG" not in message and str(target.port) not in message
    assert [s.path.split("?")[0] for s in host.seen] == ["/redirect"]  # the allowed hop was made
    assert target.connections == 0


@pytest.mark.parametrize("to", ["file:///etc/passwd", "gopher://127.0.0.1:70/", "http://169.254.169.254/latest/"])
def test_a_redirect_to_another_scheme_or_metadata_is_refused(to):
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        message = refused(f"http://public.test:{host.port}/redirect?to={to}", ALLOW_PUBLIC_TEST, dns)
    assert "only http and https" in message or "redirects to a host that does not resolve" in message


def test_a_relative_redirect_to_an_allowed_host_is_followed_and_rechecked():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        image = fetch(f"http://public.test:{host.port}/redirect?to=/cat.png", ALLOW_PUBLIC_TEST, dns)
    assert image.data == base64.b64encode(PNG).decode()
    assert dns.lookups == ["public.test", "public.test"]  # each hop checked


def test_redirects_are_followed_at_most_three_times():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        message = refused(f"http://public.test:{host.port}/loop", ALLOW_PUBLIC_TEST, dns)
    assert "redirects more than 3 times" in message
    assert len(host.seen) == 4


@pytest.mark.parametrize("declared", [True, False])
def test_an_image_over_20_mb_is_refused(declared):
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        message = refused(f"http://public.test:{host.port}/big?declared={int(declared)}", ALLOW_PUBLIC_TEST, dns)
    assert "past 20 MB" in message


def test_the_request_as_a_whole_is_capped_at_20_mb():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    images = [Image("", url=f"http://public.test:{{}}/cat.png?{i}") for i in range(3)]
    with ImageHost() as host:
        for image in images:
            image.url = image.url.format(host.port)
        fetcher = ImageFetcher(resolver=dns)
        asyncio.run(fetcher.inline_all(images, ALLOW_PUBLIC_TEST))
        assert all(i.data for i in images)

        big = [Image("", url=f"http://public.test:{host.port}/cat.png")] * 2 + [
            Image("", url=f"http://public.test:{host.port}/big?declared=1")
        ]
        with pytest.raises(TranslationError, match="past 20 MB"):
            asyncio.run(fetcher.inline_all(big, ALLOW_PUBLIC_TEST))


def test_a_slow_drip_hits_the_total_deadline():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        started = time.monotonic()
        message = refused(f"http://public.test:{host.port}/drip", ALLOW_PUBLIC_TEST, dns, deadline=1.0)
    # Each byte arrives well within the 10 s per-read timeout; the whole does not within 1 s.
    assert 0.9 < time.monotonic() - started < 3
    assert "could not be fetched (not within 1 s)" in message


def test_a_compressed_answer_is_refused_rather_than_inflated():
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost() as host:
        assert "Content-Encoding gzip" in refused(f"http://public.test:{host.port}/gzip", ALLOW_PUBLIC_TEST, dns)


def test_an_unresolvable_and_a_private_host_give_the_same_answer():
    async def nxdomain(host, port):
        raise OSError("Name or service not known")

    dns = StubDNS({"db.internal": ["10.0.0.7"]})
    private = refused("http://db.internal/a.png", FetchPolicy(), dns).replace("db.internal", "H")
    missing = refused("http://nope.internal/a.png", FetchPolicy(), nxdomain).replace("nope.internal", "H")
    assert private == missing


# -- TLS: the certificate is checked against the URL's host, and that name is sent as SNI ------------


def _tls(names: list[str]) -> tuple[ssl.SSLContext, ssl.SSLContext]:
    """A server context with a certificate for `names`, and a client context trusting its CA."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "image-fetch test CA")])
    ca = (
        x509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now - datetime.timedelta(hours=1))
        .not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(ca_key.public_key()), critical=False)
        .add_extension(x509.KeyUsage(digital_signature=False, content_commitment=False, key_encipherment=False,
                                     data_encipherment=False, key_agreement=False, key_cert_sign=True,
                                     crl_sign=True, encipher_only=False, decipher_only=False), critical=True)
        .sign(ca_key, hashes.SHA256())
    )
    key = ec.generate_private_key(ec.SECP256R1())
    leaf = (
        x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, names[0])]))
        .issuer_name(ca_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(hours=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName(n) for n in names]), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(ca_key.public_key()), critical=False)
        .sign(ca_key, hashes.SHA256())
    )
    import tempfile

    server = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    with tempfile.NamedTemporaryFile("wb", suffix=".pem") as cert_file, \
            tempfile.NamedTemporaryFile("wb", suffix=".pem") as key_file:
        cert_file.write(leaf.public_bytes(serialization.Encoding.PEM))
        cert_file.flush()
        key_file.write(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                         serialization.NoEncryption()))
        key_file.flush()
        server.load_cert_chain(cert_file.name, key_file.name)
    client = ssl.create_default_context(cadata=ca.public_bytes(serialization.Encoding.PEM).decode())
    return server, client


def test_https_keeps_the_server_name_and_checks_the_certificate_against_it():
    server_ctx, client_ctx = _tls(["public.test"])
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost(tls=server_ctx) as host:
        image = fetch(f"https://public.test:{host.port}/cat.png", ALLOW_PUBLIC_TEST, dns, ssl_context=client_ctx)
    assert image.data == base64.b64encode(PNG).decode()
    assert host.server_names == ["public.test"]
    assert [s.host for s in host.seen] == [f"public.test:{host.port}"]


def test_https_refuses_a_certificate_for_another_name():
    server_ctx, client_ctx = _tls(["other.test"])
    dns = StubDNS({"public.test": ["127.0.0.1"]})
    with ImageHost(tls=server_ctx) as host:
        message = refused(f"https://public.test:{host.port}/cat.png", ALLOW_PUBLIC_TEST, dns, ssl_context=client_ctx)
    assert "could not be fetched (ConnectError)" in message
    assert host.seen == []
