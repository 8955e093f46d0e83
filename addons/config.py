"""Loads `config.yaml`, keeps it in force, and reloads it when the file changes."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from pathlib import Path

from mitmproxy import ctx, exceptions

from addons.watching import DebouncedWatch
from routing.config import EXAMPLE_CLIENT_KEY, Config, ConfigError, load_config, unknown_keys
from routing.runtime import Runtime

logger = logging.getLogger("cliproxy")
# watchdog logs every inotify event at debug level, our own log file's writes included.
logging.getLogger("watchdog").setLevel(logging.INFO)
# httpx logs every request at info level with its whole URL, query string included.
logging.getLogger("httpx").setLevel(logging.WARNING)

# Editors save in bursts (truncate, write, rename); wait for the burst to end.
RELOAD_DEBOUNCE = 0.2


LISTENER_TARGET = "cliproxy.invalid"


def listener_mode(config: Config) -> str:
    """The mitmproxy mode spec of the local API listener.

    A reverse proxy whose default target is never dialled (and, being `.invalid`, could not
    be): with `connection_strategy=lazy` every request is either rewritten to a credential's
    upstream or answered by the proxy.
    """
    listen = f"{config.host}:{config.port}" if config.host else str(config.port)
    return f"reverse:http://{LISTENER_TARGET}@{listen}"


def is_listener_mode(spec: str) -> bool:
    return spec.startswith(f"reverse:http://{LISTENER_TARGET}@")


class ConfigLoader:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.path: Path | None = None
        self.mode_spec: str | None = None
        self._watcher: DebouncedWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Other concerns' mitmproxy options that follow from the config (name -> value).
        self.option_sources: list[Callable[[Config], dict]] = []

    def load(self, loader) -> None:
        loader.add_option(
            "cliproxy_config",
            str,
            "config.yaml",
            "Path of the cliproxy config.yaml (CLIProxyAPI's format). Edits apply without a restart.",
        )

    def configure(self, updated: set[str]) -> None:
        if "cliproxy_config" not in updated:
            return
        path = Path(ctx.options.cliproxy_config).expanduser().resolve()
        if path.exists():
            try:
                config = load_config(path)
            except ConfigError as e:
                raise exceptions.OptionsError(str(e)) from None
            self._report_ignored(path)
        else:
            config = Config()
            logger.warning(
                f"cliproxy: no config file at {path}; running on defaults with no credentials. "
                "Copy config.example.yaml to config.yaml, add API keys, and they apply at once."
            )
        self.path = path
        self._put_in_force(config)
        if self._loop is not None:
            self._watch()

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        # mitmproxy 12 loads scripts after it has started its servers, so the listener mode we
        # added in `configure` is not served yet. Re-announcing the modes now that the proxy
        # server is running makes it start whatever is missing (a no-op on mitmproxy 11).
        ctx.options.update(mode=list(ctx.options.mode))
        self._watch()
        config = self.runtime.config
        proxy_host = ctx.options.listen_host or "*"
        logger.info(
            f"cliproxy: API listener on http://{config.host or '*'}:{config.port} "
            "(OpenAI, Anthropic and Gemini APIs); interception proxy for HTTPS_PROXY on "
            f"http://{proxy_host}:{ctx.options.listen_port or 8080}"
        )
        if not self.runtime.router.credentials:
            logger.warning(
                "cliproxy: no credentials are configured: add gemini-api-key, claude-api-key, "
                "codex-api-key or openai-compatibility entries to the config file, or token "
                f"files (`cliproxy auth`) to the auth directory {config.auth_path}."
            )

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # -- applying a config -----------------------------------------------------------------

    def _put_in_force(self, config: Config) -> None:
        previous = self.runtime.config
        self.runtime.apply(config)
        logger.setLevel(logging.DEBUG if config.debug else logging.INFO)
        if EXAMPLE_CLIENT_KEY in config.api_keys:
            logger.warning(
                "cliproxy: api-keys still holds the example key from config.example.yaml, which "
                "anyone can read: replace it with a long random string."
            )
        mode = listener_mode(config)
        updates: dict = {}
        # The previous listener goes, whether this loader added it or the one before a script
        # reload did (a second server on the same address would be refused).
        modes = [m for m in ctx.options.mode if m != self.mode_spec and not is_listener_mode(m)]
        if [*modes, mode] != list(ctx.options.mode):
            updates["mode"] = [*modes, mode]
        self.mode_spec = mode
        if ctx.options.connection_strategy != "lazy":
            # Nothing may be dialled before the request hook has chosen the upstream.
            updates["connection_strategy"] = "lazy"
        if config.debug and not previous.debug:
            updates["termlog_verbosity"] = "debug"
        for source in self.option_sources:
            for name, value in source(config).items():
                if getattr(ctx.options, name) != value:
                    updates[name] = value
        if updates:
            ctx.options.update(**updates)

    def _report_ignored(self, path: Path) -> None:
        try:
            ignored = unknown_keys(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return
        if ignored:
            logger.info(f"cliproxy: {path}: keys not supported here, ignored: {', '.join(ignored)}")

    # -- watching the file -----------------------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        path = self.path
        assert path is not None and self._loop is not None
        self._watcher = DebouncedWatch(
            self._loop, path.parent, lambda p: p.resolve() == path, self._reload, RELOAD_DEBOUNCE
        )
        self._watcher.start()
        # An edit saved between loading the file and watching it (the listener can already
        # serve by then) would otherwise go unnoticed until the next one.
        if path.exists():
            self._watcher.poke()

    def _reload(self) -> None:
        assert self.path is not None
        logger.debug(f"cliproxy: reading {self.path}")
        if not self.path.exists():
            logger.warning(f"cliproxy: {self.path} was removed; keeping the running config")
            return
        try:
            config = load_config(self.path)
        except ConfigError as e:
            logger.error(f"cliproxy: config edit rejected, the running config stays in force: {e}")
            return
        if config == self.runtime.config:
            return
        self._put_in_force(config)
        self._report_ignored(self.path)
        logger.info(
            f"cliproxy: reloaded {self.path}: {config.credential_count} credential(s), "
            f"routing {config.routing.strategy}"
        )
