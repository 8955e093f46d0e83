"""OAuth token files in CLIProxyAPI's auth-dir format: read, and written atomically.

One JSON file per credential, with a top-level `type` naming the provider. Fields this proxy
does not know are kept as they are when a file is rewritten, so that CLIProxyAPI and this proxy
can share one directory.
"""

from __future__ import annotations

import datetime
import json
import math
import os
import re
import stat
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

# CLIProxyAPI reads the expiry from the first of these that is present.
EXPIRY_KEYS = ("expired", "expire", "expires_at", "expiresAt", "expiry", "expires")
# Written into a token file whose refresh token the provider refused for good. CLIProxyAPI
# ignores unknown fields; a new login rewrites the file without it.
REFRESH_ERROR_KEY = "cliproxy_refresh_error"
FILE_MODE = 0o600
# Real token files are a few KiB (a Vertex service account, the largest, about 3 KiB): anything
# past this is not a token file, and is refused unread.
MAX_TOKEN_FILE_BYTES = 1024 * 1024


class TokenFileError(ValueError):
    """A token file that cannot be used; the message names the file, never a token."""


def shown(path: Path | str) -> str:
    """A file name fit for one log line: undecodable bytes and control characters escaped, so
    that a file name cannot forge or split log lines."""
    text = str(path).encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _parse_time(value: Any) -> datetime.datetime | None:
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if not math.isfinite(value):
            return None
        seconds = value / 1000 if value > 1e12 else value  # milliseconds or seconds
        try:
            return datetime.datetime.fromtimestamp(seconds, datetime.timezone.utc)
        except (OverflowError, ValueError, OSError):  # past year 9999, or before year 1
            return None
    if isinstance(value, str) and value:
        text = value.strip().replace("Z", "+00:00")
        # Go writes up to nanoseconds; Python reads up to microseconds.
        text = re.sub(r"(\.\d{6})\d+", r"\1", text)
        try:
            parsed = datetime.datetime.fromisoformat(text)
        except ValueError:
            return None
        return parsed if parsed.tzinfo else parsed.replace(tzinfo=datetime.timezone.utc)
    return None


def format_time(when: datetime.datetime) -> str:
    """RFC 3339, as CLIProxyAPI writes `expired` and `last_refresh`."""
    return when.astimezone(datetime.timezone.utc).isoformat(timespec="seconds").replace("+00:00", "Z")


@dataclass(slots=True)
class TokenFile:
    path: Path
    data: dict[str, Any]

    @property
    def type(self) -> str:
        return str(self.data.get("type", ""))

    @property
    def _token(self) -> dict[str, Any]:
        # Legacy Gemini CLI files nest the OAuth token under "token".
        nested = self.data.get("token")
        return nested if isinstance(nested, dict) else self.data

    @property
    def access_token(self) -> str:
        return str(self._token.get("access_token") or "")

    @property
    def refresh_token(self) -> str:
        return str(self._token.get("refresh_token") or "")

    @property
    def email(self) -> str:
        return str(self.data.get("email") or "")

    @property
    def expiry(self) -> datetime.datetime | None:
        for source in (self.data, self._token):
            for key in EXPIRY_KEYS:
                if key in source and (when := _parse_time(source[key])) is not None:
                    return when
        return None

    @property
    def disabled(self) -> bool:
        return self.data.get("disabled") is True

    @property
    def priority(self) -> int:
        attributes = self.data.get("attributes")
        value = self.data.get("priority")
        if value is None and isinstance(attributes, dict):
            value = attributes.get("priority")
        try:
            return int(value or 0)
        except (TypeError, ValueError, OverflowError):
            return 0

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def updated(self, **fields: Any) -> TokenFile:
        """A copy with `fields` set (in the nested token too, for legacy Gemini files)."""
        data = dict(self.data)
        if isinstance(data.get("token"), dict):
            token = dict(data["token"])
            for key in ("access_token", "refresh_token", "expiry"):
                if key in fields:
                    token[key] = fields[key]
            data["token"] = token
        data.update(fields)
        return TokenFile(self.path, data)


