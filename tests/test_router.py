"""routing/router.py: credentials built from the config, and model name -> routes."""

from __future__ import annotations

import textwrap

import pytest

from routing.config import parse_config
from routing.router import PROVIDER_FORMATS, Route, Router, UnknownModel, credentials_from_config
from translators.formats import Format

CLAUDE_SECRET = "sk-ant-api03-claude-secret-0001"
GEMINI_SECRET = "AIzaSy-gemini-secret-0002"
CODEX_SECRET = "sk-proj-codex-secret-0003"

CONFIG = textwrap.dedent(
    f"""
    claude-api-key:
      - api-key: {CLAUDE_SECRET}
      - api-key: sk-ant-work-secret-0004
        prefix: work
        priority: 5
        base-url: https://claude-gw.example.com/
        headers: {{X-Team: core}}
    gemini-api-key:
      - api-key: {GEMINI_SECRET}
    codex-api-key:
      - api-key: {CODEX_SECRET}
    openai-compatibility:
      - name: openrouter
        base-url: https://openrouter.ai/api/v1/
        prefix: or
        priority: 2
        api-key-entries:
          - api-key: sk-or-key-one-0005
          - api-key: sk-or-key-two-0006
        models:
          - name: moonshotai/kimi-k2
            alias: kimi-k2
          - name: z-ai/glm-4.6
      - name: parked
        base-url: https://parked.example.com/v1
        disabled: true
        api-key-entries:
          - api-key: sk-parked-0007
    """
)


def build(text: str = CONFIG) -> list:
    return credentials_from_config(parse_config(text))


def router_for(text: str, **kw) -> Router:
    config = parse_config(text)
    return Router(credentials_from_config(config), force_model_prefix=config.force_model_prefix, **kw)


def one_key(provider_key: str, **fields) -> str:
    """A config with a single `provider_key` entry; `fields` are YAML snippets."""
    lines = [f"{provider_key}:", "  - api-key: k-0123456789abcdef"]
    lines += [f"    {name.replace('_', '-')}: {value}" for name, value in fields.items()]
    return "\n".join(lines) + "\n"


def sources(routes: list[Route]) -> list[str]:
    return [r.credential.source for r in routes]


# -- credentials_from_config ---------------------------------------------------------------


def test_one_credential_per_key_in_config_order():
    assert [(c.provider, c.source) for c in build()] == [
        ("gemini", "gemini-api-key[0]"),
        ("claude", "claude-api-key[0]"),
        ("claude", "claude-api-key[1]"),
        ("codex", "codex-api-key[0]"),
        ("openai-compatibility", "openai-compatibility[0] openrouter key[0]"),
        ("openai-compatibility", "openai-compatibility[0] openrouter key[1]"),
    ]


def test_entry_fields_are_carried_over():
    work = next(c for c in build() if c.source == "claude-api-key[1]")
    assert work.prefix == "work"
    assert work.priority == 5
    assert work.base_url == "https://claude-gw.example.com"
    assert dict(work.headers) == {"X-Team": "core"}
    assert work.secret == "sk-ant-work-secret-0004"


def test_openai_compatibility_keys_share_the_service_settings():
    keys = [c for c in build() if c.provider == "openai-compatibility"]
    assert [c.secret for c in keys] == ["sk-or-key-one-0005", "sk-or-key-two-0006"]
    for c in keys:
        assert c.service == "openrouter"
        assert c.base_url == "https://openrouter.ai/api/v1"
        assert (c.prefix, c.priority) == ("or", 2)
        assert [(m.name, m.alias) for m in c.models] == [
            ("moonshotai/kimi-k2", "kimi-k2"),
            ("z-ai/glm-4.6", ""),
        ]


def test_disabled_services_are_skipped():
    assert not any("parked" in c.source or c.secret == "sk-parked-0007" for c in build())


def test_ids_are_stable_across_builds():
    assert [c.id for c in build()] == [c.id for c in build()]


