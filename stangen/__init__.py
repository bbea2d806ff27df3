"""stangen: declarative multilevel model specs → readable Stan programs → fits.

The pipeline, one module per stage:
    spec (YAML/Python) → spec.Spec → model.describe() → ModelDescription
    → codegen.render() → Stan program text;  data.prepare() → Stan data + label maps
    → backends → fit → results
"""
from .errors import BackendError, DataError, Problem, SpecError, StangenError
from .program import StanProgram, build
from .spec import Level, Spec

__version__ = "0.1.0"
__all__ = ["BackendError", "DataError", "Fit", "Level", "Problem", "Spec", "SpecError", "StanProgram", "StangenError",
           "__version__", "build", "fit"]


def __getattr__(name: str):
    # fitting pulls in ArviZ and the backends: loaded only when asked for, so validate/render stay quick
    if name in ("fit", "Fit"):
        from . import fitting
        return getattr(fitting, name)
    raise AttributeError(f"module 'stangen' has no attribute {name!r}")
