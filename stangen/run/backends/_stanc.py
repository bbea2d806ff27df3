"""Stan's compiler front end before every build, and its complaints as messages a user can act on (shared by
the backends)."""
from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path

from .base import backend_error

_LOCATION = re.compile(r"line (\d+), column (\d+)")
_CONTEXT_RULE = re.compile(r"^\s*-{10,}\s*$", re.MULTILINE)


def stanc_location(message: str) -> tuple[int, int] | None:
    """(line, column) of the first location stanc reports, 1-based line, 0-based column."""
    m = _LOCATION.search(message)
    return (int(m.group(1)), int(m.group(2))) if m else None


def program_context(program: str, line: int, column: int | None = None, radius: int = 2) -> str:
    """The lines around `line` (1-based), numbered, the failing one marked."""
    lines = program.splitlines()
    if not 1 <= line <= max(len(lines), 1):
        return ""
    first, last = max(1, line - radius), min(len(lines), line + radius)
    width = len(str(last))
    out = []
    for n in range(first, last + 1):
        mark = ">" if n == line else " "
        out.append(f"  {mark} {n:>{width}} | {lines[n - 1]}")
        if n == line and column is not None and 0 <= column <= len(lines[n - 1]):
            out.append(f"    {' ' * width} | {' ' * column}^")
    return "\n".join(out)


def stanc_error_message(stanc_output: str, program: str, program_path: str) -> str:
    """The BackendError message for a program stanc rejected (always a stangen bug)."""
    stanc_output = stanc_output.strip()
    parts = [
        "stanc (the Stan compiler) rejected the Stan program stangen generated. "
        "This is a bug in stangen, not in your spec or data; please report it "
        "together with the program file named below.",
        "",
        stanc_output,
    ]
    loc = stanc_location(stanc_output)
    if loc and not _CONTEXT_RULE.search(stanc_output):  # stanc showed no context: add ours
        ctx = program_context(program, *loc)
        if ctx:
            parts += ["", f"Line {loc[0]} of the program:", ctx]
    parts += ["", f"The program was written to: {program_path}"]
    return "\n".join(parts)


def tail(text: str, lines: int = 25) -> str:
    return "\n".join(text.strip().splitlines()[-lines:])


def stanc_info(stanc: Path, program: str, program_path: Path, backend: str) -> dict:
    """Check the program with stanc (seconds, where the C++ build takes a minute) and return its --info JSON.
    A program stanc rejects is a stangen bug: the error shows stanc's message and the failing lines."""
    cmd = [str(stanc), "--info", str(program_path)]
    try:
        done = subprocess.run(cmd, capture_output=True, timeout=300)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise backend_error(
            f"Could not run stanc (the Stan compiler) at {stanc}: {exc}",
            {"what": " ".join(cmd), "backend": backend, "program_path": str(program_path), "stderr_tail": str(exc)},
        ) from exc
    if done.returncode != 0:
        stderr = done.stderr.decode("utf-8", "replace") or done.stdout.decode("utf-8", "replace")
        loc = stanc_location(stderr)
        raise backend_error(
            stanc_error_message(stderr, program, str(program_path)),
            {"what": " ".join(cmd), "backend": backend, "program_path": str(program_path),
             "stderr_tail": tail(stderr), "line": loc[0] if loc else None,
             "context": program_context(program, *loc) if loc else ""},
            internal=True,
        )
    try:
        return json.loads(done.stdout)
    except ValueError:
        return {}