def test_ids_do_not_depend_on_position_in_the_file():
    reordered = CONFIG.replace("claude-api-key:", "claude-api-key:\n  - api-key: sk-new-key-first")
    before = {c.secret: c.id for c in build()}
    after = {c.secret: c.id for c in build(reordered)}
    assert all(after[secret] == id_ for secret, id_ in before.items())


def test_ids_differ_between_keys():
    ids = [c.id for c in build()]
    assert len(set(ids)) == len(ids)


def test_ids_and_labels_never_contain_the_secret():
    for c in build():
        assert c.secret not in c.id
        assert c.secret not in c.label
        assert c.secret not in repr(c)


def test_a_label_shows_the_source_and_at_most_the_last_four_characters():
    claude = build()[1]
    assert claude.label == "claude-api-key[0] (…0001)"


def test_a_short_secret_is_not_shown_at_all():
    (c,) = build("claude-api-key:\n  - api-key: sk-xyzw\n")
    assert c.label == "claude-api-key[0] (…****)"


def test_an_openai_compatibility_service_without_keys_is_one_credential():
    text = "openai-compatibility:\n  - name: ollama\n    base-url: http://127.0.0.1:11434/v1\n"
    assert parse_config(text).credential_count == 1
    assert len(build(text)) == 1


# -- resolve: vendor families --------------------------------------------------------------


@pytest.mark.parametrize(
    ("provider_key", "served", "not_served"),
    [
        ("claude-api-key", ["claude-sonnet-4-5", "Claude-Opus-4-1"], ["gpt-5", "gemini-2.5-pro"]),
        ("gemini-api-key", ["gemini-2.5-pro", "gemma-3-27b-it"], ["claude-sonnet-4-5", "gpt-5"]),
        ("codex-api-key", ["gpt-5-codex", "o3-mini", "o3"], ["claude-sonnet-4-5", "gemini-2.5-pro"]),
    ],
)
def test_a_key_without_models_serves_its_vendor_family(provider_key, served, not_served):
    router = router_for(one_key(provider_key))
    for model in served:
        (route,) = router.resolve(model)
        assert route.model == model
    for model in not_served:
        with pytest.raises(UnknownModel):
            router.resolve(model)


def test_a_key_with_models_serves_only_those():
    router = router_for(one_key("claude-api-key", models="[{name: claude-haiku-4-5}]"))
    assert router.resolve("claude-haiku-4-5")[0].model == "claude-haiku-4-5"
    with pytest.raises(UnknownModel):
        router.resolve("claude-sonnet-4-5")


def test_an_alias_resolves_to_the_upstream_name():
    router = router_for(
        one_key("claude-api-key", models="[{name: claude-sonnet-4-5-20250929, alias: sonnet}]")
    )
    (route,) = router.resolve("sonnet")
    assert route.model == "claude-sonnet-4-5-20250929"


def test_alias_lookup_is_case_insensitive():
    router = router_for(one_key("claude-api-key", models="[{name: claude-x-1, alias: Sonnet}]"))
    assert router.resolve("SONNET")[0].model == "claude-x-1"


def test_every_matching_credential_is_a_route_in_config_order():
    text = "claude-api-key:\n  - api-key: k1-0123456789\n  - api-key: k2-0123456789\n"
    assert sources(router_for(text).resolve("claude-sonnet-4-5")) == [
        "claude-api-key[0]",
        "claude-api-key[1]",
    ]


def test_openai_compatibility_routes_every_key_of_the_service():
    routes = router_for(CONFIG).resolve("kimi-k2")
    assert [r.credential.secret for r in routes] == ["sk-or-key-one-0005", "sk-or-key-two-0006"]
    assert {r.model for r in routes} == {"moonshotai/kimi-k2"}


def test_a_model_name_with_a_slash_that_is_not_a_prefix_is_a_plain_name():
    assert {r.model for r in router_for(CONFIG).resolve("z-ai/glm-4.6")} == {"z-ai/glm-4.6"}


