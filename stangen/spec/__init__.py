"""Stage 1: the spec — load (YAML or Python), validate, normalize."""
from .priors import Prior, parse_prior
from .spec import Level, Spec

__all__ = ["Level", "Prior", "Spec", "parse_prior"]
