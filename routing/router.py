"""From a requested model name to the credentials that can serve it.

The router is rebuilt from the config on every reload; it is immutable, so a request that
started under the old config keeps a consistent view.
"""

from __future__ import annotations

import fnmatch
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

from auth import providers
from auth.credential import Credential, ModelName
from routing.config import ApiKeyEntry, Config
from translators.formats import Format
from translators.listing import ListedModel
from translators.reasoning import split_suffix

# The wire format each kind of credential speaks upstream, by provider name (an OAuth login and
# an API key of one name speak the same).
PROVIDER_FORMATS = {p.name: Format(p.wire) for p in providers.all_providers()}


def upstream_format(cred: Credential) -> Format:
    return Format(providers.of(cred).wire)


@dataclass(frozen=True, slots=True)
class Route:
    credential: Credential
    model: str  # the upstream model id to send


MAX_RESOLVED = 1024


class UnknownModel(LookupError):
    def __init__(self, model: str, hint: str = "") -> None:
        self.model = model
        message = f"model {model!r} is not offered by any configured credential"
        super().__init__(f"{message}; {hint}" if hint else message)


def credentials_from_config(config: Config) -> list[Credential]:
    creds: list[Credential] = []

    def entry(provider: str, source: str, e: ApiKeyEntry) -> Credential:
        return Credential(
            provider=provider,
            source=source,
            secret=e.api_key,
            base_url=e.base_url.rstrip("/"),
            prefix=e.prefix,
            priority=e.priority,
            headers=dict(e.headers),
            models=tuple(ModelName(m.name, m.alias) for m in e.models),
            excluded_models=tuple(e.excluded_models),
            proxy_url=e.proxy_url,
        )

    for spec in providers.all_providers():
        if spec.config_key:
            for i, e in enumerate(getattr(config, spec.config_key.replace("-", "_"))):
                creds.append(entry(spec.name, f"{spec.config_key}[{i}]", e))
    for i, svc in enumerate(config.openai_compatibility):
        if svc.disabled:
            continue
        keys = [(k.api_key, k.proxy_url) for k in svc.api_key_entries] or [("", "")]
        for j, (key, key_proxy) in enumerate(keys):
            creds.append(
                Credential(
                    provider="openai-compatibility",
                    source=f"openai-compatibility[{i}] {svc.name} key[{j}]",
                    secret=key,
                    proxy_url=key_proxy or svc.proxy_url,
                    base_url=svc.base_url.rstrip("/"),
                    prefix=svc.prefix,
                    priority=svc.priority,
                    headers=dict(svc.headers),
                    models=tuple(ModelName(m.name, m.alias) for m in svc.models),
                    excluded_models=tuple(svc.excluded_models),
                    service=svc.name,
                )
            )
    return creds


def _split_reasoning_suffix(model: str) -> tuple[str, str]:
    base, reasoning = split_suffix(model)
    return (base, model[len(base):]) if reasoning is not None else (model, "")


def _in_family(name: str, pattern: str) -> bool:
    # fnmatch's `*` crosses `/`: `gemini-*` would take `gemini-x/y`, which no vendor family
    # has. Only the catch-all of OpenAI-compatible services (OpenRouter's `org/model`) does.
    if "/" in name and pattern != "*":
        return False
    return fnmatch.fnmatchcase(name, pattern)


def _offers(cred: Credential, name: str, listed: frozenset[str] = frozenset()) -> str | None:
    """The upstream id under which `cred` serves the client-visible `name`, if it does: one of
    its configured models, else one its upstream listed (`listed`, lower-cased) or of its
    vendor's families."""
    lowered = name.lower()
    if cred.models:
        for m in cred.models:
            if m.public.lower() == lowered or m.name.lower() == lowered:
                upstream = m.name
                break
        else:
            return None
    elif lowered in listed or any(_in_family(lowered, p) for p in providers.of(cred).families):
        upstream = name
    else:
        return None
    if cred.excludes(name) or cred.excludes(upstream):
        return None
    return upstream


class Router:
    def __init__(
        self,
        credentials: Iterable[Credential],
        *,
        force_model_prefix: bool = False,
        listings: Mapping[str, tuple[str, ...]] | None = None,
    ):
        self.credentials = tuple(credentials)
        self.force_model_prefix = force_model_prefix
        self._prefixes = {c.prefix for c in self.credentials if c.prefix}
        # Credential id -> the model ids its upstream listed (addons/listings.py); a credential
        # without one lists its vendor's built-in models.
        self.listings = dict(listings or {})
        self._listed = {cid: frozenset(m.lower() for m in ids) for cid, ids in self.listings.items()}
        # Model asked for -> its routes. A router lives until the config, the auth dir or a
        # listing changes, and every request asks it: each model is worked out once per router.
        self._resolved: dict[str, tuple[Route, ...]] = {}

    def resolve(self, requested: str) -> list[Route]:
        """Every route that can serve `requested`, whatever API its credential speaks, in
        config order. A `(high)` / `(16384)` reasoning suffix rides along to the upstream id.

        Raises `UnknownModel` when none can; its message says why, for the client to read.
        """
        routes = self._resolved.get(requested)
        if routes is None:
            base, suffix = _split_reasoning_suffix(requested)
            routes = tuple(Route(r.credential, r.model + suffix) for r in self._routes(base))
            if len(self._resolved) >= MAX_RESOLVED:
                self._resolved.clear()  # model names are the client's to choose: stay bounded
            self._resolved[requested] = routes
        if not routes:
            raise UnknownModel(requested, "GET /v1/models lists the models available")
        return list(routes)

    def _routes(self, requested: str) -> Iterator[Route]:
        prefix, sep, rest = requested.partition("/")
        if sep and prefix in self._prefixes:
            for cred in self.credentials:
                if cred.prefix == prefix and (upstream := _offers(cred, rest, self._listed.get(cred.id, frozenset()))):
                    yield Route(cred, upstream)
            return
        for cred in self.credentials:
            if cred.prefix and self.force_model_prefix and cred.prefix != requested:
                continue
            if upstream := _offers(cred, requested, self._listed.get(cred.id, frozenset())):
                yield Route(cred, upstream)

    def models(self) -> list[ListedModel]:
        """Every client-visible model id, with `prefix/` variants, deduplicated, in config order,
        each with the providers that serve it."""
        seen: dict[str, tuple[str, list[str]]] = {}
        for cred in self.credentials:
            owner = cred.service or cred.provider
            if cred.models:
                names = [(m.public, m.name) for m in cred.models]
            else:
                listed = self.listings.get(cred.id)
                names = [(n, n) for n in (providers.of(cred).listing if listed is None else listed)]
            for name, upstream in names:
                if cred.excludes(name) or cred.excludes(upstream):
                    continue
                ids = [] if (cred.prefix and self.force_model_prefix) else [name]
                if cred.prefix:
                    ids.append(f"{cred.prefix}/{name}")
                for model_id in ids:
                    first_owner, owners = seen.setdefault(model_id, (owner, []))
                    if owner not in owners:
                        owners.append(owner)
        return [ListedModel(i, first, tuple(owners)) for i, (first, owners) in seen.items()]
