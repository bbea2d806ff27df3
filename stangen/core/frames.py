"""Reading data frames and showing what is in them: CSV files, the numeric-column rule, group labels and their
order, row lists in messages, and the collector that gathers every problem before raising them together.

Rows in messages are counted from 1 over the data rows (a CSV's header line excluded).
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd

from .errors import DataError, Problem

SHOW_ROWS = 5


def read_csv(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    try:
        return pd.read_csv(path)
    except FileNotFoundError:
        raise DataError(Problem("data", f"data file not found: {path}")) from None
    except (OSError, ValueError, pd.errors.ParserError) as exc:
        raise DataError(Problem("data", f"cannot read {path} as CSV: {exc}")) from None


def is_numeric(series: pd.Series) -> bool:
    return pd.api.types.is_numeric_dtype(series) and not pd.api.types.is_bool_dtype(series)


def rows_text(mask: np.ndarray) -> str:
    idx = np.flatnonzero(mask) + 1
    shown = ", ".join(str(i) for i in idx[:SHOW_ROWS])
    return f"row{'s' if len(idx) > 1 else ''} {shown}" + (f" … ({len(idx)} rows)" if len(idx) > SHOW_ROWS else "")


def label_text(value) -> str:
    """How a group label or category is shown: 308, not 308.0."""
    if isinstance(value, (float, np.floating)) and float(value).is_integer():
        return str(int(value))
    return str(value)


def sort_labels(labels) -> list[str]:
    """Numbers in numeric order (2 before 10), otherwise text order."""
    labels = list(labels)
    try:
        return sorted(labels, key=float)
    except ValueError:
        return sorted(labels)


def mostly_numbers(series: pd.Series) -> bool:
    return pd.to_numeric(series, errors="coerce").notna().mean() >= 0.5


class Collector:
    def __init__(self) -> None:
        self.problems: list[Problem] = []

    def add(self, path: str, message: str) -> None:
        self.problems.append(Problem(path, message))

    def raise_if_any(self) -> None:
        if self.problems:
            raise DataError(self.problems)


def compound_keys(df: pd.DataFrame, id_columns: list[str]) -> pd.Series:
    """Group labels, a nested group's with its parents': cask 'a' of batch 'A' is 'A:a'."""
    keys = df[id_columns[0]].map(label_text)
    for column in id_columns[1:]:
        keys = keys + ":" + df[column].map(label_text)
    return keys


def sorted_compound(labels) -> list[str]:
    parts = [lab.split(":") for lab in labels]
    width = max((len(p) for p in parts), default=1)
    orders = []
    for k in range(width):
        values = sort_labels({p[k] for p in parts if len(p) > k})
        orders.append({v: i for i, v in enumerate(values)})
    return sorted(labels, key=lambda lab: tuple(orders[k][v] for k, v in enumerate(lab.split(":"))))