def test_routes_of_every_api_are_returned_in_config_order():
    text = CONFIG + (
        "  - name: any\n    base-url: https://any.example.com/v1\n"
        "    api-key-entries: [{api-key: sk-any-0123456789}]\n"
    )
    # The claude keys speak Anthropic Messages, "any" (no models list) OpenAI Chat.
    routes = router_for(text).resolve("claude-sonnet-4-5")
    assert [PROVIDER_FORMATS[r.credential.provider] for r in routes] == [
        Format.ANTHROPIC,
        Format.ANTHROPIC,
        Format.OPENAI_CHAT,
    ]


# -- resolve: reasoning suffix ------------------------------------------------------------


@pytest.mark.parametrize("suffix", ["(high)", "(16384)", "(none)", "(-1)"])
def test_a_reasoning_suffix_rides_along_to_the_upstream_id(suffix):
    router = router_for(CONFIG)
    (route,) = router.resolve(f"work/claude-sonnet-4-5{suffix}")
    assert route.model == f"claude-sonnet-4-5{suffix}"
    assert {r.model for r in router.resolve(f"kimi-k2{suffix}")} == {f"moonshotai/kimi-k2{suffix}"}


def test_a_parenthesised_word_that_is_no_effort_is_part_of_the_name():
    with pytest.raises(UnknownModel, match=r"claude-sonnet-4-5\(turbo\)"):
        router_for(one_key("claude-api-key", models="[{name: claude-sonnet-4-5}]")).resolve(
            "claude-sonnet-4-5(turbo)"
        )


def test_an_excluded_model_stays_excluded_with_a_suffix():
    router = router_for(one_key("claude-api-key", excluded_models='["*opus*"]'))
    with pytest.raises(UnknownModel):
        router.resolve("claude-opus-4-1(high)")


# -- resolve: prefixes ---------------------------------------------------------------------


def test_a_prefixed_name_only_hits_the_prefixed_credential_and_loses_the_prefix():
    (route,) = router_for(CONFIG).resolve("work/claude-sonnet-4-5")
    assert route.credential.source == "claude-api-key[1]"
    assert route.model == "claude-sonnet-4-5"


def test_a_prefixed_alias_resolves_to_the_upstream_name():
    assert {r.model for r in router_for(CONFIG).resolve("or/kimi-k2")} == {"moonshotai/kimi-k2"}


def test_an_unprefixed_name_also_uses_prefixed_credentials_by_default():
    assert sources(router_for(CONFIG).resolve("claude-sonnet-4-5")) == [
        "claude-api-key[0]",
        "claude-api-key[1]",
    ]


def test_force_model_prefix_keeps_prefixed_credentials_for_prefixed_names():
    router = router_for("force-model-prefix: true\n" + CONFIG)
    assert sources(router.resolve("claude-sonnet-4-5")) == ["claude-api-key[0]"]
    assert sources(router.resolve("work/claude-sonnet-4-5")) == ["claude-api-key[1]"]
    with pytest.raises(UnknownModel):
        router.resolve("kimi-k2")  # only offered as "or/kimi-k2"


def test_a_prefixed_name_the_prefixed_credential_does_not_offer_is_unknown():
    with pytest.raises(UnknownModel, match="work/gpt-5"):
        router_for(CONFIG).resolve("work/gpt-5")


# -- resolve: excluded models --------------------------------------------------------------


@pytest.mark.parametrize(
    ("pattern", "excluded", "kept"),
    [
        ("claude-opus-4-1", ["claude-opus-4-1", "CLAUDE-OPUS-4-1"], ["claude-opus-4-1-x"]),
        ("claude-3-*", ["claude-3-7-sonnet", "Claude-3-Haiku"], ["claude-sonnet-4-5"]),
        ("*-thinking", ["claude-opus-4-5-thinking"], ["claude-opus-4-5"]),
        ("*haiku*", ["claude-haiku-4-5", "claude-3-5-HAIKU-latest"], ["claude-sonnet-4-5"]),
        ("claude-*-4-1", ["claude-opus-4-1"], ["claude-opus-4-5"]),
        ("CLAUDE-OPUS-*", ["claude-opus-4-1"], ["claude-sonnet-4-5"]),
    ],
)
def test_excluded_models_wildcards(pattern, excluded, kept):
    router = router_for(one_key("claude-api-key", excluded_models=f'["{pattern}"]'))
    for model in excluded:
        with pytest.raises(UnknownModel):
            router.resolve(model)
    for model in kept:
        assert router.resolve(model)


