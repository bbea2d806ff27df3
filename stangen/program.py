"""The compile step users call: Spec (+ data) → StanProgram (program text, Stan data, names to map results back)."""
from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Iterable

import numpy as np
import pandas as pd

from . import codegen
from .data import PreparedData, categorical_columns, prepare, read_csv
from .errors import Problem, SpecError
from .model import ModelDescription, describe
from .parameterization import Choice, choose, pooled_order
from .spec import Spec


@dataclass(frozen=True)
class StanProgram:
    spec: Spec
    description: ModelDescription
    code: str
    data: PreparedData | None  # None when rendered without data
    # each level's parameterization and why (stangen.parameterization.Choice), in level order
    parameterization: tuple = ()

    @property
    def stan_data(self) -> dict:
        if self.data is None:
            raise ValueError("this program was rendered without data")
        return self.data.stan_data


def load_spec(spec: Spec | str | Path) -> Spec:
    return spec if isinstance(spec, Spec) else Spec.from_yaml(spec)


def load_data(spec: Spec, data: pd.DataFrame | str | Path | None) -> pd.DataFrame | None:
    """The data given, else the spec's `data:` file, else None."""
    if isinstance(data, pd.DataFrame):
        return data
    if data is not None:
        return read_csv(data)
    if spec.data_path is not None:
        return read_csv(spec.data_path)
    return None


def build(spec: Spec | str | Path, data: pd.DataFrame | str | Path | None = None, *,
          require_data: bool = False, prior_only: bool = False,
          generated: str | Iterable[str] | None = ()) -> StanProgram:
    """Validate the spec against the data and generate the Stan program and its data.
    `generated`: optional generated quantities ('y_rep', 'log_lik'; see model.GENERATED), part of the program."""
    spec = load_spec(spec)
    frame = load_data(spec, data)
    if frame is None and require_data:
        raise SpecError(Problem("data", "no data: give `data:` in the spec or pass data (CLI: --data FILE.csv)"))
    categorical = categorical_columns(spec, frame) if frame is not None else set()
    description = describe(spec, categorical, generated=generated)  # every `auto` level noncentered
    prepared = prepare(description, frame, prior_only=prior_only) if frame is not None else None
    choices: tuple[Choice, ...] = ()
    if spec.levels:
        choices = tuple(choose(description, prepared.stan_data if prepared else None, spec.levels).values())
        chosen = {c.level: c.parameterization for c in choices}
        if any(c == "centered" for c in chosen.values()):
            description = describe(spec, categorical, generated=generated, parameterization=chosen,
                                   pooled_order=pooled_order(choices))
            prepared = prepare(description, frame, prior_only=prior_only) if frame is not None else None
    return StanProgram(spec, description, codegen.render(description), prepared, choices)


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
