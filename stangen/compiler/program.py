"""The compile step users call: Spec (+ data) → StanProgram (program text, Stan data, names to map results back)."""
from __future__ import annotations

import html

import dataclasses
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from ..core.errors import DataError, Problem, SpecError
from ..core.frames import read_csv
from ..spec import Spec
from ..spec.spec import resolve_data_path
from ..spec.validate import MISSING_POLICIES, used_columns
from . import codegen
from .encoding import categorical_columns, column_problems, encode
from .model import ModelDescription, describe
from .parameterization import Choice, decide, describe_options, sub_model_centering
from .standata import PreparedData, write_stan_data
from .start import StartingPoint, starting_point


@dataclass(frozen=True)
class StanProgram:
    spec: Spec
    description: ModelDescription
    code: str
    data: PreparedData | None  # None when rendered without data
    # each level's parameterization and why (stangen.compiler.parameterization.Choice), in level order
    parameterization: tuple = ()
    # where the sampler starts the population-level parameters (stangen.compiler.start); None: Stan's start
    start: StartingPoint | None = None

    @property
    def stan_data(self) -> dict:
        if self.data is None:
            raise ValueError("this program was rendered without data")
        return self.data.stan_data

    def __repr__(self) -> str:
        rows = f", {self.data.n} rows" if self.data is not None else ", no data"
        return f"<stangen StanProgram: {self.spec.describe()}{rows}; {len(self.code.splitlines())} lines of Stan>"

    def _repr_html_(self) -> str:
        """In a notebook: the model in one line, each level's parameterization, and the program (folded)."""
        sampled = "".join(f"<li>{html.escape(c.level)}: {html.escape(c.label)}</li>" for c in self.parameterization)
        return (f"<div><p><b>{html.escape(self.spec.describe())}</b></p>"
                + (f"<ul>{sampled}</ul>" if sampled else "")
                + f"<details><summary>Stan program ({len(self.code.splitlines())} lines)</summary>"
                f'<pre style="font-size:90%">{html.escape(self.code)}</pre></details></div>')


def load_spec(spec: Spec | str | Path, data: pd.DataFrame | str | Path | None = None,
              missing: str | None = None) -> Spec:
    """The spec, read from YAML unless it is one already. A spec file with problems is also checked against
    the data (`data`, else its own `data:`) as far as its readable parts allow, and every problem is
    reported in one error: a misspelt family does not hide a misspelt outcome column."""
    if isinstance(spec, Spec):
        return spec
    try:
        return Spec.from_yaml(spec, data=data)
    except SpecError as err:
        found = _data_problems(err, data, missing)
        if not found:
            raise
        raise SpecError(err.problems + found, err.source, kind="problem") from None


def _data_problems(err: SpecError, data, missing: str | None) -> list[Problem]:
    """What the data tell about the readable parts of a spec that has problems."""
    partial = err.partial
    if not partial:
        return []
    try:
        if isinstance(data, pd.DataFrame):
            frame = data
        elif data is not None:
            frame = read_csv(data)
        elif partial.get("data"):
            frame = read_csv(resolve_data_path(partial["data"], err.base_dir))
        else:
            return []
    except DataError as data_err:
        return data_err.problems
    return column_problems(used_columns(partial), frame, categorical=set(partial.get("categorical") or ()),
                           missing=missing or partial.get("missing"))


def load_data(spec: Spec, data: pd.DataFrame | str | Path | None) -> pd.DataFrame | None:
    """The data given, else the spec's `data:` file, else None."""
    if isinstance(data, pd.DataFrame):
        return data
    if data is not None:
        return read_csv(data)
    if spec.data_path is not None:
        return read_csv(spec.data_path)
    return None


def chain_threads(spec: Spec, given: int | None = None) -> int:
    """Threads within each chain: the value given (a CLI flag, a fit() argument), else the spec's
    `sampler: threads_per_chain`, else 1."""
    value = given if given is not None else spec.sampler.get("threads_per_chain", 1)
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise SpecError(Problem("sampler.threads_per_chain", f"must be a positive integer, got {value!r}"))
    return value


