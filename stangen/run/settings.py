"""The sampler's settings as a run uses them: the spec's `sampler:` block, the caller's overrides and the
program's own defaults, in that order of strength."""
from __future__ import annotations

from typing import Any

from ..core.errors import Problem, SpecError
from ..spec import Spec
from ..spec.validate import check_sampler_settings
from .backends import SamplerSettings

SETTING_NAMES = ("chains", "parallel_chains", "warmup", "draws", "seed", "adapt_delta", "max_treedepth", "init",
                 "quiet", "threads_per_chain")


def sampler_settings(spec: Spec, defaults: dict[str, Any] | None = None, **overrides: Any) -> SamplerSettings:
    """The spec's `sampler:` block with explicit overrides (None means: not overridden); `defaults` replace
    SamplerSettings' own defaults where neither sets a value."""
    unknown = set(overrides) - set(SETTING_NAMES)
    if unknown:
        raise SpecError([Problem(f"sampler.{k}", f"unknown sampler setting (allowed: {', '.join(SETTING_NAMES)})")
                         for k in sorted(unknown)])
    given = {k: v for k, v in overrides.items() if v is not None}
    checked, problems = check_sampler_settings({k: v for k, v in given.items() if k != "quiet"})
    if problems:  # the command line's and fit()'s numbers are checked as the spec's are
        raise SpecError(problems)
    values = dict(defaults or {}) | dict(spec.sampler) | given | checked
    return SamplerSettings(**values)