def test_an_excluded_model_is_still_served_by_another_credential():
    text = (
        "claude-api-key:\n"
        "  - api-key: k1-0123456789\n    excluded-models: ['*opus*']\n"
        "  - api-key: k2-0123456789\n"
    )
    assert sources(router_for(text).resolve("claude-opus-4-1")) == ["claude-api-key[1]"]


def test_excluding_the_upstream_name_also_excludes_its_alias():
    router = router_for(
        one_key(
            "claude-api-key",
            models="[{name: claude-opus-4-1, alias: big}]",
            excluded_models="[claude-opus-*]",
        )
    )
    with pytest.raises(UnknownModel):
        router.resolve("big")


# -- resolve: errors -----------------------------------------------------------------------


def test_unknown_model_names_the_model():
    with pytest.raises(UnknownModel) as info:
        router_for(CONFIG).resolve("no-such-model")
    assert info.value.model == "no-such-model"
    assert "'no-such-model'" in str(info.value)
    assert "/v1/models" in str(info.value)


def test_an_empty_router_knows_no_model():
    with pytest.raises(UnknownModel):
        Router(()).resolve("claude-sonnet-4-5")


# -- models() listing ------------------------------------------------------------------------


def listed(router: Router) -> list[str]:
    return [m.id for m in router.models()]


def test_listing_uses_configured_aliases_and_prefix_variants():
    ids = listed(router_for(CONFIG))
    assert ids[-4:] == ["kimi-k2", "or/kimi-k2", "z-ai/glm-4.6", "or/z-ai/glm-4.6"]


def test_listing_shows_vendor_defaults_for_keys_without_models_in_config_order():
    ids = listed(router_for(CONFIG))
    assert ids[:3] == ["gemini-2.5-pro", "gemini-2.5-flash", "gemini-2.5-flash-lite"]
    assert {"claude-sonnet-4-5", "work/claude-sonnet-4-5", "gpt-5", "gpt-5-codex"} <= set(ids)
    assert "work/gpt-5" not in ids


def test_listing_names_the_owner():
    owners = {m.id: m.owned_by for m in router_for(CONFIG).models()}
    assert owners["kimi-k2"] == "openrouter"
    assert owners["claude-sonnet-4-5"] == "claude"
    assert owners["gpt-5"] == "codex"


def test_listing_has_no_duplicates():
    text = "claude-api-key:\n  - api-key: k1-0123456789\n  - api-key: k2-0123456789\n"
    ids = listed(router_for(text))
    assert len(ids) == len(set(ids)) > 0


def test_listing_leaves_out_excluded_models():
    ids = listed(router_for(one_key("gemini-api-key", excluded_models='["*-PRO", "*lite*"]')))
    assert ids == ["gemini-2.5-flash"]


def test_listing_with_force_model_prefix_shows_only_the_prefixed_variant():
    ids = listed(router_for("force-model-prefix: true\n" + CONFIG))
    assert "or/kimi-k2" in ids and "kimi-k2" not in ids
    assert "work/claude-sonnet-4-5" in ids
    assert "claude-sonnet-4-5" in ids  # still offered by the unprefixed claude key


def test_every_listed_model_resolves():
    router = router_for(CONFIG)
    for model_id in listed(router):
        assert router.resolve(model_id)


def test_an_alias_of_an_excluded_model_is_not_listed_because_it_cannot_be_used():
    router = router_for(
        one_key(
            "claude-api-key",
            models="[{name: claude-opus-4-1, alias: big}]",
            excluded_models="[claude-opus-*]",
        )
    )
    for model_id in listed(router):
        router.resolve(model_id)
