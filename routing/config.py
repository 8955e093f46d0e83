"""The typed model of `config.yaml`, with CLIProxyAPI's key names and meanings.

Keys are kebab-case on disk (`request-retry`) and snake_case in Python (`request_retry`).
Keys CLIProxyAPI knows but this proxy does not implement are accepted and reported once, so
that an existing CLIProxyAPI config loads unchanged; a key neither knows is an error
(routing/config_keys.py).
"""

from __future__ import annotations

import functools
import ipaddress
import os
from pathlib import Path
from typing import Annotated, Any, ClassVar, Literal
from urllib.parse import urlsplit

import yaml
from pydantic import (
    AfterValidator,
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)

from routing.config_keys import cliproxyapi_only_keys, unknown_key_errors

DEFAULT_PORT = 8317
API_KEY_ENV = "CLI_PROXY_API_KEY"
# The client key config.example.yaml mentions: public, so never a real protection.
EXAMPLE_CLIENT_KEY = "change-me-to-a-long-random-string"
# Client keys anyone can read in an example config: ours, and the ones CLIProxyAPI's
# config.example.yaml ships with (CLIProxyAPI refuses to serve while they are set).
PLACEHOLDER_CLIENT_KEYS = frozenset(
    {EXAMPLE_CLIENT_KEY, "your-api-key-1", "your-api-key-2", "your-api-key-3"}
)
# Upstream proxies CLIProxyAPI accepts (sdk/proxyutil): a URL of these schemes, or a bypass.
PROXY_SCHEMES = ("http", "https", "socks5", "socks5h")
PROXY_BYPASS = ("direct", "none")


def _url_problem(value: str, schemes: tuple[str, ...]) -> str | None:
    """What is wrong with `value` as a URL of one of `schemes`, without repeating it (a URL may
    carry credentials)."""
    allowed = ", ".join(f"{s}://" for s in schemes)
    if "://" not in value:
        return f"not a URL: it needs a scheme ({allowed}) and a host"
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a port that is not a number in range
    except ValueError:
        return "not a valid URL (check the host and port)"
    if parts.scheme.lower() not in schemes:
        return f"scheme {parts.scheme.lower()!r} is not one of {allowed}"
    if not parts.hostname:
        return "the URL has no host"
    return None


def _http_url(value: str) -> str:
    if problem := _url_problem(value, ("http", "https")):
        raise ValueError(problem)
    return value


def _proxy_url(value: str) -> str:
    if value.strip() and value.strip().lower() not in PROXY_BYPASS:
        if problem := _url_problem(value.strip(), PROXY_SCHEMES):
            raise ValueError(f"{problem}, or direct / none")
    return value


STATE_STORE_SCHEMES = ("redis", "rediss")


def _state_store_url(value: str) -> str:
    if value.strip().lower() in ("", "local"):
        return "local"
    if problem := _url_problem(value.strip(), STATE_STORE_SCHEMES):
        raise ValueError(f"{problem}, or local")
    return value.strip()


StateStoreUrl = Annotated[str, AfterValidator(_state_store_url)]


def _not_a_placeholder(key: str) -> str:
    if key.strip() in PLACEHOLDER_CLIENT_KEYS:
        raise ValueError(
            "this is the placeholder key of an example config, which anyone can read: "
            "replace it with a long random string (e.g. from `openssl rand -hex 24`)"
        )
    return key


ClientKey = Annotated[str, AfterValidator(_not_a_placeholder)]
ProxyUrl = Annotated[str, AfterValidator(_proxy_url)]


def _kebab(name: str) -> str:
    return name.replace("_", "-")


class _Section(BaseModel):
    model_config = ConfigDict(
        alias_generator=_kebab,
        populate_by_name=True,
        extra="ignore",
        frozen=True,
        # YAML reads an unquoted numeric key (`api-key: 123456`) as a number.
        coerce_numbers_to_str=True,
    )

    @model_validator(mode="before")
    @classmethod
    def _empty_is_default(cls, data: Any) -> Any:
        # A key whose entries are all commented out is YAML null; CLIProxyAPI reads it as empty.
        if isinstance(data, dict):
            return {k: v for k, v in data.items() if v is not None}
        return data


class ModelAlias(_Section):
    """An upstream model id (`name`) and the id clients use for it (`alias`)."""

    name: str
    alias: str = ""


