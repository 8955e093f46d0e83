"""One table between reasoning effort levels and thinking budgets, used by every codec.

| effort  | budget (tokens) | Gemini 3 thinkingLevel |
|---------|-----------------|------------------------|
| none    | 0 (off)         | MINIMAL                |
| minimal | 512             | MINIMAL                |
| low     | 1024            | LOW                    |
| medium  | 8192            | MEDIUM                 |
| high    | 24576           | HIGH                   |
| xhigh   | 32768           | HIGH                   |
| max     | 128000          | HIGH                   |
| auto    | -1 (dynamic)    | (omitted)              |

Budgets back to efforts use the ranges between those points (CLIProxyAPI's table): 1-512
minimal, 513-1024 low, 1025-8192 medium, 8193-24576 high, above that xhigh. A model name may
carry the request inline: `gemini-2.5-pro(high)` or `claude-sonnet-4-5(16384)`.
"""

from __future__ import annotations

import re

from translators.canonical import Reasoning

EFFORT_BUDGETS = {
    "none": 0,
    "minimal": 512,
    "low": 1024,
    "medium": 8192,
    "high": 24576,
    "xhigh": 32768,
    "max": 128000,
    "auto": -1,
}

GEMINI_LEVELS = {
    "none": "MINIMAL",
    "minimal": "MINIMAL",
    "low": "LOW",
    "medium": "MEDIUM",
    "high": "HIGH",
    "xhigh": "HIGH",
    "max": "HIGH",
}

_SUFFIX = re.compile(r"^(?P<model>.+)\((?P<value>[A-Za-z]+|-?\d+)\)$")


def effort_to_budget(effort: str) -> int:
    return EFFORT_BUDGETS.get(effort.lower(), EFFORT_BUDGETS["medium"])


def budget_to_effort(budget: int) -> str:
    if budget < 0:
        return "auto"
    if budget == 0:
        return "none"
    for effort in ("minimal", "low", "medium", "high"):
        if budget <= EFFORT_BUDGETS[effort]:
            return effort
    return "xhigh"


def budget_of(reasoning: Reasoning) -> int | None:
    if reasoning.budget is not None:
        return reasoning.budget
    if reasoning.effort is not None:
        return effort_to_budget(reasoning.effort)
    return None


def effort_of(reasoning: Reasoning) -> str | None:
    if reasoning.effort is not None:
        return reasoning.effort
    if reasoning.budget is not None:
        return budget_to_effort(reasoning.budget)
    return None


def split_suffix(model: str) -> tuple[str, Reasoning | None]:
    """`gemini-2.5-pro(high)` -> ("gemini-2.5-pro", Reasoning(effort="high"))."""
    m = _SUFFIX.match(model)
    if not m:
        return model, None
    value = m.group("value")
    if value.lstrip("-").isdigit():
        return m.group("model"), Reasoning(budget=int(value))
    if value.lower() in EFFORT_BUDGETS:
        return m.group("model"), Reasoning(effort=value.lower())
    return model, None
