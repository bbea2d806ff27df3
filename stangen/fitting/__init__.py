"""The user's fit: `fit()` samples a spec's program into a `Fit` (fit.py); a Fit's run directory (rundir.py)."""
from .fit import Fit, fit, program_defaults

__all__ = ["Fit", "fit", "program_defaults"]
