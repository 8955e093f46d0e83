"""The checks every client request gets, whether it is translated or passed on byte for byte.

A same-format request goes upstream undecoded, so only what is cheap is looked at here: the
conversation field is there, of its type and not empty, and `stream` is a boolean (the proxy
reads it to decide how to answer). Everything deeper is the decoder's business when translating
(translators/fields.py), and the upstream's when passing through.
"""

from __future__ import annotations

from typing import Any

from translators.fields import FieldError, at, get_bool, get_dict, get_strings, wrong_type
from translators.formats import Format

# Responses calls that continue a conversation the server keeps need no `input` of their own.
_SERVER_SIDE_CONVERSATION = ("previous_response_id", "conversation", "prompt")


def check_request(fmt: Format, body: dict[str, Any], *, counting: bool = False, envelope: bool = False) -> None:
    """Raises `FieldError` naming the field when `body` cannot be a request of `fmt`.

    `envelope`: a Gemini request inside Gemini CLI's Code Assist envelope (`{model, project,
    request}`)."""
    if envelope:
        if "request" not in body:
            raise FieldError("required", "request")
        request = get_dict(body, "request")
        with at("request"):
            _gemini(request, counting)
        return
    get_bool(body, "stream")
    if fmt is Format.OPENAI_CHAT or fmt is Format.ANTHROPIC:
        _nonempty(body, "messages", (list,), "a list of messages")
    elif fmt is Format.OPENAI_RESPONSES:
        get_strings(body, "include")  # the Codex backend's body adds to the client's list
        if any(body.get(key) is not None for key in _SERVER_SIDE_CONVERSATION):
            if body.get("input") is not None and not isinstance(body["input"], (str, list)):
                raise wrong_type(body["input"], "a string or a list of input items", "input")
        else:
            _nonempty(body, "input", (str, list), "a string or a list of input items")
    elif fmt is Format.GEMINI:
        _gemini(body, counting)
    elif fmt is Format.OPENAI_COMPLETIONS:
        _nonempty(body, "prompt", (str, list), "a string or a list of strings")


def _gemini(body: dict[str, Any], counting: bool) -> None:
    if counting and "contents" not in body:
        for key in ("generateContentRequest", "generate_content_request"):
            if body.get(key) is not None:
                inner = get_dict(body, key)
                with at(key):
                    _gemini(inner, False)
                return
    _nonempty(body, "contents", (list, dict), "a list of contents")


def _nonempty(body: dict[str, Any], key: str, types: tuple[type, ...], expected: str) -> None:
    value = body.get(key)
    if value is None:
        raise FieldError("required", key)
    if not isinstance(value, types):
        raise wrong_type(value, expected, key)
    if not value:
        raise FieldError("must not be empty", key)
