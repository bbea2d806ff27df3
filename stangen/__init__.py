"""stangen: declarative multilevel model specs → readable Stan programs → fits.

The package is in layers, each importing only the ones below it (docs/architecture.md; import-linter
checks it): core → spec → compiler → run → results → fitting → workflows → cli.
    spec (YAML/Python) → spec.Spec → compiler.model.describe() → ModelDescription
    → compiler.codegen.render() → Stan program text;  compiler.encoding.encode() → compiler.standata → Stan data
    → run.backends → fitting.Fit → results
"""
import warnings

# ArviZ 0.23 announces its coming refactor once a day on import: nothing a stangen user can act on
warnings.filterwarnings("ignore", message=r"\s*ArviZ is undergoing a major refactor", category=FutureWarning)

# (the filter must come before anything imports ArviZ)
from .compiler.program import StanProgram, build  # noqa: E402
from .core.errors import BackendError, DataError, Problem, SpecError, StangenError  # noqa: E402
from .core.version import VERSION  # noqa: E402
from .spec import Level, Spec  # noqa: E402

__version__ = VERSION
__all__ = ["BackendError", "DataError", "Fit", "Level", "Problem", "Spec", "SpecError", "StanProgram", "StangenError",
           "__version__", "build", "fit"]


def __getattr__(name: str):
    if name in ("fit", "Fit"):
        # start-up time: fitting pulls in ArviZ, matplotlib and the backends, loaded only when asked for, so
        # `import stangen`, validate and render stay quick
        from . import fitting
        return getattr(fitting, name)
    raise AttributeError(f"module 'stangen' has no attribute {name!r}")
