"""Keeps the pool from being served to the network (routing/exposure.py has the rule).

Both entrances listen on loopback unless the user chose otherwise: the listener by the config's
`host` (default 127.0.0.1), mitmproxy's proxy by its `listen_host`, which this addon sets to
127.0.0.1 when nobody set it. A config that would put an entrance beyond loopback without
`api-keys` is refused (at start-up and on reload). The interception proxy, when it listens
beyond loopback, asks for one of the api-keys as proxy credentials: on CONNECT (which then
authenticates the whole client connection) and on each plain proxied request. A client that
connects from beyond loopback is held to the same rule whatever the bind, which covers the
moment at start-up before mitmproxy's proxy is moved to loopback.
"""

from __future__ import annotations

import asyncio
import json
import logging
import weakref

from mitmproxy import connection, ctx, exceptions, http, optmanager
from mitmproxy.proxy import mode_specs

from addons.common import reply, reply_error
from addons.config import is_listener_mode
from routing.config import Config
from routing.endpoints import guess_format
from routing.exposure import (
    LOOPBACK,
    PROXY_USER,
    Entrance,
    basic_password,
    exposure_problem,
    exposure_warning,
    hostport,
    is_loopback,
    key_matches,
)
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")

# Asked through the interception proxy, `http://cliproxy.invalid/` is answered by this addon
# (never dialled): `cliproxy env` and `doctor` learn from it whether credentials are needed.
PROBE_HOST = "cliproxy.invalid"
REALM = 'Basic realm="cliproxy"'
_MODE_OPTIONS = frozenset({"listen_host", "listen_port", "mode"})


def _set_by_user(name: str) -> bool:
    # mitmproxy keeps "never set" apart from "set to the default" (`--listen-host ""` means
    # every interface, on purpose); there is no public accessor for the difference.
    option = ctx.options._options.get(name)
    return option is None or getattr(option, "value", None) is not optmanager.unset


def _headers(flow: http.HTTPFlow) -> dict[str, str]:
    return {k.lower(): v for k, v in flow.request.headers.items()}