def _read_bounded(path: Path) -> bytes:
    """The bytes of a regular file of at most MAX_TOKEN_FILE_BYTES. Opened non-blocking and
    checked on the open descriptor, so that a FIFO put in place meanwhile cannot hang the event
    loop and a file swapped for a huge one is not read whole."""
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_CLOEXEC", 0))
    except OSError as e:
        raise TokenFileError(f"{shown(path)}: cannot read: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        st = os.fstat(fd)
        if stat.S_ISDIR(st.st_mode):
            raise TokenFileError(f"{shown(path)}: is a directory, not a token file")
        if not stat.S_ISREG(st.st_mode):
            raise TokenFileError(f"{shown(path)}: is not a regular file (a FIFO, socket or device)")
        if st.st_size > MAX_TOKEN_FILE_BYTES:
            raise TokenFileError(f"{shown(path)}: {_too_large(st.st_size)}")
        try:
            data = f.read(MAX_TOKEN_FILE_BYTES + 1)
        except OSError as e:
            raise TokenFileError(f"{shown(path)}: cannot read: {e.strerror}") from None
    if len(data) > MAX_TOKEN_FILE_BYTES:  # grew after the check
        raise TokenFileError(f"{shown(path)}: {_too_large(len(data))}")
    return data


def read_token_bytes(path: Path) -> bytes:
    """A token file's bytes as they are on disk (a download), read as `load_token_file` reads
    them: a regular file of at most MAX_TOKEN_FILE_BYTES, or TokenFileError."""
    return _read_bounded(path)


def _too_large(size: int) -> str:
    return f"is {size} bytes, over the {MAX_TOKEN_FILE_BYTES // 1024 // 1024} MiB limit for a token file"


def load_token_file(path: Path) -> TokenFile:
    """Read and parse a token file, or raise TokenFileError saying what is wrong with it (never
    quoting its content)."""
    return parse_token_file(path, _read_bounded(path))


def parse_token_file(path: Path, raw: bytes) -> TokenFile:
    """The token file `raw` would be at `path` (an upload, before it is written), or
    TokenFileError as `load_token_file` raises it."""
    if len(raw) > MAX_TOKEN_FILE_BYTES:
        raise TokenFileError(f"{shown(path)}: {_too_large(len(raw))}")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TokenFileError(f"{shown(path)}: not UTF-8 text (invalid byte at offset {e.start})") from None
    text = text.removeprefix("\ufeff")  # a BOM, as some Windows editors write
    try:
        data = json.loads(text)
    except RecursionError:
        raise TokenFileError(f"{shown(path)}: JSON nested too deeply") from None
    except ValueError as e:
        raise TokenFileError(
            f"{shown(path)}: not valid JSON (line {getattr(e, 'lineno', '?')}); is it still being written?"
        ) from None
    if not isinstance(data, dict):
        raise TokenFileError(f"{shown(path)}: expected a JSON object")
    kind = data.get("type")
    if kind is None or kind == "":
        raise TokenFileError(f'{shown(path)}: no "type" naming the provider')
    if not isinstance(kind, str):
        raise TokenFileError(f'{shown(path)}: "type" must be a string naming the provider')
    return TokenFile(path, data)


def save_token_file(token: TokenFile) -> None:
    """Write atomically: a temp file in the same directory, fsync'd, mode 600, renamed over the
    old one. A crash at any point leaves either the old file or the new one, never a mix."""
    directory = token.path.parent
    directory.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(prefix=f".{token.path.name}.", suffix=".tmp", dir=directory)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            json.dump(token.data, f, indent=2, ensure_ascii=False)
            f.write("\n")
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, token.path)
    except BaseException:
        try:
            os.unlink(tmp)
        except FileNotFoundError:
            pass
        raise
    dir_fd = os.open(directory, os.O_RDONLY)
    try:
        os.fsync(dir_fd)
    finally:
        os.close(dir_fd)


def is_temporary(path: Path) -> bool:
    """The proxy's own in-progress writes, which watchers must ignore."""
    return path.name.startswith(".") or path.suffix != ".json"
