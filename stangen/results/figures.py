"""What every PNG figure of stangen shares: matplotlib on the Agg backend (unless pyplot was already set up,
e.g. in a notebook), the resolution, ArviZ's noise hidden, and saving — atomically, the figure closed after."""
from __future__ import annotations

import functools
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

if "matplotlib.pyplot" not in sys.modules:
    matplotlib.use("Agg")

import matplotlib.pyplot as plt  # noqa: E402

from ..core import files  # noqa: E402

if TYPE_CHECKING:
    from ..fitting import Fit

DPI = 100

__all__ = ["DPI", "plt", "quiet", "save", "title"]


def quiet(function):
    """Hide ArviZ's deprecation noise from matplotlib (it is ArviZ's to fix, not the user's)."""
    @functools.wraps(function)
    def wrapper(*args, **kwargs):
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message=".*alias_mapping to normalize_kwargs.*")
            return function(*args, **kwargs)
    return wrapper


def save(fig, path: str | Path, dpi: float | str = DPI) -> Path:
    """Write the figure as a PNG (atomically) and close it. `dpi`: "figure" keeps the figure's own."""
    try:
        return files.write_with(path, lambda tmp: fig.savefig(tmp, dpi=dpi, format="png"), mode=0o644)
    finally:
        plt.close(fig)


def title(fit: "Fit") -> str:
    return fit.spec.name or fit.description.name
