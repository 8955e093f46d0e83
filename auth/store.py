"""The auth directory: every `*.json` token file as a pool credential, kept in step with the disk.

CLIProxyAPI's format (auth.tokens): one file per login, a top-level `type` naming the provider,
plus generic fields honoured for every type (`disabled`, `prefix`, `priority` or
`attributes.priority`, `excluded_models`, `base_url`, `headers`, `proxy_url`,
`attributes.websockets` / `attributes.description`).

The store is plain data, with no thread or event loop of its own: the auth-dir watcher calls
`scan()` (on the event loop) after the directory changed, the refresher calls `replace()` after
it wrote a refreshed token. A credential's id derives from provider and file name, so a token
refresh or an edit of the file keeps its cooldowns.
"""

from __future__ import annotations

import datetime
import logging
import math
import os
import re
import stat
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from auth import providers
from auth.credential import Credential
from auth.providers.base import truthy
from auth.tokens import (
    REFRESH_ERROR_KEY,
    TokenFile,
    TokenFileError,
    format_time,
    is_temporary,
    load_token_file,
    shown,
)

logger = logging.getLogger("cliproxy")

# The proxy's own temp files (auth.tokens.save_token_file) left behind by a crash.
_STALE_TEMP = re.compile(r"^\..+\.json\..+\.tmp$")
STALE_TEMP_AGE = 60.0


def _stat_key(st: os.stat_result) -> tuple[int, int, int]:
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def _not_a_token_file(
    path: Path, name: str, link: os.stat_result, st: os.stat_result, real_directory: str
) -> str | None:
    """Why a directory entry named `*.json` is not read at all, or None."""
    if not name.isprintable() or shown(name) != name:
        # Its name would end up in log lines and credential labels.
        return "its name has control characters or bytes that are not UTF-8"
    if stat.S_ISLNK(link.st_mode):
        target = os.path.realpath(path)
        if os.path.commonpath([target, real_directory]) != real_directory:
            return "is a symbolic link to a file outside the auth directory"
        if st is link:
            return "is a symbolic link to nothing"
    if stat.S_ISDIR(st.st_mode):
        return "is a directory, not a token file"
    if not stat.S_ISREG(st.st_mode):
        return "is not a regular file (a FIFO, socket or device)"
    return None


def _text(data: dict[str, Any], key: str, token: TokenFile) -> str:
    """A field that must be a string when present (a token, a URL, an id sent upstream)."""
    value = data.get(key)
    if value is None:
        return ""
    if not isinstance(value, str):
        raise TokenFileError(f"{shown(token.path)}: {key} must be a string")
    return value


def _string_list(value: Any, what: str, token: TokenFile) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        return tuple(v.strip() for v in value.split(",") if v.strip())
    if isinstance(value, list) and all(isinstance(v, str) for v in value):
        return tuple(value)
    raise TokenFileError(f"{shown(token.path)}: {what} must be a list of strings")


def _expiry(token: TokenFile) -> float | None:
    when = token.expiry
    if when is not None:
        return when.timestamp()
    # Antigravity files also carry the issue time (ms) and the lifetime.
    issued, lifetime = token.get("timestamp"), token.get("expires_in")
    if isinstance(issued, (int, float)) and isinstance(lifetime, (int, float)):
        when = (issued / 1000 if issued > 1e12 else issued) + lifetime
        return when if math.isfinite(when) else None
    return None


