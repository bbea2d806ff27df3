"""User text (columns, levels, terms) made safe for the Stan program: identifiers and comments."""
from __future__ import annotations

import hashlib
import re
import unicodedata

_INVALID = re.compile(r"[^A-Za-z0-9_]+")
# a Stan name built from a user's name keeps this many characters of it (the registry keeps names unique)
MAX_IDENTIFIER = 40
# a user's text in a comment is shortened beyond this many characters (with a hash, so it stays distinct)
MAX_COMMENT_TEXT = 80
_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
# control and format characters (a NUL, a bidirectional override), line and paragraph separators, and
# code points that are not characters: anything that could end a comment line or hide what follows
_UNPRINTABLE = ("Cc", "Cf", "Cs", "Co", "Cn", "Zl", "Zp")


def sanitize(text: str) -> str:
    """'iq_verb:sex' → 'iq_verb_x_sex'; 'Days.1' → 'Days_1'; never empty, never ends in '__'."""
    text = text.replace(":", "_x_")
    text = _INVALID.sub("_", text)
    text = re.sub(r"_+", "_", text).strip("_")
    if not text:
        text = "v"
    if text[0].isdigit():
        text = f"v{text}"
    return text[:MAX_IDENTIFIER].rstrip("_")


def comment_text(text: str) -> str:
    """Any user text as it may appear inside a Stan `//` comment: on one line, with no comment delimiters.

    Line breaks and control characters are written as escapes (\\n, \\x00, \\u2028), a backslash as \\\\, and
    a '/' or '*' that would form '//', '/*' or '*/' with the character before it gets a backslash: so the
    text can neither end the comment nor open or close one, and two different texts stay different (the
    templates compare names). Very long text is shortened, with a hash of the whole."""
    out: list[str] = []
    for ch in str(text):
        if ch == "\\":
            piece = "\\\\"
        elif unicodedata.category(ch) in _UNPRINTABLE:
            piece = _escape(ch)
        elif (ch == "/" and out and out[-1][-1] in "/*") or (ch == "*" and out and out[-1][-1] == "/"):
            piece = "\\" + ch
        else:
            piece = ch
        out.append(piece)
    safe = "".join(out)
    if len(safe) > MAX_COMMENT_TEXT:
        digest = hashlib.sha1(safe.encode("utf-8", "surrogatepass")).hexdigest()[:8]
        head = safe[:MAX_COMMENT_TEXT - 12]
        # never cut an escape in half (a trailing backslash would escape the ellipsis)
        head = head[:len(head) - (len(head) - len(head.rstrip("\\"))) % 2]
        safe = f"{head}…[{digest}]"
    return safe


def _escape(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def printable(text: str) -> str:
    """User text for a terminal line (an error message): unprintable characters as escapes, the rest as is."""
    return "".join(_escape(ch) if unicodedata.category(ch) in _UNPRINTABLE else ch for ch in str(text))


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