class Exposure:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self._running = False
        # Specs of mitmproxy's (non-listener) modes that listen beyond loopback.
        self._exposed: frozenset[str] = frozenset()
        # Client connections from beyond loopback, whatever the mode's bind.
        self._remote: weakref.WeakSet[connection.Client] = weakref.WeakSet()
        # Client connections that authenticated with a CONNECT.
        self._authenticated: weakref.WeakSet[connection.Client] = weakref.WeakSet()
        self._keys: tuple[str, ...] = ()
        self._opt_out = False
        self._rebinding: asyncio.Task | None = None
        runtime.config_listeners.append(self._config_applied)

    # -- which entrances are exposed -------------------------------------------------------

    def entrances(self, config: Config) -> list[tuple[Entrance, str | None]]:
        """Every server that serves the pool, with the mitmproxy mode spec behind it (None for
        the listener, whose address is `config`'s, perhaps a new one)."""
        found: list[tuple[Entrance, str | None]] = [
            (Entrance("the API listener", config.host, config.port), None)
        ]
        for spec in ctx.options.mode:
            if is_listener_mode(spec):
                continue
            mode = mode_specs.ProxyMode.parse(spec)
            port = mode.listen_port(ctx.options.listen_port)
            if port is None:
                continue  # a mode without a server of its own (local capture)
            if isinstance(mode, mode_specs.RegularMode):
                name = "the interception proxy"
            else:
                name = f"mitmproxy's {mode.type_name} mode"
            found.append((Entrance(name, mode.listen_host(ctx.options.listen_host), port), spec))
        return found

    def problem(self, config: Config) -> str | None:
        """Why `config` may not be put in force with mitmproxy's current modes, or None."""
        return exposure_problem(
            [e for e, _ in self.entrances(config)],
            bool(config.client_keys),
            config.allow_unauthenticated_exposure,
        )

    # -- mitmproxy hooks -------------------------------------------------------------------

    def configure(self, updated: set[str]) -> None:
        if "listen_host" in updated and not _set_by_user("listen_host"):
            ctx.options.update(listen_host=LOOPBACK)  # configures again, with a value set
            return
        if not updated & _MODE_OPTIONS:
            return
        if self._running and (problem := self.problem(self.runtime.config)):
            raise exceptions.OptionsError(problem)
        self._exposed = frozenset(
            spec for e, spec in self.entrances(self.runtime.config) if spec and e.exposed
        )

    def running(self) -> None:
        self._running = True
        # Hooks of a reloaded script run synchronously; the move needs a coroutine, and a task
        # with a reference kept until it ends (or `done` cancels it).
        self._rebinding = asyncio.get_running_loop().create_task(self._rebind(), name="cliproxy rebind")
        if self._keys:
            for entrance, spec in self.entrances(self.runtime.config):
                if spec and entrance.exposed:
                    logger.info(
                        f"cliproxy: {entrance.name} on {entrance.address} listens beyond loopback "
                        f"and asks for proxy credentials: HTTPS_PROXY=http://{PROXY_USER}:"
                        f"<one of the api-keys>@<this host>:{entrance.port}"
                    )

    def done(self) -> None:
        if self._rebinding is not None and not self._rebinding.done():
            self._rebinding.cancel()

    def client_connected(self, client: connection.Client) -> None:
        peer = client.peername[0] if client.peername else None
        if peer is not None and not is_loopback(str(peer)) and not is_listener_mode(
            client.proxy_mode.full_spec
        ):
            self._remote.add(client)

    def http_connect(self, flow: http.HTTPFlow) -> None:
        client = flow.client_conn
        regular = isinstance(client.proxy_mode, mode_specs.RegularMode)
        if not self._needs_credentials(client):
            if regular:  # (upstream mode's Proxy-Authorization is mitmproxy's own, for its upstream)
                flow.request.headers.pop("proxy-authorization", None)  # kept by no flow
            return
        if not self._keys or not regular:
            self._refuse(flow)
        elif self._admit(flow):
            self._authenticated.add(client)

    def requestheaders(self, flow: http.HTTPFlow) -> None:
        client = flow.client_conn
        if is_listener_mode(client.proxy_mode.full_spec):
            return
        regular = isinstance(client.proxy_mode, mode_specs.RegularMode)
        if self._needs_credentials(client) and client not in self._authenticated:
            if not self._keys or not regular:
                self._refuse(flow)
                return
            if not self._admit(flow):
                return
        elif regular:
            # A credentialed HTTPS_PROXY used where none is needed: still never sent on.
            flow.request.headers.pop("proxy-authorization", None)
        if regular and flow.request.host == PROBE_HOST:
            body = {"cliproxy": "interception proxy", "proxy_credentials": self._needs_credentials(client)}
            reply(flow, 200, json.dumps(body).encode())

    # -- helpers ---------------------------------------------------------------------------

    def _needs_credentials(self, client: connection.Client) -> bool:
        exposed = client.proxy_mode.full_spec in self._exposed or client in self._remote
        return exposed and (bool(self._keys) or not self._opt_out)

    def _config_applied(self, config: Config) -> None:
        if config.client_keys != self._keys:
            # A removed key must not keep a tunnel it opened.
            self._keys = config.client_keys
            self._authenticated = weakref.WeakSet()
        self._opt_out = config.allow_unauthenticated_exposure
        entrances = [e for e, _ in self.entrances(config)]
        if warning := exposure_warning(entrances, bool(self._keys), self._opt_out):
            logger.warning(f"cliproxy: {warning}")

    async def _rebind(self) -> None:
        """Move mitmproxy's servers that started before this addon set `listen_host` (mitmproxy
        12 loads scripts while it starts its servers) to the address they now should have."""
        proxyserver = ctx.master.addons.get("proxyserver")
        servers = getattr(proxyserver, "servers", None)
        if servers is None:
            return
        stale = [
            server.mode
            for server in servers
            if not is_listener_mode(server.mode.full_spec)
            and is_loopback(server.mode.listen_host(ctx.options.listen_host))
            and any(not is_loopback(str(addr[0])) for addr in server.listen_addrs)
        ]
        if stale:
            logger.info(
                f"cliproxy: mitmproxy's proxy moves to {ctx.options.listen_host} (loopback); "
                "--listen-host chooses another address"
            )
            modes = [mode_specs.ProxyMode.parse(m) for m in ctx.options.mode]
            await servers.update([m for m in modes if m not in stale])
            await servers.update(modes)

    def _admit(self, flow: http.HTTPFlow) -> bool:
        """Check and remove the proxy credentials; answer 407 if they are missing or wrong."""
        header = flow.request.headers.pop("proxy-authorization", "")
        password = basic_password(header) if header else None
        if password is not None and key_matches(password, self._keys):
            return True
        here = hostport(*flow.client_conn.sockname[:2])
        message = (
            "cliproxy: this proxy asks for credentials: use "
            f"HTTPS_PROXY=http://{PROXY_USER}:<one of its api-keys>@{here}"
        )
        if flow.request.method == "CONNECT":
            flow.response = http.Response.make(
                407, message.encode(), {"Proxy-Authenticate": REALM, "Content-Type": "text/plain"}
            )
        else:
            reply_error(flow, guess_format(flow.request.path, _headers(flow)), 407, message)
            flow.response.headers["Proxy-Authenticate"] = REALM
        return False

    def _refuse(self, flow: http.HTTPFlow) -> None:
        """403 for a client beyond loopback that cannot authenticate: no keys are configured
        (only possible before the proxy has moved to loopback), or its mode carries none."""
        if self._keys:
            reason = f"mitmproxy's {flow.client_conn.proxy_mode.type_name} mode cannot carry proxy credentials"
        else:
            reason = "no api-keys are configured"
        message = f"cliproxy: serving clients beyond loopback needs api-keys, and {reason}"
        if flow.request.method == "CONNECT":
            flow.response = http.Response.make(403, message.encode(), {"Content-Type": "text/plain"})
        else:
            reply_error(flow, guess_format(flow.request.path, _headers(flow)), 403, message)