class _KeyEntryBase(_Section):
    prefix: str = ""
    base_url: str = ""
    proxy_url: ProxyUrl = ""
    priority: int = 0
    headers: dict[str, str] = Field(default_factory=dict)
    models: list[ModelAlias] = Field(default_factory=list)
    excluded_models: list[str] = Field(default_factory=list)

    @field_validator("prefix")
    @classmethod
    def _prefix_has_no_slashes(cls, v: str) -> str:
        v = v.strip("/")
        if "/" in v:
            raise ValueError("a prefix is one path segment, without '/'")
        return v

    @field_validator("base_url")
    @classmethod
    def _base_url_is_http(cls, v: str) -> str:
        return _http_url(v) if v else v


class ApiKeyEntry(_KeyEntryBase):
    """One entry of `gemini-api-key`, `claude-api-key` or `codex-api-key`."""

    api_key: str = Field(min_length=1)


class CompatKey(_Section):
    api_key: str = Field(min_length=1)
    proxy_url: ProxyUrl = ""


class OpenAICompatibility(_KeyEntryBase):
    """An OpenAI-compatible service (`openai-compatibility` list). Without any key it is one
    keyless credential (a local server, say)."""

    name: str = Field(min_length=1)
    base_url: str = Field(min_length=1)
    disabled: bool = False
    api_key_entries: list[CompatKey] = Field(default_factory=list)
    legacy_keys: ClassVar[tuple[str, ...]] = ("api-keys",)

    @model_validator(mode="before")
    @classmethod
    def _legacy_api_keys(cls, data: Any) -> Any:
        # Older CLIProxyAPI configs list plain `api-keys` here.
        if isinstance(data, dict) and data.get("api-keys") and not data.get("api-key-entries"):
            return {**data, "api-key-entries": [{"api-key": k} for k in data["api-keys"]]}
        return data


class QuotaExceeded(_Section):
    switch_project: bool = True
    switch_preview_model: bool = True


class RemoteManagement(_Section):
    """CLIProxyAPI's management API settings (served by addons/management.py): `secret-key`
    turns the API and the status page on, `allow-remote` admits non-loopback clients,
    `disable-control-panel` leaves the status page out."""

    allow_remote: bool = False
    secret_key: str = ""
    disable_control_panel: bool = False


class Routing(_Section):
    # CLIProxyAPI's weighted-round-robin is accepted and served as round-robin (weights are
    # not implemented).
    strategy: Literal["round-robin", "fill-first", "weighted-round-robin"] = "round-robin"

    @property
    def pool_strategy(self) -> Literal["round-robin", "fill-first"]:
        return "fill-first" if self.strategy == "fill-first" else "round-robin"


# The vendor API hosts whose traffic is TLS-intercepted when a CLI uses the proxy through
# HTTPS_PROXY; every other host tunnels through untouched.
DEFAULT_INTERCEPT_HOSTS = (
    "api.anthropic.com",
    "api.openai.com",
    "chatgpt.com",
    "generativelanguage.googleapis.com",
    "cloudcode-pa.googleapis.com",
)


class Interception(_Section):
    hosts: list[str] = Field(default_factory=lambda: list(DEFAULT_INTERCEPT_HOSTS))
    # What to do with an intercepted request no pool credential can serve: send it on with the
    # CLI's own credential, or answer with an error.
    no_credential: Literal["pass-through", "refuse"] = "pass-through"


class ImageFetch(_Section):
    """Images given by URL that the proxy fetches for upstreams that take only inline data
    (Gemini). Not in CLIProxyAPI. Only public addresses by default: otherwise any client of the
    listener could make the proxy read hosts only the proxy's machine can reach."""

    allow_private: bool = False
    # Host names (`images.corp.example`, `*.corp.example`), addresses or networks (`10.8.0.0/16`)
    # fetched from although they are not public. Cloud metadata addresses are never fetched.
    allowed_hosts: list[str] = Field(default_factory=list)

    @field_validator("allowed_hosts")
    @classmethod
    def _hosts_or_networks(cls, v: list[str]) -> list[str]:
        hosts = []
        for entry in v:
            host = entry.strip().lower().rstrip(".").removeprefix("[").removesuffix("]")
            if not host or "://" in host or "@" in host:
                raise ValueError(f"{entry!r} is not a host name, address or network")
            if "/" in host or ":" in host or host.replace(".", "").isdigit():
                try:
                    ipaddress.ip_network(host, strict=False)
                except ValueError:
                    raise ValueError(f"{entry!r} is not an address or network") from None
            hosts.append(host)
        return hosts


class ModelListing(_Section):
    """Not in CLIProxyAPI (which fetches a curated catalog instead): each credential without a
    `models` list is asked for the upstream's own model listing at start and every
    `interval-seconds`; its vendor's built-in list stands in while a listing fails."""

    enabled: bool = True
    interval_seconds: float = Field(3 * 3600.0, gt=0)
    # A listing (all its pages) taking longer than this fails; the built-in list stands in.
    timeout_seconds: float = Field(30.0, gt=0)


