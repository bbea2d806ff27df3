"""stangen: declarative multilevel model specs → readable Stan programs → fits.

The pipeline, one module per stage:
    spec (YAML/Python) → spec.Spec → model.describe() → ModelDescription
    → codegen.render() → Stan program text;  data.prepare() → Stan data + label maps
    → backends → fit → results
"""
from .errors import BackendError, DataError, Problem, SpecError, StangenError
from .spec import Level, Spec

__version__ = "0.1.0"
__all__ = ["BackendError", "DataError", "Level", "Problem", "Spec", "SpecError", "StangenError", "__version__"]
