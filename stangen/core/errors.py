"""Errors stangen raises for user mistakes and backend failures.

Every user-facing problem is a `Problem`: where it is (a spec path such as
``levels.county.within``, or a data column/row) and what is wrong and allowed.
Errors carry *all* problems found, so users fix them in one round.
"""
from __future__ import annotations

import difflib
from dataclasses import dataclass, field

from .names import printable

MAX_LISTED = 20


def suggest(word: str, options) -> str:
    """"; did you mean 'x'?" when one of `options` is close to `word`, else ""."""
    close = difflib.get_close_matches(str(word), list(options), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


@dataclass(frozen=True)
class Problem:
    path: str
    message: str
    line: int | None = None

    def __str__(self) -> str:
        where = self.path or "(spec)"
        if self.line is not None:
            where = f"{where} (line {self.line})"
        # names and labels in a problem are the user's: a newline or a terminal escape in one stays visible
        return printable(f"{where}: {self.message}")


class StangenError(Exception):
    """Base class of every error stangen raises on purpose."""

    exit_code = 3


class UserError(StangenError):
    """A mistake in the spec or the data: exit code 1, never a traceback."""

    exit_code = 1
    kind = "problem"

    def __init__(self, problems: list[Problem] | Problem, source: str | None = None, *, kind: str | None = None):
        self.problems = [problems] if isinstance(problems, Problem) else list(problems)
        self.source = source
        if kind is not None:
            self.kind = kind
        super().__init__(self.render())

    def render(self) -> str:
        count = len(self.problems)
        head = f"{self.source}: " if self.source else ""
        head += f"{count} {self.kind}{'s' if count != 1 else ''} found"
        lines = [f"  - {p}" for p in self.problems[:MAX_LISTED]]
        if count > MAX_LISTED:
            lines.append(f"  … and {count - MAX_LISTED} more")
        return "\n".join([head + ":"] + lines)


class SpecError(UserError):
    """The spec is invalid (unknown key, wrong type, inconsistent structure). `partial`: what validation could
    read of it (stangen.spec.validate's normalized form, None where a value was unreadable), so the data can
    still be checked against the parts that are right; `base_dir`: the spec file's folder."""

    kind = "spec problem"

    def __init__(self, problems, source=None, *, kind=None, partial: dict | None = None, base_dir=None):
        super().__init__(problems, source, kind=kind)
        self.partial = partial
        self.base_dir = base_dir


class DataError(UserError):
    """The data do not fit the spec (missing column, bad values, bad grouping)."""

    kind = "data problem"


@dataclass
class RunRecord:
    """What a backend ran, so a failure message can show it."""

    backend: str
    program_path: str | None = None
    details: dict = field(default_factory=dict)


class BackendError(StangenError):
    """Compiling or sampling failed. Exit code 2 (3 for a stangen bug)."""

    exit_code = 2

    def __init__(self, message: str, record: RunRecord | dict | None = None, *, internal: bool = False):
        super().__init__(message)
        self.record = record
        if internal:
            self.exit_code = 3


def require_count(path: str, value, what: str, least: int = 1, error: type[UserError] = UserError) -> None:
    """Raise `error` at `path` unless `value` is a whole number (not a bool) of at least `least`: a count given
    to the Python API (the command line checks its counts as it parses them)."""
    if isinstance(value, bool) or not isinstance(value, int) or value < least:
        raise error(Problem(path, f"{what} must be a whole number of at least {least}, got {value!r}"))

