"""The interface every account type implements, and the small helpers the modules share.

A `Provider` is one kind of credential the pool can hold (an OAuth login, a service account, an
API key). Its instance is plain data (hosts, client id, lead time, wire format, model families),
and its methods are the few places where an account type behaves differently: reading its token
file, refreshing, and decorating an upstream request. Everything else in the proxy asks the
registry (`auth.providers`) for the provider of a credential and never names one.
"""

from __future__ import annotations

import base64
import json
import urllib.parse
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from auth.credential import Credential, Kind
from auth.providers.listing import Lister

if TYPE_CHECKING:
    import httpx

    from auth.login.session import Session
    from auth.providers.grant import Refreshed
    from auth.tokens import TokenFile

HOUR = 3600.0
MINUTE = 60.0


@dataclass(frozen=True, slots=True)
class Login:
    """`cliproxy auth <command>`: the flow lives in `module` (a `login(session) -> Record`),
    composed from the shared pieces of auth/login (PKCE, device code, local callback)."""

    command: str
    title: str
    module: str
    # `cliproxy auth` options only this login takes (LoginOptions field names).
    options: tuple[str, ...] = ()


@dataclass(frozen=True, slots=True)
class Tool:
    """The vendor's own CLI, which `cliproxy env|run <program>` points at the proxy: the CA
    variables it reads ("ca": mitmproxy's CA; "bundle": the system CAs plus mitmproxy's) and a
    model it asks for by default (to tell which credentials would serve it)."""

    program: str
    ca_variables: tuple[tuple[str, str], ...]
    model: str


@dataclass(frozen=True)
class Provider:
    # The pool's name for this account type (`Credential.provider`); with `kind` it picks the
    # provider of a credential (an OAuth `claude` login and a `claude` API key are two).
    name: str
    kind: Kind
    # The wire format its upstream speaks: a translators.formats.Format value.
    wire: str
    # Model ids served without a `models` list (wildcards: new releases included), and the ids
    # listed on /v1/models.
    families: tuple[str, ...] = ()
    listing: tuple[str, ...] = ()
    # mitmweb's marker (a mitmproxy emoji name) on the flows this provider answered.
    marker: str = ":white_circle:"
    # The auth-dir `type` of its token files ("" for config API keys).
    file_type: str = ""
    # Where requests go (before `upstream-overrides`); a file's or entry's `base_url` replaces it.
    base_url: str = ""
    # OAuth: refresh this long before the access token expires; the token endpoint and client.
    lead: float = 5 * MINUTE
    token_url: str = ""
    client_id: str = ""
    client_secret: str = ""
    # Speaks Gemini inside Gemini CLI's Code Assist envelope (`/v1internal:{action}`).
    code_assist: bool = False
    # ...and it is Gemini CLI's own Code Assist API: a Code Assist client's call passes through.
    code_assist_native: bool = False
    # The upstream answers only as a stream, whatever the client asked (read whole for others).
    forced_stream: bool = False
    # Vertex AI accepts the Gemini fields Code Assist drops (labels...).
    vertex_fields: bool = False
    login: Login | None = None
    tool: Tool | None = None
    # How its upstream lists models (None: it has no listing; `listing` is all there is).
    lister: Lister | None = None
    # API keys: the config.yaml list of `api-key` entries they come from (`gemini-api-key`).
    config_key: str = ""

    # -- the token file ------------------------------------------------------------------------

    def read(self, token: TokenFile) -> dict[str, Any]:
        """The Credential fields this account type takes from its token file, beyond the
        generic ones (auth.store). Raises TokenFileError naming the file, never a token."""
        return {}

    def missing_secret(self) -> str:
        """The field named when a file has neither its secret nor a refresh token."""
        return "access_token"

    # -- refreshing ----------------------------------------------------------------------------

    async def refresh(
        self, cred: Credential, token: TokenFile, client: httpx.AsyncClient, overrides: Mapping[str, str]
    ) -> Refreshed:
        """One refresh of `cred` (whose file content is `token`). Raises grant.RefreshError."""
        from auth.providers.grant import RefreshError

        raise RefreshError(f"{self.name}: no refresh procedure", terminal=True, code="unsupported")

    # -- the upstream --------------------------------------------------------------------------

    def upstream_base(self, cred: Credential) -> str:
        return cred.base_url or self.base_url

    def auth_headers(self, cred: Credential) -> dict[str, str]:
        # OAuth access tokens, minted service-account tokens and most API keys alike.
        return {"authorization": f"Bearer {cred.secret}"} if cred.secret else {}

    def headers(self, cred: Credential, client_headers: Mapping[str, str]) -> dict[str, str]:
        """What the upstream requires beyond the token: ids and flags always, identity headers
        only when the client sent none of its own."""
        return {}

    def listing_headers(self, cred: Credential) -> dict[str, str]:
        """The headers of a model-listing request: its credential and the listing's own."""
        assert self.lister is not None
        return {**self.auth_headers(cred), **dict(self.lister.headers)}

    def upstream_model(self, model: str) -> str:
        """The id the upstream knows a pool model by, when it differs."""
        return model

    def gemini_resource(self, cred: Credential, version: str) -> tuple[str, ...]:
        """Gemini upstreams: the path segments before `{model}:{action}`."""
        return (version, "models")

    def envelope_fields(self, model: str) -> dict[str, str]:
        """Code Assist upstreams: what this account type adds to the envelope."""
        return {}

    def needs_project(self, cred: Credential) -> bool:
        """The credential must find its Code Assist project before it can serve."""
        return False

    def discover_project(self, session: Session, access_token: str) -> str:
        """Blocking: the account's Code Assist project. Raises LoginError."""
        raise NotImplementedError


def with_defaults(out: dict[str, str], defaults: Mapping[str, str], client_headers: Mapping[str, str]) -> dict[str, str]:
    """`out` plus the identity headers the client did not send itself."""
    out.update({k: v for k, v in defaults.items() if k not in client_headers})
    return out


def merge_list_header(client_value: str | None, required: str) -> str:
    values = [v.strip() for v in (client_value or "").split(",") if v.strip()]
    if required not in values:
        values.append(required)
    return ",".join(values)


def text(data: Mapping[str, Any], key: str) -> str:
    return str(data.get(key) or "").strip()


def truthy(value: Any) -> bool:
    if isinstance(value, str):
        return value.strip().lower() in ("1", "true", "yes", "on")
    return value is True


def b64url(raw: bytes) -> str:
    """Unpadded base64url (JWTs, PKCE)."""
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def jwt_claims(token: str) -> dict[str, Any]:
    """The payload of a JWT, unverified, or {} if `token` is not one: only to read the account
    facts the issuer put there (email, account id, plan)."""
    parts = token.split(".") if isinstance(token, str) else []
    if len(parts) != 3:
        return {}
    payload = parts[1] + "=" * (-len(parts[1]) % 4)
    try:
        claims = json.loads(base64.urlsafe_b64decode(payload.encode("ascii")))
    except (ValueError, UnicodeError, RecursionError):
        return {}
    return claims if isinstance(claims, dict) else {}


def redirect(url: str, overrides: Mapping[str, str]) -> str:
    """Apply `upstream-overrides` (vendor host -> base URL) to an absolute URL."""
    if not overrides:
        return url
    parts = urllib.parse.urlsplit(url)
    base = overrides.get((parts.hostname or "").lower())
    if base is None:
        return url
    target = urllib.parse.urlsplit(base)
    path = target.path.rstrip("/") + parts.path
    return urllib.parse.urlunsplit((target.scheme, target.netloc, path, parts.query, ""))