def credential_from_token(token: TokenFile) -> Credential:
    """The pool credential a token file describes. Raises TokenFileError naming the file (never
    a token) when the file cannot serve requests."""
    data = token.data
    spec = providers.by_file_type(token.type)
    if spec is None:
        known = ", ".join(providers.file_types())
        raise TokenFileError(f"{shown(token.path)}: type {shown(token.type)!r} is not supported here (known: {known})")
    prefix = data.get("prefix") or ""
    if not isinstance(prefix, str) or "/" in prefix.strip("/"):
        raise TokenFileError(f"{shown(token.path)}: prefix must be one path segment, without '/'")
    attributes = data.get("attributes") if isinstance(data.get("attributes"), dict) else {}
    headers = data.get("headers") or {}
    if not isinstance(headers, dict) or not all(isinstance(v, str) for v in headers.values()):
        raise TokenFileError(f"{shown(token.path)}: headers must map names to strings")
    base_url = _text(data, "base_url", token)
    # The fields a request or a refresh sends upstream: a number or an object there is a
    # damaged file, not a token.
    nested = data.get("token") if isinstance(data.get("token"), dict) else data
    for key in ("access_token", "refresh_token"):
        _text(nested, key, token)
    for key in ("api_key", "project_id", "resource_url", "device_id", "user_agent", "location", "proxy_url"):
        _text(data, key, token)
    if not isinstance(attributes.get("proxy_url"), (str, type(None))):
        raise TokenFileError(f"{shown(token.path)}: attributes.proxy_url must be a string")

    fields: dict[str, Any] = {"secret": token.access_token, **spec.read(token)}
    if spec.kind == "oauth" and not fields["secret"] and not token.refresh_token:
        raise TokenFileError(f"{shown(token.path)}: neither {spec.missing_secret()} nor refresh_token is set")
    if "base_url" in fields:
        base_url = fields.pop("base_url")

    failure = data.get(REFRESH_ERROR_KEY)
    refresh_error = ""
    if isinstance(failure, dict):
        refresh_error = str(failure.get("error") or "refresh failed")
    elif isinstance(failure, str):
        refresh_error = failure

    proxy_url = str(data.get("proxy_url") or attributes.get("proxy_url") or "")

    return Credential(
        provider=spec.name,
        source=token.path.name,
        base_url=base_url.rstrip("/"),
        prefix=prefix.strip("/"),
        priority=token.priority,
        headers=dict(headers),
        models=(),
        excluded_models=_string_list(data.get("excluded_models"), "excluded_models", token),
        kind=spec.kind,
        path=str(token.path),
        email=str(data.get("email") or ""),
        expires_at=None if spec.kind == "service-account" else _expiry(token),
        refresh_error=refresh_error,
        description=str(attributes.get("description") or data.get("note") or ""),
        websockets=truthy(attributes.get("websockets", data.get("websockets"))),
        proxy_url=proxy_url,
        **fields,
    )


def with_refresh_error(token: TokenFile, error: str) -> TokenFile:
    """`token` marked as refused for good (terminal refresh failure)."""
    stamp = format_time(datetime.datetime.now(datetime.UTC))
    return TokenFile(token.path, {**token.data, REFRESH_ERROR_KEY: {"error": error, "at": stamp}})


@dataclass(slots=True)
class Entry:
    path: Path
    token: TokenFile
    credential: Credential
    stat: tuple[int, int, int]
    disabled: bool = False
    # Data the proxy is writing right now: when the watcher reads it back, it is not an edit.
    pending: dict[str, Any] | None = None


@dataclass(slots=True)
class ScanResult:
    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)  # edited on disk by someone else
    removed: list[str] = field(default_factory=list)

    def __bool__(self) -> bool:
        return bool(self.added or self.changed or self.removed)


