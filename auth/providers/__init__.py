"""The registry of account types: one module per provider, one line here each.

Everything outside this package asks the registry for the `Provider` of a credential (or of a
token file's `type`, or of a login command) and uses its fields and methods; no other code names
a provider. Adding one is a module implementing `auth.providers.base.Provider` and a line in
`_BUILTIN` (or `register()` at run time, as the tests do).
"""

from __future__ import annotations

from auth.credential import Credential
from auth.providers import (
    antigravity,
    claude,
    claude_key,
    codex,
    gemini_cli,
    gemini_key,
    iflow,
    kimi,
    openai_compatible,
    openai_key,
    qwen,
    vertex,
    xai,
)
from auth.providers.base import HOUR, MINUTE, Login, Provider, Tool, redirect

_BUILTIN: tuple[Provider, ...] = (
    gemini_key.PROVIDER,
    claude_key.PROVIDER,
    openai_key.PROVIDER,
    openai_compatible.PROVIDER,
    claude.PROVIDER,
    codex.PROVIDER,
    gemini_cli.PROVIDER,
    antigravity.PROVIDER,
    qwen.PROVIDER,
    iflow.PROVIDER,
    kimi.PROVIDER,
    vertex.PROVIDER,
    xai.PROVIDER,
)

# (name, is an API key) -> provider: an OAuth `claude` login and a `claude` API key share a name.
_BY_ACCOUNT: dict[tuple[str, bool], Provider] = {}
_BY_FILE_TYPE: dict[str, Provider] = {}
_BY_LOGIN: dict[str, Provider] = {}


def register(provider: Provider) -> None:
    """Make `provider` known (replacing one of the same name and kind)."""
    _BY_ACCOUNT[(provider.name, provider.kind == "api-key")] = provider
    if provider.file_type:
        _BY_FILE_TYPE[provider.file_type] = provider
    if provider.login is not None:
        _BY_LOGIN[provider.login.command] = provider


def unregister(provider: Provider) -> None:
    _BY_ACCOUNT.pop((provider.name, provider.kind == "api-key"), None)
    if _BY_FILE_TYPE.get(provider.file_type) is provider:
        del _BY_FILE_TYPE[provider.file_type]
    if provider.login is not None and _BY_LOGIN.get(provider.login.command) is provider:
        del _BY_LOGIN[provider.login.command]


for _provider in _BUILTIN:
    register(_provider)


def of(cred: Credential) -> Provider:
    """The provider of `cred`. KeyError for a credential no registered provider made."""
    try:
        return _BY_ACCOUNT[(cred.provider, cred.kind == "api-key")]
    except KeyError:
        # A credential made by hand with a kind its provider does not have: the name decides.
        return _BY_ACCOUNT[(cred.provider, cred.kind != "api-key")]


def api_key(name: str) -> Provider:
    """The provider of config.yaml's API keys named `name`."""
    return _BY_ACCOUNT[(name, True)]


def by_file_type(file_type: str) -> Provider | None:
    return _BY_FILE_TYPE.get(file_type)


def file_types() -> list[str]:
    return sorted(_BY_FILE_TYPE)


def all_providers() -> list[Provider]:
    return list(_BY_ACCOUNT.values())


def logins() -> dict[str, Provider]:
    """`cliproxy auth <command>` -> the provider it signs in to, in registry order."""
    return dict(_BY_LOGIN)


def lead_time(cred: Credential) -> float:
    provider = _BY_ACCOUNT.get((cred.provider, cred.kind == "api-key"))
    return provider.lead if provider else 5 * MINUTE


__all__ = [
    "HOUR", "MINUTE", "Login", "Provider", "Tool", "all_providers", "api_key", "by_file_type", "file_types",
    "lead_time", "logins", "of", "redirect", "register", "unregister",
]
