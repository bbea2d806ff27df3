"""Stage 1: the spec — load (YAML or Python), validate, normalize."""
from .priors import Prior, parse_prior
from .spec import Level, ParameterModel, Spec

__all__ = ["Level", "ParameterModel", "Prior", "Spec", "parse_prior"]