class AuthStore:
    def __init__(self, directory: Path | None = None, *, clock: Callable[[], float] = time.time) -> None:
        self.directory = directory
        self._clock = clock
        self._entries: dict[Path, Entry] = {}
        self._paths: dict[str, Path] = {}  # credential id -> its file
        self._stats: dict[Path, tuple[int, int, int]] = {}  # every *.json seen, valid or not
        self._problems: dict[Path, str] = {}  # the message already logged for an unusable file
        self._notes: set[tuple[Path, str]] = set()

    # -- reading ---------------------------------------------------------------------------

    def credentials(self) -> list[Credential]:
        """The credentials that serve requests, in file-name order."""
        return [e.credential for p, e in sorted(self._entries.items()) if not e.disabled]

    def entries(self) -> list[Entry]:
        return [e for _, e in sorted(self._entries.items())]

    def problems(self) -> dict[Path, str]:
        """The `*.json` files skipped, each with the line logged about it (never a token)."""
        return dict(self._problems)

    def entry(self, credential_id: str) -> Entry | None:
        path = self._paths.get(credential_id)
        return self._entries.get(path) if path is not None else None

    # -- keeping in step with the disk --------------------------------------------------------

    def set_directory(self, directory: Path) -> ScanResult:
        """Point the store at `directory` (forgetting the previous one) and load it."""
        if directory != self.directory:
            removed = [e.credential.id for e in self._entries.values()]
            self._entries.clear()
            self._paths.clear()
            self._stats.clear()
            self._problems.clear()
            self.directory = directory
            self._remove_stale_temp_files()
            result = self.scan()
            result.removed.extend(i for i in removed if i not in result.added)
            return result
        return self.scan()

    def scan(self) -> ScanResult:
        """Read every changed `*.json` of the directory; forget the files that are gone.

        A file that cannot be used is skipped with one log line naming it and saying why, and
        the scan goes on; the line is not repeated until the file changes and is still bad in
        another way."""
        result = ScanResult()
        if self.directory is None:
            return result
        seen: set[Path] = set()
        try:
            names = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            names = []
        except OSError as e:
            self._report(self.directory, f"{shown(self.directory)}: cannot list the auth directory: {e.strerror}")
            names = []
        real_directory = os.path.realpath(self.directory)
        for name in names:
            path = self.directory / name
            if is_temporary(path):
                continue
            try:
                link = os.lstat(path)
            except OSError:
                continue  # removed since the listing
            st = link
            if stat.S_ISLNK(link.st_mode):
                try:
                    st = os.stat(path)
                except OSError:
                    pass  # a symlink to nothing (or a loop)
            seen.add(path)
            key = _stat_key(st)
            if self._stats.get(path) == key:
                continue
            self._stats[path] = key
            if refusal := _not_a_token_file(path, name, link, st, real_directory):
                self._forget(path, result)
                self._report(path, f"cliproxy: auth file skipped: {shown(path)}: {refusal}")
                continue
            self._load(path, key, result)
        for path in [p for p in self._stats if p not in seen]:
            del self._stats[path]
            self._problems.pop(path, None)
            self._forget(path, result)
        return result

    def _forget(self, path: Path, result: ScanResult) -> None:
        entry = self._entries.pop(path, None)
        if entry is not None:
            self._paths.pop(entry.credential.id, None)
            result.removed.append(entry.credential.id)
            logger.info(f"cliproxy: auth file {shown(path.name)} removed: its credential is out of the pool")

    def _load(self, path: Path, key: tuple[int, int, int], result: ScanResult) -> None:
        entry = self._entries.get(path)
        kept = " (the version loaded before stays in use)" if entry is not None else ""
        try:
            token = load_token_file(path)
            credential = credential_from_token(token)
        except TokenFileError as e:
            self._report(path, f"cliproxy: auth file skipped: {e}{kept}")
            return
        except Exception as e:  # noqa: BLE001 - one odd file must not stop the scan nor leak a token in a traceback
            self._report(path, f"cliproxy: auth file skipped: {shown(path)}: cannot be used ({type(e).__name__}){kept}")
            return
        self._problems.pop(path, None)
        if entry is not None:
            entry.stat = key
            if token.data == entry.token.data or token.data == entry.pending:
                return  # the proxy's own write, or a touch: nothing changed
        self._note_unsupported(token)
        disabled = token.disabled
        new = Entry(path, token, credential, key, disabled)
        self._entries[path] = new
        if entry is not None and entry.credential.id != credential.id:
            self._paths.pop(entry.credential.id, None)  # its type changed
        self._paths[credential.id] = path
        if entry is None:
            result.added.append(credential.id)
            state = " (disabled)" if disabled else ""
            logger.info(f"cliproxy: auth file {path.name} loaded: {credential.provider} {credential.kind}{state}")
        else:
            result.changed.append(credential.id)
            logger.info(f"cliproxy: auth file {path.name} changed on disk: reloaded")

    def _report(self, path: Path, message: str) -> None:
        # One line per problem: a file that stays broken is not reported at every scan.
        if self._problems.get(path) != message:
            self._problems[path] = message
            logger.warning(message)

    def _note_unsupported(self, token: TokenFile) -> None:
        attributes = token.get("attributes")
        attributes = attributes if isinstance(attributes, dict) else {}
        for key in ("websockets",):
            value = token.get(key) or attributes.get(key)
            if truthy(value) and (token.path, key) not in self._notes:
                self._notes.add((token.path, key))
                logger.info(f"cliproxy: auth file {token.path.name}: {key} is accepted but not used here")

    def _remove_stale_temp_files(self) -> None:
        if self.directory is None:
            return
        try:
            names = os.listdir(self.directory)
        except OSError:
            return
        now = self._clock()
        for name in names:
            if _STALE_TEMP.match(name):
                path = self.directory / name
                try:
                    if now - path.stat().st_mtime > STALE_TEMP_AGE:
                        path.unlink()
                except OSError:
                    pass

    # -- the proxy's own updates -------------------------------------------------------------

    def begin_write(self, credential_id: str, data: dict[str, Any]) -> None:
        """Announce that `data` is about to be written for the credential (not an edit)."""
        if entry := self.entry(credential_id):
            entry.pending = data

    def replace(self, credential_id: str, token: TokenFile, credential: Credential | None = None) -> Credential | None:
        """Put a refreshed token in force; returns its new credential (same id), or None if the
        file has left the store meanwhile."""
        entry = self.entry(credential_id)
        if entry is None:
            return None
        if credential is None:
            try:
                credential = credential_from_token(token)
            except TokenFileError as e:
                logger.warning(f"cliproxy: {e}")
                return None
        entry.token = token
        entry.credential = credential
        entry.pending = None
        return credential


__all__ = [
    "REFRESH_ERROR_KEY",
    "AuthStore",
    "Entry",
    "ScanResult",
    "credential_from_token",
    "with_refresh_error",
]
