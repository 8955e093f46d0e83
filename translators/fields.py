"""Typed reads of a client's request body: a field of the wrong JSON type is a 400 that names it.

Request decoders read the client's JSON through these helpers instead of trusting its shape, so
that `{"messages": [{"content": 5}]}` is refused as
`messages[0].content: expected a string or a list of content parts, got a number` rather than
ending in an AttributeError (a 500) or in a part silently left out. Absent and `null` read as
"not given" (None, or an empty list / object).

Where a field sits is added on the way out of the decoder, so that the common case (nothing
wrong) builds no path at all: per element of a list, `except FieldError as e: raise
e.within(key, index)` (a try block costs nothing until something is raised); once per request,
the more readable `with at(key):` (a with block costs about a microsecond and a half, too much
per message).
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from itertools import repeat
from typing import Any


class FieldError(ValueError):
    """A request field that cannot be what it is; `path` leads to it from the body's top."""

    def __init__(self, problem: str, *path: str | int) -> None:
        super().__init__(problem)
        self.problem = problem
        self.path: list[str | int] = list(path)

    def within(self, *path: str | int) -> FieldError:
        """This error, found inside the field at `path`."""
        self.path[:0] = path
        return self

    def __str__(self) -> str:
        where = render_path(self.path)
        return f"{where}: {self.problem}" if where else self.problem


def render_path(path: list[str | int] | tuple[str | int, ...]) -> str:
    out = ""
    for key in path:
        if isinstance(key, int):
            out += f"[{key}]"
        else:
            out += f".{key}" if out else key
    return out


class at:  # noqa: N801 - reads as a phrase: `with at("messages", i):`
    """Prefix the path of a `FieldError` raised inside the block with `path`."""

    __slots__ = ("path",)

    def __init__(self, *path: str | int) -> None:
        self.path = path

    def __enter__(self) -> None:
        return None

    def __exit__(self, kind, error, traceback) -> bool:
        if isinstance(error, FieldError):
            error.within(*self.path)
        return False


_TYPE_NAMES = {
    type(None): "null",
    bool: "a boolean",
    int: "a number",
    float: "a number",
    str: "a string",
    list: "a list",
    dict: "an object",
}


def json_type(value: Any) -> str:
    return _TYPE_NAMES.get(type(value), type(value).__name__)


def shown(value: Any, limit: int = 40) -> str:
    """`value` for an error message, cut short: a client's input is never echoed whole."""
    text = repr(value)
    return text if len(text) <= limit else text[: limit - 1] + "…"


def wrong_type(value: Any, expected: str, *path: str | int) -> FieldError:
    return FieldError(f"expected {expected}, got {json_type(value)}", *path)


def expect_dict(value: Any, expected: str = "an object") -> dict[str, Any]:
    if isinstance(value, dict):
        return value
    raise wrong_type(value, expected)


def get_str(obj: dict[str, Any], key: str) -> str | None:
    value = obj.get(key)
    if value is None or isinstance(value, str):
        return value
    raise wrong_type(value, "a string", key)


def get_bool(obj: dict[str, Any], key: str) -> bool | None:
    value = obj.get(key)
    if value is None or isinstance(value, bool):
        return value
    raise wrong_type(value, "a boolean", key)


def get_int(obj: dict[str, Any], key: str) -> int | None:
    """An integer; a float with no fractional part (`100.0`) counts as one."""
    value = obj.get(key)
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool):
        return value
    if isinstance(value, float) and value.is_integer():
        return int(value)
    raise wrong_type(value, "an integer", key)


def get_number(obj: dict[str, Any], key: str) -> float | int | None:
    value = obj.get(key)
    if value is None or (isinstance(value, int) and not isinstance(value, bool)):
        return value
    if isinstance(value, float):
        if math.isfinite(value):  # Python's parser takes NaN and Infinity, which JSON has not
            return value
        raise FieldError(f"expected a finite number, got {value}", key)
    raise wrong_type(value, "a number", key)


def get_list(obj: dict[str, Any], key: str) -> list[Any]:
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, list):
        return value
    raise wrong_type(value, "a list", key)


def get_dict(obj: dict[str, Any], key: str) -> dict[str, Any]:
    value = obj.get(key)
    if value is None:
        return {}
    if isinstance(value, dict):
        return value
    raise wrong_type(value, "an object", key)


def get_dict_or_none(obj: dict[str, Any], key: str) -> dict[str, Any] | None:
    value = obj.get(key)
    if value is None or isinstance(value, dict):
        return value
    raise wrong_type(value, "an object", key)


def get_stop(obj: dict[str, Any], key: str) -> list[str]:
    """Stop sequences: one string or a list of strings."""
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, str):
        return [value]
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise wrong_type(value, "a string or a list of strings", key)


def get_strings(obj: dict[str, Any], key: str) -> list[str]:
    value = obj.get(key)
    if value is None:
        return []
    if isinstance(value, list) and all(isinstance(s, str) for s in value):
        return value
    raise wrong_type(value, "a list of strings", key)


def dicts(items: list[Any], key: str) -> Iterator[tuple[int, dict[str, Any]]]:
    """The objects of the list field `key` with their positions; anything else is refused."""
    if not all(map(isinstance, items, repeat(dict, len(items)))):  # one pass in C
        index, item = next((i, item) for i, item in enumerate(items) if not isinstance(item, dict))
        raise wrong_type(item, "an object", key, index)
    return enumerate(items)
