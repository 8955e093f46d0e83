"""Which addresses the proxy fetches client-given image URLs from (routing.fetch_policy), and
the URL spellings that try to get around it. No test here sends a packet or a DNS query: hosts
are address literals (resolved by the C library itself), `localhost` (/etc/hosts) or go through
a stub resolver."""

from __future__ import annotations

import asyncio
import ipaddress

import pytest

from addons.images import ImageFetcher
from routing.config import ConfigError, parse_config
from routing.fetch_policy import FetchPolicy, RefusedAddress, checked_addresses, embedded_ipv4, is_public
from translators.canonical import Image
from translators.translate import TranslationError

NOT_PUBLIC = [
    "127.0.0.1", "127.255.255.254", "0.0.0.0", "0.1.2.3", "10.0.0.1", "172.16.0.1", "172.31.255.255",
    "192.168.1.1", "169.254.169.254", "169.254.0.1", "100.64.0.1", "100.127.255.255", "100.100.100.200",
    "192.0.0.1", "192.0.2.1", "198.18.0.1", "198.51.100.7", "203.0.113.9", "224.0.0.1", "239.255.255.250",
    "240.0.0.1", "255.255.255.255",
    "::", "::1", "fe80::1", "fc00::1", "fd00:ec2::254", "fec0::1", "ff02::1", "2001:db8::1", "100::1",
    "::ffff:127.0.0.1", "::ffff:10.0.0.1", "::ffff:169.254.169.254", "::127.0.0.1",  # mapped, compatible
    "2002:7f00:1::", "2002:a9fe:a9fe::1", "2002:808:808::1",  # 6to4, of anything
    "::ffff:93.184.216.34",  # IPv4-mapped, of anything
    "64:ff9b::7f00:1", "64:ff9b::a9fe:a9fe", "64:ff9b:1::1",  # NAT64 of loopback, metadata; local-use NAT64
    "2001:0:4136:e378:8000:63bf:80ff:fffe",  # Teredo (its client: 127.0.0.1)
]
PUBLIC = ["93.184.216.34", "8.8.8.8", "1.1.1.1", "2606:4700:4700::1111", "2a00:1450:4001:82a::200e",
          "64:ff9b::808:808"]  # NAT64 of a public address (DNS64 on an IPv6-only network)


@pytest.mark.parametrize("address", NOT_PUBLIC)
def test_not_public(address):
    assert not is_public(ipaddress.ip_address(address))
    assert not FetchPolicy().permits("example.com", ipaddress.ip_address(address))


@pytest.mark.parametrize("address", PUBLIC)
def test_public(address):
    assert is_public(ipaddress.ip_address(address))
    assert FetchPolicy().permits("example.com", ipaddress.ip_address(address))


def test_ipv4_inside_ipv6():
    assert embedded_ipv4(ipaddress.IPv6Address("::ffff:7f00:1")) == ipaddress.IPv4Address("127.0.0.1")
    assert embedded_ipv4(ipaddress.IPv6Address("64:ff9b::a9fe:a9fe")) == ipaddress.IPv4Address("169.254.169.254")
    assert embedded_ipv4(ipaddress.IPv6Address("2002:a00:1::")) == ipaddress.IPv4Address("10.0.0.1")
    assert embedded_ipv4(ipaddress.IPv6Address("2606:4700::1")) is None


@pytest.mark.parametrize(
    "policy, host, address, permitted",
    [
        (FetchPolicy(allow_private=True), "nas.lan", "192.168.1.10", True),
        (FetchPolicy(allow_private=True), "x", "127.0.0.1", True),
        (FetchPolicy(allow_private=True), "x", "169.254.169.254", False),  # metadata: never
        (FetchPolicy(allow_private=True), "x", "::ffff:169.254.169.254", False),
        (FetchPolicy(allow_private=True), "x", "fd00:ec2::254", False),
        (FetchPolicy(allow_private=True), "x", "0.0.0.0", False),  # unspecified: this machine
        (FetchPolicy(allow_private=True), "x", "224.0.0.1", False),
        (FetchPolicy(allowed_hosts=("images.corp.example",)), "images.corp.example", "10.1.2.3", True),
        (FetchPolicy(allowed_hosts=("images.corp.example",)), "IMAGES.Corp.Example.", "10.1.2.3", True),
        (FetchPolicy(allowed_hosts=("images.corp.example",)), "other.corp.example", "10.1.2.3", False),
        (FetchPolicy(allowed_hosts=("*.corp.example",)), "a.b.corp.example", "10.1.2.3", True),
        (FetchPolicy(allowed_hosts=("*.corp.example",)), "evilcorp.example", "10.1.2.3", False),
        (FetchPolicy(allowed_hosts=("*.corp.example",)), "corp.example.evil.com", "10.1.2.3", False),
        (FetchPolicy(allowed_hosts=("10.8.0.0/16",)), "anything", "10.8.3.4", True),
        (FetchPolicy(allowed_hosts=("10.8.0.0/16",)), "anything", "10.9.0.1", False),
        (FetchPolicy(allowed_hosts=("10.8.0.0/16",)), "anything", "::ffff:10.8.0.1", False),
        (FetchPolicy(allowed_hosts=("169.254.169.254",)), "169.254.169.254", "169.254.169.254", False),
        (FetchPolicy(allowed_hosts=("localhost",)), "localhost", "127.0.0.1", True),
        (FetchPolicy(allowed_hosts=("localhost",)), "127.0.0.1", "127.0.0.1", False),
    ],
)
def test_the_config_allows_named_exceptions_but_never_metadata(policy, host, address, permitted):
    assert policy.permits(host, ipaddress.ip_address(address)) is permitted


