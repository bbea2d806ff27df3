"""stangen: declarative multilevel model specs → readable Stan programs → fits.

The pipeline, one module per stage:
    spec (YAML/Python) → spec.Spec → model.describe() → ModelDescription
    → codegen.render() → Stan program text;  data.encode() → data.write_stan_data() → Stan data + label maps
    → backends → fit → results
"""
import warnings

# ArviZ 0.23 announces its coming refactor once a day on import: nothing a stangen user can act on
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

# (the filter must come before anything imports ArviZ)
from .errors import BackendError, DataError, Problem, SpecError, StangenError  # noqa: E402
from .program import StanProgram, build  # noqa: E402
from .spec import Level, Spec  # noqa: E402

__version__ = "0.1.0"
__all__ = ["BackendError", "DataError", "Fit", "Level", "Problem", "Spec", "SpecError", "StanProgram", "StangenError",
           "__version__", "build", "fit"]


def __getattr__(name: str):
    # fitting pulls in ArviZ and the backends: loaded only when asked for, so validate/render stay quick
    if name in ("fit", "Fit"):
        from . import fitting
        return getattr(fitting, name)
    raise AttributeError(f"module 'stangen' has no attribute {name!r}")