class Config(_Section):
    host: str = "127.0.0.1"
    port: int = Field(DEFAULT_PORT, ge=1, le=65535)
    auth_dir: str = "~/.cli-proxy-api"
    api_keys: list[ClientKey] = Field(default_factory=list)
    # Not in CLIProxyAPI: serve without client keys although an entrance listens beyond
    # loopback (anyone who reaches it uses the pool). Logged as a warning on every load.
    allow_unauthenticated_exposure: bool = False
    debug: bool = False
    # CLIProxyAPI reads a negative value of these three as 0 (SetRetryConfig).
    request_retry: int = 3
    max_retry_credentials: int = 0
    max_retry_interval: float = 30
    disable_cooling: bool = False
    transient_error_cooldown_seconds: float = 0
    force_model_prefix: bool = False
    # Seconds to open a connection to an upstream (TCP and TLS), and to wait for its response
    # headers (and, in a stream, for each next chunk): past either, the attempt fails over.
    # Generous for headers, since a model may think for minutes before a non-stream answer.
    connect_timeout: float = Field(5.0, gt=0)
    response_header_timeout: float = Field(600.0, gt=0)
    # Upstream proxy for every credential (http:// or https://); a credential's own
    # `proxy-url` wins, and "direct" or "none" there bypasses this one. A socks proxy (which
    # CLIProxyAPI configs may name) loads, but the credentials it applies to are left out.
    proxy_url: ProxyUrl = ""
    routing: Routing = Routing()
    quota_exceeded: QuotaExceeded = QuotaExceeded()
    remote_management: RemoteManagement = RemoteManagement()
    gemini_api_key: list[ApiKeyEntry] = Field(default_factory=list)
    claude_api_key: list[ApiKeyEntry] = Field(default_factory=list)
    codex_api_key: list[ApiKeyEntry] = Field(default_factory=list)
    openai_compatibility: list[OpenAICompatibility] = Field(default_factory=list)
    # Not in CLIProxyAPI: vendor host -> base URL, so that tests and corporate gateways can
    # redirect every upstream, API and OAuth alike.
    upstream_overrides: dict[str, str] = Field(default_factory=dict)
    interception: Interception = Interception()
    image_fetch: ImageFetch = ImageFetch()
    model_listing: ModelListing = ModelListing()
    # Not in CLIProxyAPI: quota read from the rate-limit headers upstreams send with every
    # answer; a credential whose most-used window is past the soft threshold (a fraction) is
    # picked only when the others of its priority are too, or resting (1: never).
    quota_headers: bool = True
    quota_soft_threshold: float = Field(0.95, ge=0, le=1)
    # Not in CLIProxyAPI: one row per request in SQLite. A relative path is relative to the
    # config file's folder; ":memory:" keeps it in memory; false or "" turns it off.
    usage_db: str = "usage.db"
    usage_retention_days: float = Field(30, ge=0)
    # Not in CLIProxyAPI: `x-cliproxy-credential: <label>` on answers: off, on the listener's
    # answers only, or on intercepted ones too.
    credential_header: Literal["off", "listener", "all"] = "off"
    # Not in CLIProxyAPI: where the pool's state lives. "local" (this process), or a
    # redis:// or rediss:// URL that several instances share (cooldowns, round-robin, tokens).
    state_store: StateStoreUrl = Field("local", repr=False)  # a URL may carry a password
    # Every key of this proxy in the shared store starts with it (several pools, one Redis).
    state_store_prefix: str = Field("cliproxy:", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9_.:-]+$")
    # Encrypts token material in the shared store; the environment's CLIPROXY_STATE_KEY wins.
    state_store_key: str = Field("", repr=False)
    # An unreachable store at start-up stops the proxy; false: start on local state and say so.
    state_store_required: bool = True

    @field_validator("usage_db", mode="before")
    @classmethod
    def _usage_db_switch(cls, v: Any) -> Any:
        if v is False:
            return ""
        if v is True:
            return "usage.db"
        return v

    @field_validator("credential_header", mode="before")
    @classmethod
    def _credential_header_switch(cls, v: Any) -> Any:
        # YAML reads an unquoted off / on as booleans.
        if v is False:
            return "off"
        if v is True:
            return "listener"
        return v

    @field_validator("request_retry", "max_retry_credentials", "max_retry_interval")
    @classmethod
    def _negative_is_zero(cls, v: float) -> float:
        return max(v, 0)

    @field_validator("upstream_overrides")
    @classmethod
    def _overrides_are_urls(cls, v: dict[str, str]) -> dict[str, str]:
        for host, url in v.items():
            if problem := _url_problem(url, ("http", "https")):
                raise ValueError(f"{host}: {problem}")
        return {host.lower(): url.rstrip("/") for host, url in v.items()}

    @property
    def transient_cooldown(self) -> float:
        """Seconds a credential rests after a 408/5xx (CLIProxyAPI: 0 means 60, negative disables)."""
        if self.transient_error_cooldown_seconds < 0:
            return 0.0
        return self.transient_error_cooldown_seconds or 60.0

    @functools.cached_property
    def client_keys(self) -> tuple[str, ...]:
        # Asked on every request: computed once per config (configs are immutable; the
        # environment's key is read at the first request and kept until the next reload).
        keys = [k for k in self.api_keys if k]
        if env_key := os.environ.get(API_KEY_ENV):
            keys.append(env_key)
        return tuple(keys)

    @property
    def credential_count(self) -> int:
        compat = sum(
            max(1, len(c.api_key_entries)) for c in self.openai_compatibility if not c.disabled
        )
        return len(self.gemini_api_key) + len(self.claude_api_key) + len(self.codex_api_key) + compat

    @property
    def auth_path(self) -> Path:
        return Path(self.auth_dir).expanduser()

    def usage_path(self, config_dir: Path) -> str | None:
        """Where usage is kept (":memory:" included), or None when it is not."""
        if not self.usage_db:
            return None
        if self.usage_db == ":memory:":
            return self.usage_db
        return str(config_dir / Path(self.usage_db).expanduser())