def _refused(policy: FetchPolicy, host: str, port: int = 80, resolver=None) -> bool:
    async def check():
        kwargs = {"resolver": resolver} if resolver else {}
        try:
            await checked_addresses(policy, host, port, **kwargs)
        except RefusedAddress:
            return True
        return False

    return asyncio.run(check())


@pytest.mark.parametrize(
    "host",
    ["127.0.0.1", "2130706433", "0x7f.1", "0x7f000001", "017700000001", "127.1", "::ffff:127.0.0.1",
     "::ffff:7f00:1", "::1", "0", "localhost", "LOCALHOST.", "169.254.169.254", "2852039166",
     "metadata.google.internal", "METADATA.google.internal.", "metadata", "10.0.0.1", "0xa.0.0.1", ""],
)
def test_every_spelling_of_a_non_public_host_is_refused_by_its_resolved_address(host):
    assert _refused(FetchPolicy(), host)


def test_metadata_names_are_refused_before_any_lookup():
    asked = []

    async def resolver(host, port):
        asked.append(host)
        return [ipaddress.ip_address("93.184.216.34")]

    assert _refused(FetchPolicy(allow_private=True), "metadata.google.internal", resolver=resolver)
    assert asked == []


def test_a_name_with_one_private_address_among_public_ones_is_refused():
    async def resolver(host, port):
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("10.0.0.5")]

    assert _refused(FetchPolicy(), "mixed.example", resolver=resolver)


def test_a_name_that_does_not_resolve_is_refused_like_a_private_one():
    async def resolver(host, port):
        raise OSError("Name or service not known")

    assert _refused(FetchPolicy(), "nowhere.example", resolver=resolver)


def test_a_public_name_passes_with_all_its_addresses():
    async def resolver(host, port):
        return [ipaddress.ip_address("93.184.216.34"), ipaddress.ip_address("2606:2800:220:1::1")]

    async def check():
        return await checked_addresses(FetchPolicy(), "example.com", 443, resolver)

    assert [str(a) for a in asyncio.run(check())] == ["93.184.216.34", "2606:2800:220:1::1"]


@pytest.mark.parametrize(
    "url, message",
    [
        ("file:///etc/passwd", "only http and https URLs are fetched"),
        ("gopher://127.0.0.1:70/_x", "only http and https URLs are fetched"),
        ("ftp://example.com/a.png", "only http and https URLs are fetched"),
        ("data:image/png;base64,AAAA", "only http and https URLs are fetched"),
        ("dict://127.0.0.1:11211/stat", "only http and https URLs are fetched"),
        ("http://0177.0.0.1/a.png", "is not a valid URL"),
        ("http://①②⑦.0.0.1/a.png", "is not a valid URL"),
        ("http:///a.png", "has no host"),
        ("http://127.0.0.1/a.png?X-Amz-Signature=SECRET", "does not resolve to a public address"),
        ("http://2130706433/a.png", "does not resolve to a public address"),
        ("http://0x7f.1/a.png", "does not resolve to a public address"),
        ("http://[::ffff:127.0.0.1]/a.png", "does not resolve to a public address"),
        ("http://evil.com@127.0.0.1/a.png", "does not resolve to a public address"),
        ("http://evil.com:SECRET@127.0.0.1/a.png", "does not resolve to a public address"),
        ("HTTP://127.0.0.1/a.png", "does not resolve to a public address"),
        ("http://169.254.169.254/latest/meta-data/iam/security-credentials/", "does not resolve to a public address"),
        ("http://metadata.google.internal/computeMetadata/v1/?recursive=true", "does not resolve to a public address"),
        ("http://[fd00:ec2::254]/latest/", "does not resolve to a public address"),
        ("http://100.100.100.200/latest/meta-data/", "does not resolve to a public address"),
    ],
)
def test_urls_the_fetcher_refuses_without_connecting(url, message, monkeypatch):
    import httpx

    def no_connection(*args, **kwargs):
        raise AssertionError("a connection was attempted")

    monkeypatch.setattr(httpx.AsyncHTTPTransport, "handle_async_request", no_connection)
    image = Image("", url=url)
    with pytest.raises(TranslationError) as raised:
        asyncio.run(ImageFetcher().inline(image, FetchPolicy()))
    assert message in str(raised.value)
    assert "SECRET" not in str(raised.value)
    assert image.url == url and image.data is None


def test_the_config_section():
    config = parse_config("image-fetch:\n  allow-private: true\n  allowed-hosts: [Images.Corp.Example., '*.lan', 10.8.0.0/16, '[::1]']\n")
    assert config.image_fetch.allow_private is True
    assert config.image_fetch.allowed_hosts == ["images.corp.example", "*.lan", "10.8.0.0/16", "::1"]
    assert parse_config("port: 1").image_fetch.allow_private is False
    for bad in ("http://x.example", "user@host", "10.0.0.0/33", "1.2.3.4.5", ""):
        with pytest.raises(ConfigError, match="image-fetch.allowed-hosts"):
            parse_config(f"image-fetch: {{allowed-hosts: ['{bad}']}}\n")


def test_an_internationalised_allowed_host_matches_its_idna_form():
    from routing.config import ImageFetch

    policy = FetchPolicy.from_config(ImageFetch(allowed_hosts=["bücher.example"]))
    assert policy.permits("xn--bcher-kva.example", ipaddress.ip_address("10.0.0.1"))
