"""Turn names from the spec (columns, levels, terms) into valid, unique Stan identifiers."""
from __future__ import annotations

import re

_INVALID = re.compile(r"[^A-Za-z0-9_]+")


def sanitize(text: str) -> str:
    """'iq_verb:sex' → 'iq_verb_x_sex'; 'Days.1' → 'Days_1'; never empty, never ends in '__'."""
    text = text.replace(":", "_x_")
    text = _INVALID.sub("_", text)
    text = re.sub(r"_+", "_", text).strip("_")
    if not text:
        text = "v"
    if text[0].isdigit():
        text = f"v{text}"
    return text


class NameRegistry:
    """Hands out Stan names once, adding a numeric suffix when two spec names sanitize alike."""

    def __init__(self) -> None:
        self._used: set[str] = set()

    def claim(self, name: str) -> str:
        candidate, n = name, 2
        while candidate in self._used:
            candidate, n = f"{name}_{n}", n + 1
        self._used.add(candidate)
        return candidate
