"""config.example.yaml is valid and documents every key the proxy reads."""

from pathlib import Path

from routing.config import Config, load_config

EXAMPLE = Path(__file__).resolve().parent.parent / "config.example.yaml"


def _keys(model: type) -> set[str]:
    keys = set()
    for name, field in model.model_fields.items():
        keys.add(field.alias or name)
        annotation = field.annotation
        inner = getattr(annotation, "__args__", (annotation,))
        for t in inner:
            if isinstance(t, type) and hasattr(t, "model_fields"):
                keys |= _keys(t)
    return keys


def test_example_config_loads():
    config = load_config(EXAMPLE)
    assert config.port == 8317


def test_example_config_mentions_every_key():
    text = EXAMPLE.read_text()
    missing = sorted(k for k in _keys(Config) if f"{k}:" not in text and f"{k} " not in text)
    assert missing == []
