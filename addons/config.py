"""Loads `config.yaml`, keeps it in force, and reloads it when the file changes."""

from __future__ import annotations

import asyncio
import logging
import os
from collections.abc import Callable
from pathlib import Path

from mitmproxy import ctx, exceptions

from addons.watching import DebouncedWatch
from routing.command import cliproxy_command
from routing.config import Config, ConfigError, config_warnings, parse_config
from routing.management import BCRYPT_PREFIXES, hash_secret, hash_secret_in_text
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
    upstream or answered by the proxy. Its address is always the config's own, whatever
    mitmproxy's `listen_host`: `host: ""` is every interface, as in CLIProxyAPI.
    """
    return f"reverse:http://{LISTENER_TARGET}@{config.host}:{config.port}"


def is_listener_mode(spec: str) -> bool:
    return spec.startswith(f"reverse:http://{LISTENER_TARGET}@")


class ConfigLoader:
    def __init__(self, runtime: Runtime) -> None:
        self.runtime = runtime
        self.path: Path | None = None
        # The path as the user gave it, which messages name.
        self.source = "config.yaml"
        self.mode_spec: str | None = None
        self._watcher: DebouncedWatch | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        # Other concerns' mitmproxy options that follow from the config (name -> value).
        self.option_sources: list[Callable[[Config], dict]] = []
        # Other concerns' objections to a valid config (`api-keys: required, ...`), or None.
        self.checks: list[Callable[[Config], str | None]] = []
        self._warned: frozenset[str] = frozenset()

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
        source = ctx.options.cliproxy_config
        path = Path(source).expanduser().resolve()
        try:
            config, warnings = self._read(path, source)
        except ConfigError as e:
            if self._loop is None:
                # Start-up: one line naming the file and the key. mitmproxy's error check then
                # ends the process with status 1 (an OptionsError would print a traceback).
                logger.error(str(e))
                return
            raise exceptions.OptionsError(str(e)) from None
        if not path.exists():
            logger.warning(
                f"cliproxy: no config file at {path}; running on defaults with no credentials. "
                "Copy config.example.yaml to config.yaml, add API keys, and they apply at once."
            )
        self.path, self.source = path, source
        self._put_in_force(config, warnings)
        if self._loop is not None:
            self._watch()

    def _read(self, path: Path, source: str) -> tuple[Config, list[str]]:
        """The config at `path` (defaults if there is none) and its warnings, or ConfigError."""
        try:
            text = path.read_text(encoding="utf-8") if path.exists() else ""
        except OSError as e:
            raise ConfigError(f"{source}: cannot read: {e.strerror}") from None
        config = parse_config(text, source)
        for check in self.checks:
            if problem := check(config):
                raise ConfigError(f"{source}: {problem}")
        secret = config.remote_management.secret_key
        if secret and not secret.startswith(BCRYPT_PREFIXES):
            self._hash_secret_at_rest(path, text, secret)
        return config, config_warnings(config, text)

    @staticmethod
    def _hash_secret_at_rest(path: Path, text: str, secret: str) -> None:
        """Replace the plain-text management key in config.yaml by its bcrypt hash, as
        CLIProxyAPI does, changing that one line. The key itself stays what it was."""
        changed = hash_secret_in_text(text, secret, hash_secret(secret))
        if changed is None:
            logger.warning(
                f"cliproxy: {path}: remote-management.secret-key could not be found on a line of its own, "
                "so it stays in plain text there"
            )
            return
        tmp = path.with_name(f".{path.name}.cliproxy-tmp")
        try:
            tmp.write_text(changed, encoding="utf-8")
            os.chmod(tmp, path.stat().st_mode & 0o7777)
            os.replace(tmp, path)
        except OSError as e:
            tmp.unlink(missing_ok=True)
            logger.warning(f"cliproxy: {path}: remote-management.secret-key stays in plain text ({e.strerror})")
            return
        logger.info(f"cliproxy: {path}: remote-management.secret-key is now kept as a bcrypt hash (the key is unchanged)")

    def running(self) -> None:
        self._loop = asyncio.get_running_loop()
        # mitmproxy 12 loads scripts after it has started its servers, so the listener mode we
        # added in `configure` is not served yet. Re-announcing the modes now that the proxy
        # server is running makes it start whatever is missing (a no-op on mitmproxy 11).
        ctx.options.update(mode=list(ctx.options.mode))
        if self.path is None:
            return  # the config was refused; mitmproxy is on its way out
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
                f"files (`{cliproxy_command()} auth`) to the auth directory {config.auth_path}."
            )

    def done(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
            self._watcher = None

    # -- applying a config -----------------------------------------------------------------

    def _put_in_force(self, config: Config, warnings: list[str]) -> None:
        previous = self.runtime.config
        self.runtime.apply(config)
        logger.setLevel(logging.DEBUG if config.debug else logging.INFO)
        for warning in warnings:
            if warning not in self._warned:  # once, not on every reload
                logger.warning(f"cliproxy: {self.source}: {warning}")
        self._warned = frozenset(warnings)
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
        if "flow_detail" in ctx.options and not ctx.options.has_changed("flow_detail"):
            # mitmdump's own line per flow says less than the usage line (addons/usage.py) and
            # adds about 4% to the proxy's CPU per request: off unless asked for (any
            # level but the default, which mitmproxy cannot tell from not asked for).
            updates["flow_detail"] = 0
        for source in self.option_sources:
            for name, value in source(config).items():
                if getattr(ctx.options, name) != value:
                    updates[name] = value
        if updates:
            ctx.options.update(**updates)

    # -- watching the file -----------------------------------------------------------------

    def _watch(self) -> None:
        if self._watcher is not None:
            self._watcher.stop()
        path = self.path
        assert path is not None and self._loop is not None
        self._watcher = DebouncedWatch(
            self._loop, path.parent, path.name.__eq__, self._reload, RELOAD_DEBOUNCE
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
            config, warnings = self._read(self.path, self.source)
        except ConfigError as e:
            logger.error(f"cliproxy: config edit rejected, the running config stays in force: {e}")
            return
        if config == self.runtime.config:
            return
        self._put_in_force(config, warnings)
        logger.info(
            f"cliproxy: reloaded {self.path}: {config.credential_count} credential(s), "
            f"routing {config.routing.strategy}"
        )
