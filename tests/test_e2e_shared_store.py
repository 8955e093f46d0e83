"""`state-store: redis://...`: the connection every shared concern uses, through a real
mitmdump and a real redis-server."""

from __future__ import annotations

import pytest

from tests.conftest import free_port
from tests.redis_server import redis_server  # noqa: F401 - a fixture
from tests.waiting import wait_until


def test_an_unreachable_store_stops_the_start_with_what_to_do(make_proxy):
    proxy = make_proxy({"state-store": f"redis://user:hunter2secret@127.0.0.1:{free_port()}/0"}, start=False)
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) == 1
    out = proxy.output()
    assert "state-store: redis://127.0.0.1:" in out and "cannot be reached" in out
    assert "state-store-required: false" in out
    assert "hunter2secret" not in out and "Traceback" not in out


def test_not_required_starts_on_local_state_and_shares_once_redis_is_up(make_proxy, tmp_path):
    from tests.redis_server import RedisServer

    server = RedisServer(tmp_path)
    proxy = make_proxy({"state-store": server.url, "state-store-required": False})
    assert proxy.get("/healthz").status_code == 200
    proxy.wait_for_output("unreachable; starting on this instance's own state")
    server.start()
    try:
        # The reconnect task finds it: the client list names this instance.
        wait_until(
            lambda: any(c.get("name", "").startswith("cliproxy-") for c in server.client().client_list()),
            timeout=40,
            what="the instance connected to the store once it started",
        )
    finally:
        server.stop()


def test_a_reachable_store_is_connected_and_named(make_proxy, redis_server):  # noqa: F811
    proxy = make_proxy({"state-store": redis_server.url})
    proxy.wait_for_output(f"sharing pool state through redis://127.0.0.1:{redis_server.port}/0")
    wait_until(
        lambda: any(c.get("name", "").startswith("cliproxy-") for c in redis_server.client().client_list()),
        timeout=10,
        what="the instance's connection in the store's client list",
    )


@pytest.mark.parametrize("value", ["http://127.0.0.1:6379", "redis://host:notaport/0", "redis://"])
def test_a_store_url_that_is_no_redis_url_is_refused(make_proxy, value):
    proxy = make_proxy({"state-store": value}, start=False)
    proxy.start(wait=False)
    assert proxy.process.wait(timeout=30) == 1
    assert "state-store:" in proxy.output()
