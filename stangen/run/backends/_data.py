"""Stan data as the numeric arrays every backend accepts."""
from __future__ import annotations

from typing import Any, Mapping

import numpy as np

from .base import backend_error


def prepare_data(data: Mapping[str, Any]) -> dict[str, np.ndarray]:
    """Stan data as numpy arrays httpstan's array_var_context accepts (float64 or int64).

    Empty arrays become int64: Stan accepts integer values for real variables,
    so an empty array then fits `array[0] int` as well as `matrix[0, K]`.
    """
    out: dict[str, np.ndarray] = {}
    problems = []
    for name, value in dict(data).items():
        if not isinstance(name, str) or not name:
            problems.append(f"{name!r}: data names must be non-empty strings")
            continue
        try:
            arr = np.asarray(value)
        except Exception as exc:  # noqa: BLE001 - ragged lists etc.
            problems.append(f"{name}: not a rectangular array of numbers ({exc})")
            continue
        kind = arr.dtype.kind
        if kind == "b":
            arr = arr.astype(np.int64)
        elif kind in "iu":
            if arr.size and (arr.max() > 2**31 - 1 or arr.min() < -(2**31)):
                problems.append(f"{name}: integer values must fit in 32 bits (Stan ints)")
                continue
            arr = arr.astype(np.int64)
        elif kind == "f":
            arr = arr.astype(np.float64)
        else:
            problems.append(f"{name}: expected numbers, got values of type {arr.dtype}")
            continue
        if arr.size == 0:
            arr = arr.astype(np.int64)
        out[name] = np.asarray(arr, order="C")  # (ascontiguousarray makes 0-d arrays 1-d)
    if problems:
        raise backend_error(
            "The data passed to Stan are not numeric arrays:\n" + "\n".join(f"  - {p}" for p in problems),
            {"what": "prepare data"},
        )
    return out