def build(spec: Spec | str | Path, data: pd.DataFrame | str | Path | None = None, *,
          require_data: bool = False, prior_only: bool = False,
          generated: str | Iterable[str] | None = (), missing: str | None = None,
          threads_per_chain: int | None = None) -> StanProgram:
    """Validate the spec against the data and generate the Stan program and its data.
    `generated`: optional generated quantities ('y_rep', 'log_lik'; see model.GENERATED), part of the program.
    `missing`: 'error' or 'drop' (rows with a missing value in a used column), overriding the spec's.
    `threads_per_chain` (default: the spec's `sampler:`, else 1): above 1, the program's likelihood is summed
    by reduce_sum over slices of rows, for that many threads within each chain (a second program of the same
    model; CmdStan runs it threaded)."""
    if missing is not None and missing not in MISSING_POLICIES:
        raise SpecError(Problem("missing", f"unknown missing-value policy {missing!r} "
                                           f"(allowed: {', '.join(MISSING_POLICIES)})"))
    spec = load_spec(spec, data, missing)
    missing = missing or spec.missing
    threads = chain_threads(spec, threads_per_chain)
    frame = load_data(spec, data)
    if frame is None and require_data:
        raise SpecError(Problem("data", "no data: give `data:` in the spec or pass data (CLI: --data FILE.csv)"))
    categorical = categorical_columns(spec, frame) if frame is not None else set()
    try:
        # every `auto` level noncentered: the encoding does not depend on it, and the choice below needs it
        description = describe(spec, categorical, generated=generated)
    except SpecError as err:  # problems that only the data's column kinds show: with the data's own problems
        found = column_problems(dict(spec.columns), frame, categorical=categorical,
                                missing=missing) if frame is not None else []
        if not found:
            raise
        raise SpecError(err.problems + found, err.source, kind="problem") from None
    # each stage once: encode the data, choose each level's parameterization from the encoded design,
    # describe with that choice, write the Stan data, render
    encoded = encode(description, frame, missing=missing) if frame is not None else None
    choices: tuple[Choice, ...] = ()
    decision = design = None
    if spec.levels:
        design = write_stan_data(description, encoded, priors=False).stan_data if encoded is not None else None
        decision = decide(description, design, spec.levels)
        choices = tuple(decision.choices.values())
        sub_centered = sub_model_centering(description, design, spec, decision.working)
        if any(c.parameterization != "noncentered" or c.nested_in for c in choices) or sub_centered:
            description = describe(spec, categorical, generated=generated, **describe_options(choices),
                                   sub_centered=sub_centered)
    if threads > 1:
        description = threaded(description)
    splits = {c.level: c.centered_groups for c in choices if c.centered_groups is not None}
    prepared = write_stan_data(description, encoded, prior_only=prior_only, splits=splits,
                               threads_per_chain=threads) if encoded is not None else None
    start = None
    if decision is not None and decision.working is not None and not prior_only:
        start = starting_point(description, decision.view, decision.working, design)
    return StanProgram(spec, description, codegen.render(description), prepared, choices, start)


def threaded(description: ModelDescription) -> ModelDescription:
    """The description whose program sums its likelihood over slices of rows (reduce_sum), for threads
    within a chain; refused where the likelihood is not a sum over rows."""
    problem = description.residuals.threading_problem() or description.family.threading_problem() or (
        "threads within a chain are not available yet for a model with sub-models (`parameters:`); use "
        "threads_per_chain: 1" if description.submodels else
        "threads within a chain are not available yet with `weights:`, `censoring:` or `truncation:`; use "
        "threads_per_chain: 1" if description.weights or description.censoring or description.truncation else None)
    if problem is not None:
        raise SpecError(Problem("sampler.threads_per_chain", problem))
    return dataclasses.replace(description, threads=True)


def to_json_value(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer,)):
        return int(value)
    if isinstance(value, (np.floating,)):
        return float(value)
    return value


def stan_data_json(stan_data: dict) -> str:
    return json.dumps({k: to_json_value(v) for k, v in stan_data.items()}, indent=1)