class ConfigError(Exception):
    """A config file that cannot be used; the message names the file and the key path."""


def _key_path(loc: tuple[int | str, ...]) -> str:
    parts: list[str] = []
    for item in loc:
        if isinstance(item, int):
            parts.append(f"[{item}]")
        else:
            parts.append(("." if parts else "") + item)
    return "".join(parts) or "(top level)"


def _message(err: Any) -> str:
    if err["type"] == "value_error" and "error" in err.get("ctx", {}):
        return str(err["ctx"]["error"])  # our own words, without pydantic's "Value error, "
    return err["msg"]


def _load_yaml(text: str, source: str) -> dict:
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        where = f" line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        problem = getattr(e, "problem", None) or str(e)
        raise ConfigError(f"{source}:{where}: not valid YAML: {problem}") from None
    if data is None:
        data = {}
    if not isinstance(data, dict):
        raise ConfigError(f"{source}: expected a mapping of keys at the top level")
    return data


def parse_config(text: str, source: str = "config.yaml") -> Config:
    """Parse YAML text into a `Config`, or raise `ConfigError` naming `source` and the bad key:
    `config.yaml: claude-api-key[0].base-url: the URL has no host`, several joined by `; `."""
    data = _load_yaml(text, source)
    problems = unknown_key_errors(data, Config)
    try:
        config = Config.model_validate(data)
    except ValidationError as e:
        # Never echo the offending value: it may be a secret.
        problems += [f"{_key_path(err['loc'])}: {_message(err)}" for err in e.errors()]
    if problems:
        raise ConfigError(f"{source}: " + "; ".join(_grouped(problems))) from None
    return config


def _grouped(problems: list[str]) -> list[str]:
    """`a: x; b: x` as `a, b: x` (three placeholder keys are one problem)."""
    paths: dict[str, list[str]] = {}
    for problem in problems:
        path, _, what = problem.partition(": ")
        paths.setdefault(what, []).append(path)
    return [f"{', '.join(where)}: {what}" for what, where in paths.items()]


def load_config(path: Path, source: str | None = None) -> Config:
    """Read and parse `path`; messages name it as `source` (the path as the user gave it)."""
    source = source or str(path)
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as e:
        raise ConfigError(f"{source}: cannot read: {e.strerror}") from None
    return parse_config(text, source)


def unsupported_keys(text: str) -> list[str]:
    """CLIProxyAPI's keys in `text` that this proxy loads and ignores (`tls`,
    `claude-api-key[].cloak`)."""
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError:
        return []
    return cliproxyapi_only_keys(data, Config) if isinstance(data, dict) else []


def config_warnings(config: Config, text: str) -> list[str]:
    """What a valid config holds that will not do what it says (one line each)."""
    notes = []
    if ignored := unsupported_keys(text):
        by_section: dict[str, list[str]] = {}
        for key in ignored:
            section, _, name = key.rpartition(".")
            by_section.setdefault(section, []).append(name)
        listed = "; ".join(
            f"{section}: {', '.join(names)}" if section else ", ".join(names)
            for section, names in by_section.items()
        )
        notes.append(f"CLIProxyAPI keys not supported here, ignored: {listed}")
    return notes
