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

from .core.version import VERSION  # noqa: E402  (light: no third-party imports)

__version__ = VERSION
__all__ = ["BackendError", "DataError", "Fit", "Level", "ParameterModel", "Problem", "Spec", "SpecError", "StanProgram", "StangenError",
           "__version__", "build", "fit"]

# Every name is loaded when first asked for (PEP 562): `import stangen` itself loads nothing heavy, so the
# command line can catch a Ctrl-C while pandas, ArviZ or a backend load, and `stangen validate` stays quick.
_WHERE = {"StanProgram": "compiler.program", "build": "compiler.program",
          "BackendError": "core.errors", "DataError": "core.errors", "Problem": "core.errors",
          "SpecError": "core.errors", "StangenError": "core.errors",
          "Level": "spec", "ParameterModel": "spec", "Spec": "spec", "fit": "fitting", "Fit": "fitting"}


def __getattr__(name: str):
    if name in _WHERE:
        import importlib
        value = getattr(importlib.import_module(f".{_WHERE[name]}", __name__), name)
        globals()[name] = value
        return value
    raise AttributeError(f"module 'stangen' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
