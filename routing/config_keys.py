"""Which keys a config.yaml may hold, so that a mistyped key is an error and not a silent default.

A key is one of three things: this proxy's (a field of the model in routing/config.py), one of
CLIProxyAPI's that this proxy does not implement (listed here; loaded, ignored and named once, so
that a CLIProxyAPI config works unchanged), or neither, which is an error: a mistyped `base-url`
inside a key entry would otherwise send that key to the vendor's own host.
"""

from __future__ import annotations

import difflib
import re
import types
import typing
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from pydantic import BaseModel

# CLIProxyAPI v7.2.140 (internal/config/*.go yaml tags) and the legacy keys it still migrates,
# by section; `[]` stands for any entry of a list. A section this proxy does not implement at all
# (`tls`, `payload`, ...) is listed as one top-level key and not looked into.
_ENTRY_COMMON = {"weight", "disable-cooling", "request-retry", "request-scoped-errors"}
_MODEL_COMMON = {"display-name", "max-context-length", "force-mapping", "is-compat", "thinking"}
CLIPROXYAPI_ONLY: dict[str, frozenset[str]] = {
    "": frozenset({
        "tls", "credential-concurrency", "credential-in-flight", "plugins", "pprof",
        "commercial-mode", "logging-to-file", "logs-max-total-size-mb", "error-logs-max-files",
        "usage-statistics-enabled", "redis-usage-queue-retention-seconds", "save-cooldown-status",
        "auth-auto-refresh-workers", "ws-auth", "antigravity-signature-cache-enabled",
        "antigravity-signature-bypass-strict", "antigravity", "interactions-api-key",
        "xai-api-key", "xai", "codex", "codex-header-defaults", "claude-header-defaults",
        "disable-claude-cloak-mode", "vertex-api-key", "oauth-excluded-models", "oauth-model-alias",
        "oauth-request-scoped-errors", "payload", "disable-image-generation",
        "gpt-image-2-base-model", "video-result-auth-cache-ttl", "request-log", "claude-code",
        "passthrough-headers", "streaming", "nonstream-keepalive-interval",
        # legacy, still read by CLIProxyAPI's migration
        "auth", "generative-language-api-key", "gemini-web", "ampcode", "enable-gemini-cli-endpoint",
    }),
    "routing": frozenset({"session-affinity", "session-affinity-ttl"}),
    "quota-exceeded": frozenset({"antigravity-credits"}),
    "remote-management": frozenset({"disable-auto-update-panel", "panel-github-repository"}),
    "gemini-api-key[]": frozenset(_ENTRY_COMMON),
    "claude-api-key[]": frozenset({
        *_ENTRY_COMMON, "rebuild-mid-system-message", "cloak", "fingerprint-profile",
        "experimental-cch-signing",
    }),
    "codex-api-key[]": frozenset({*_ENTRY_COMMON, "websockets", "alpha-search"}),
    "gemini-api-key[].models[]": frozenset(_MODEL_COMMON),
    "claude-api-key[].models[]": frozenset(_MODEL_COMMON),
    "codex-api-key[].models[]": frozenset(_MODEL_COMMON),
    "openai-compatibility[]": frozenset(
        {"support-prompt-cache-key", "disable-cooling", "request-retry", "request-scoped-errors"}
    ),
    "openai-compatibility[].api-key-entries[]": frozenset({"weight"}),
    "openai-compatibility[].models[]": frozenset(
        {*_MODEL_COMMON, "image", "input-modalities", "output-modalities"}
    ),
}

# A key name is printed only if it looks like one: a mapping key where a value belongs may be a
# pasted secret (`- sk-ant-...: `), and error messages never echo secrets.
_PRINTABLE_KEY = re.compile(r"^[a-z][a-z0-9_-]{0,39}$")


def _printable(key: str) -> bool:
    return bool(_PRINTABLE_KEY.match(key)) and sum(c.isdigit() for c in key) <= 2


def _nested_models(annotation: Any) -> tuple[type[BaseModel] | None, bool]:
    """The model a field holds (directly, or as the items of a list), and whether it is a list."""
    origin = typing.get_origin(annotation)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(annotation):
            found = _nested_models(arg)
            if found[0] is not None:
                return found
        return None, False
    if origin is list:
        (item,) = typing.get_args(annotation) or (None,)
        model, _ = _nested_models(item)
        return model, True
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation, False
    return None, False


def _keys_of(model: type[BaseModel]) -> dict[str, Any]:
    keys = {(field.alias or name): field.annotation for name, field in model.model_fields.items()}
    # Spellings a model reads itself (a validator migrating a legacy key).
    for key in getattr(model, "legacy_keys", ()):
        keys.setdefault(key, None)
    return keys


@dataclass(frozen=True)
class _Stray:
    """A key the model does not have."""

    path: str  # where it is, with list indexes (`gemini-api-key[0].baseurl`)
    section: str  # the same with `[]` for indexes, as CLIPROXYAPI_ONLY is keyed
    cliproxyapi: bool  # one of CLIProxyAPI's keys that this proxy ignores
    suggestion: str | None = None
    hidden: bool = False  # `path` is the enclosing one: the key itself may be a secret


def _walk(data: Any, model: type[BaseModel], path: str, section: str) -> Iterator[_Stray]:
    if not isinstance(data, dict):
        return  # the wrong shape is the model's error to report
    known = _keys_of(model)
    theirs = CLIPROXYAPI_ONLY.get(section, frozenset())
    for key, value in data.items():
        name = str(key)
        where = f"{path}.{name}" if path else name
        inner = f"{section}.{name}" if section else name
        if name in known:
            nested, is_list = _nested_models(known[name])
            if nested is None:
                continue
            if is_list and isinstance(value, list):
                for i, item in enumerate(value):
                    yield from _walk(item, nested, f"{where}[{i}]", f"{inner}[]")
            elif not is_list:
                yield from _walk(value, nested, where, inner)
        elif name in theirs:
            yield _Stray(where, inner, cliproxyapi=True)
        elif not _printable(name):
            yield _Stray(path or "(top level)", inner, cliproxyapi=False, hidden=True)
        else:
            spelled = name.replace("_", "-").lower()
            candidates = [*known, *theirs]
            close = [spelled] if spelled in candidates else difflib.get_close_matches(
                spelled, candidates, n=1, cutoff=0.6
            )
            yield _Stray(where, inner, False, close[0] if close else None)


def unknown_key_errors(data: Any, model: type[BaseModel]) -> list[str]:
    """`path: unknown key; did you mean x?` for every key neither this proxy nor CLIProxyAPI knows."""
    errors = []
    for stray in _walk(data, model, "", ""):
        if stray.hidden:
            errors.append(f"{stray.path}: unknown key (not shown: it may be a secret)")
        elif not stray.cliproxyapi:
            hint = f"; did you mean {stray.suggestion}?" if stray.suggestion else ""
            errors.append(f"{stray.path}: unknown key{hint}")
    return errors


def cliproxyapi_only_keys(data: Any, model: type[BaseModel]) -> list[str]:
    """CLIProxyAPI's keys that this proxy ignores, by section (`claude-api-key[].cloak`), sorted."""
    return sorted({stray.section for stray in _walk(data, model, "", "") if stray.cliproxyapi})
