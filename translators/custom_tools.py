"""Custom (freeform) tools, such as Codex's `apply_patch`, in formats that only have functions.

The OpenAI APIs have tools that take one free string (optionally constrained by a grammar): the
Responses API's `{"type": "custom"}` tools and `custom_tool_call` items, Chat Completions'
`{"type": "custom", "custom": {...}}` tools and calls. Canonically such a tool is a function of
one string argument, `{"input": <string>}`: Anthropic and Gemini see exactly that, with the
grammar told in the description, and their calls are turned back into custom calls for the
client, which knows which of its tools are custom.

In canonical streams the call's argument fragments are JSON, as for any function; the OpenAI
encoders read the string back out as it arrives (`InputReader`), and the OpenAI decoders write
its fragments as JSON (`OPEN`, `escape`, `CLOSE`).
"""

from __future__ import annotations

import copy
import json
import re
from typing import Any

from translators.canonical import Request, Response, Tool, ToolCall
from translators.fields import FieldError, get_dict_or_none, get_str
from translators.jsonutil import compact

PARAMETERS: dict[str, Any] = {
    "type": "object",
    "properties": {"input": {"type": "string", "description": "The tool's whole input, as free text."}},
    "required": ["input"],
}

OPEN = '{"input":"'
CLOSE = '"}'

_PREFIX = re.compile(r'\s*\{\s*"input"\s*:\s*"')
# What can still grow into _PREFIX.
_PREFIX_START = re.compile(r'\s*(?:\{\s*(?:"(?:i(?:n(?:p(?:u(?:t(?:"\s*(?::\s*)?)?)?)?)?)?)?)?)?')
# The longest run of whole characters and whole escapes of a JSON string.
_STRING_RUN = re.compile(r'(?:[^"\\]|\\(?:["\\/bfnrt]|u[0-9a-fA-F]{4}))*')
_HIGH_SURROGATE_END = re.compile(r"\\u[dD][89abAB][0-9a-fA-F]{2}$")


def tool(name: str, description: str, fmt: dict[str, Any] | None) -> Tool:
    # A copy each: encoders put the schema into the body they build.
    return Tool(name=name, description=description, parameters=copy.deepcopy(PARAMETERS), custom=True, format=fmt)


def decode_format(owner: dict[str, Any]) -> dict[str, Any] | None:
    """A client's custom tool `format` in the Responses API's flat form: `{"type": "text"}` or
    `{"type": "grammar", "syntax", "definition"}`, Chat's nested `grammar` object flattened.

    A field of the wrong type is a `FieldError` naming it: the format reaches an OpenAI
    upstream as it is, and Anthropic and Gemini read its grammar."""
    fmt = get_dict_or_none(owner, "format")
    if fmt is None:
        return None
    try:
        if get_str(fmt, "type") != "grammar":
            return fmt
        if (grammar := get_dict_or_none(fmt, "grammar")) is None:
            # Already flat (the Responses API's form): checked, and kept as the client wrote it.
            get_str(fmt, "syntax")
            get_str(fmt, "definition")
            return fmt
        try:
            syntax, definition = get_str(grammar, "syntax"), get_str(grammar, "definition")
            return {"type": "grammar", "syntax": syntax, "definition": definition}
        except FieldError as e:
            raise e.within("grammar")
    except FieldError as e:
        raise e.within("format")


def call(call_id: str, name: str, text: str) -> ToolCall:
    return ToolCall(id=call_id, name=name, arguments={"input": text}, custom=True)


def escape(text: str) -> str:
    """`text` as it reads inside a JSON string; fragments escape independently."""
    return compact(text)[1:-1]


def function_description(tool: Tool) -> str:
    """The description of a custom tool offered as a function: its grammar has to be told."""
    fmt = tool.format or {}
    if fmt.get("type") != "grammar" or not isinstance(fmt.get("definition"), str):
        return tool.description
    syntax = fmt.get("syntax") or "lark"
    note = f"The `input` string must match this {syntax} grammar:\n{fmt['definition']}"
    return f"{tool.description}\n\n{note}" if tool.description else note


def names(request: Request | None) -> frozenset[str]:
    if request is None:
        return frozenset()
    return frozenset(t.name for t in request.tools if t.custom)


def mark(response: Response, request: Request | None) -> Response:
    """Calls of the client's custom tools marked as such (an upstream without custom tools
    answers them as function calls)."""
    custom = names(request)
    if custom:
        for part in response.parts:
            if isinstance(part, ToolCall) and part.name in custom:
                part.custom = True
    return response


def input_of(arguments: dict[str, Any]) -> str:
    """A custom call's input from its canonical arguments, cut-off ones included."""
    text = arguments.get("input")
    if isinstance(text, str):
        return text
    raw = arguments.get("_raw")
    if len(arguments) == 1 and isinstance(raw, str):
        reader = InputReader()
        return reader.feed(raw) + reader.finish()
    return compact(arguments) if arguments else ""  # not what was asked for; nothing lost


class InputReader:
    """The JSON fragments of `{"input": "<text>"}` in, the text out as soon as it arrives.

    Arguments of another shape are held and read whole by `finish`.
    """

    __slots__ = ("_fragments", "_pending", "_state")

    def __init__(self) -> None:
        self._fragments: list[str] = []
        self._pending = ""
        self._state = "before"  # before | inside | after | other

    def feed(self, fragment: str) -> str:
        self._fragments.append(fragment)
        if self._state in ("after", "other"):
            return ""
        buffer = self._pending + fragment
        if self._state == "before":
            if (m := _PREFIX.match(buffer)) is None:
                if _PREFIX_START.fullmatch(buffer) is None:
                    self._state = "other"
                self._pending = "" if self._state == "other" else buffer
                return ""
            self._state, buffer = "inside", buffer[m.end() :]
        end = _STRING_RUN.match(buffer).end()  # type: ignore[union-attr]
        run = buffer[:end]
        if end < len(buffer) and buffer[end] == '"':
            self._state, self._pending = "after", ""
        else:
            # Keep a half escape, and a surrogate escape whose pair may follow, for later.
            if (high := _HIGH_SURROGATE_END.search(run)) is not None:
                end = high.start()
                run = buffer[:end]
            self._pending = buffer[end:]
        return json.loads(f'"{run}"') if run else ""

    def finish(self) -> str:
        """What is left: for other shapes the whole input, for a cut-off string its readable end."""
        if self._state == "other":
            raw = "".join(self._fragments)
            try:
                value = json.loads(raw)
            except ValueError:
                return raw
            return input_of(value) if isinstance(value, dict) else raw
        if self._state == "inside" and self._pending:
            run = _STRING_RUN.match(self._pending).group()  # type: ignore[union-attr]
            self._pending = ""
            try:
                return json.loads(f'"{run}"')
            except ValueError:
                return ""
        return ""
