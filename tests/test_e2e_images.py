"""Images given by URL to a Gemini-served model, through a real mitmdump with the OpenAI SDK: the
proxy fetches only from public addresses (or the config's `image-fetch.allowed-hosts`), refuses
the rest with a 400 in OpenAI's shape before any connection, re-checks redirects, and goes on
serving."""

from __future__ import annotations

import base64
import time

import openai
import pytest

from tests.conftest import vendor_overrides
from tests.fakes.image_host import PNG, ImageHost, Tripwire
from tests.fakes.upstream import FakeUpstream

GEMINI = "AIza-image-fetch-test-0001"
MODEL = "gemini-2.5-flash"
REFUSED = "does not resolve to a public address, so the proxy does not fetch it"


@pytest.fixture(scope="module")
def proxy(fake: FakeUpstream, make_module_proxy):
    return make_module_proxy({
        "gemini-api-key": [{"api-key": GEMINI}],
        "upstream-overrides": vendor_overrides(fake),
        # One loopback name stands in for a public host, so that a public hop can be tested.
        "image-fetch": {"allowed-hosts": ["localhost"]},
    })


@pytest.fixture(scope="module")
def image_host():
    with ImageHost() as host:
        yield host


@pytest.fixture
def tripwire():
    with Tripwire() as listener:
        yield listener


@pytest.fixture(autouse=True)
def _fresh(fake: FakeUpstream, image_host: ImageHost):
    fake.clear()
    image_host.seen.clear()


@pytest.fixture
def oai(proxy) -> openai.OpenAI:
    return openai.OpenAI(api_key="unused", base_url=proxy.base_url + "/v1", max_retries=0, timeout=30)


def ask(oai: openai.OpenAI, url: str):
    content = [{"type": "text", "text": "what is this?"}, {"type": "image_url", "image_url": {"url": url}}]
    return oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": content}])


def assert_still_serving(oai: openai.OpenAI, fake: FakeUpstream) -> None:
    result = oai.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert result.choices[0].message.content == fake.text


def test_an_allowed_hosts_image_is_fetched_and_inlined(oai, fake, image_host):
    ask(oai, f"http://localhost:{image_host.port}/cat.png?sig=secret-token")
    (seen,) = fake.requests
    assert seen.api_key == GEMINI
    parts = seen.json()["contents"][0]["parts"]
    assert [p["inlineData"] for p in parts if "inlineData" in p] == [
        {"mimeType": "image/png", "data": base64.b64encode(PNG).decode()}
    ]
    assert [(s.path, s.host) for s in image_host.seen] == [
        ("/cat.png?sig=secret-token", f"localhost:{image_host.port}")
    ]


LOOPBACK_SPELLINGS = [
    "http://127.0.0.1:{port}/cat.png?X-Amz-Signature=SECRET",
    "http://2130706433:{port}/cat.png",
    "http://0x7f.1:{port}/cat.png",
    "http://0x7f000001:{port}/cat.png",
    "http://127.1:{port}/cat.png",
    "http://[::ffff:127.0.0.1]:{port}/cat.png",
    "http://evil.example@127.0.0.1:{port}/cat.png",
    "http://user:SECRET@127.0.0.1:{port}/cat.png",
    "HTTP://127.0.0.1:{port}/cat.png",
    "https://127.0.0.1:{port}/cat.png",
]


@pytest.mark.parametrize("template", LOOPBACK_SPELLINGS)
def test_loopback_in_any_spelling_is_refused_without_a_connection(oai, fake, tripwire, proxy, template):
    url = template.format(port=tripwire.port)
    with pytest.raises(openai.BadRequestError) as raised:
        ask(oai, url)
    error = raised.value
    assert error.status_code == 400
    assert error.body["type"] == "invalid_request_error"
    assert REFUSED in error.message
    assert "SECRET" not in error.message and "evil.example" not in error.message
    assert fake.requests == []
    assert_still_serving(oai, fake)
    time.sleep(0.1)
    assert tripwire.connections == 0
    assert "SECRET" not in proxy.output()


@pytest.mark.parametrize(
    "url",
    [
        "http://10.0.0.1/cat.png",
        "http://192.168.1.1/cat.png",
        "http://172.16.0.1/cat.png",
        "http://100.64.0.1/cat.png",  # shared address space (CGNAT)
        "http://169.254.169.254/latest/meta-data/iam/security-credentials/",
        "http://[fd00:ec2::254]/latest/meta-data/",
        "http://metadata.google.internal/computeMetadata/v1/instance/service-accounts/default/token",
        "http://[fe80::1]/cat.png",
        "http://0.0.0.0:80/cat.png",
    ],
)
def test_private_and_metadata_addresses_are_refused(oai, fake, url):
    with pytest.raises(openai.BadRequestError) as raised:
        ask(oai, url)
    assert REFUSED in raised.value.message
    assert fake.requests == []
    assert_still_serving(oai, fake)


@pytest.mark.parametrize("url", ["file:///etc/passwd", "gopher://127.0.0.1:70/_stats", "ftp://127.0.0.1/cat.png"])
def test_other_schemes_are_not_fetched(oai, fake, url):
    # Only http(s) URLs are the proxy's to fetch; the others go to Gemini as file URIs, which it
    # refuses itself. Either way the proxy reads nothing.
    try:
        ask(oai, url)
    except openai.APIStatusError:
        pass
    for seen in fake.requests:
        assert "inlineData" not in str(seen.json())
    assert_still_serving(oai, fake)


def test_a_redirect_from_an_allowed_host_into_loopback_is_refused_without_a_connection(
    oai, fake, image_host, tripwire, proxy
):
    target = f"http://127.0.0.1:{tripwire.port}/internal-admin?token%3DSECRET"
    with pytest.raises(openai.BadRequestError) as raised:
        ask(oai, f"http://localhost:{image_host.port}/redirect?to={target}&sig=SIG")
    message = raised.value.body["message"]
    assert message.startswith(f"the image at http://localhost:{image_host.port}/redirect redirects to a host that")
    assert "SECRET" not in message and "SIG" not in message
    assert [s.path.split("?")[0] for s in image_host.seen] == ["/redirect"]  # the allowed hop happened
    assert fake.requests == []
    assert_still_serving(oai, fake)
    time.sleep(0.1)
    assert tripwire.connections == 0
    assert "SECRET" not in proxy.output()


def test_a_redirect_within_the_allowed_host_is_followed(oai, fake, image_host):
    ask(oai, f"http://localhost:{image_host.port}/redirect?to=/cat.png")
    parts = fake.requests[0].json()["contents"][0]["parts"]
    assert [p["inlineData"]["data"] for p in parts if "inlineData" in p] == [base64.b64encode(PNG).decode()]
    assert [s.path.split("?")[0] for s in image_host.seen] == ["/redirect", "/cat.png"]
