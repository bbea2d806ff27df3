"""The spec: what the model *is*, in the user's terms. Immutable and validated on construction.

Built from YAML (`Spec.from_yaml`) or in Python (`Spec(...)`, `Level(...)`); both go through
the same validator, so both give the same object for the same model.
"""
from __future__ import annotations

import html

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from ..core.errors import Problem, SpecError
from ..core.families import DEFAULT as DEFAULT_FAMILY
from ..core.families import get_family
from ..core.frames import read_csv
from .formula import expand, sub_model_formulas
from .validate import INTERCEPT, used_columns, validate
from .yaml_io import dump_yaml, read_yaml


class FrozenDict(dict):
    """A dict that cannot be changed after construction (so a Spec stays immutable)."""

    def _blocked(self, *args, **kwargs):
        raise TypeError("spec mappings are immutable; build a new Spec instead")

    __setitem__ = __delitem__ = clear = pop = popitem = setdefault = update = _blocked  # type: ignore

    def __reduce__(self):
        return (FrozenDict, (dict(self),))

    def __hash__(self):  # type: ignore[override]
        return hash(tuple(self.items()))


@dataclass(frozen=True)
class Level:
    """One grouping level. `varying` is a list of coefficients, or a mapping coefficient → group-level predictors."""

    id: str | None = None
    within: str | None = None
    varying: Sequence[str] | Mapping[str, Sequence[str]] = (INTERCEPT,)
    correlated: bool = True
    predictors: Sequence[str] = ()
    means: Sequence[str] = ()
    unique_labels: bool = False
    parameterization: str = "auto"  # centered | noncentered | integrated | auto (decided from the data)

    def to_dict(self) -> dict:
        varying = self.varying
        if isinstance(varying, Mapping) and any(varying.values()):
            varying = {k: list(v) for k, v in varying.items()}
        elif isinstance(varying, Mapping):
            varying = list(varying)
        elif not isinstance(varying, str):
            varying = list(varying)
        out: dict[str, Any] = {"id": self.id, "within": self.within, "varying": varying,
                               "correlated": self.correlated, "predictors": list(self.predictors or []) or None,
                               "means": list(self.means or []) or None, "unique_labels": self.unique_labels,
                               "parameterization": self.parameterization}
        return {k: v for k, v in out.items() if v is not None}

    @property
    def coefficients(self) -> tuple[str, ...]:
        """Varying coefficients in order: 'intercept' first, then slopes."""
        return tuple(self.varying)

    def predictors_of(self, coefficient: str) -> tuple[str, ...]:
        return tuple(self.varying[coefficient]) if isinstance(self.varying, Mapping) else ()


SUB_LEVEL_KEYS = ("varying", "correlated", "parameterization")  # a sub-model's level: its groups are the model's


@dataclass(frozen=True)
class ParameterModel:
    """A sub-model for one of the family's parameters (`parameters: {sigma: …}`, brms's distributional
    parameters): a linear predictor on the parameter's link scale, with its own predictors and group effects
    at levels of the model, in place of one number."""

    predictors: Sequence[str] = ()
    levels: Mapping[str, Level] = field(default_factory=dict)
    priors: Mapping[str, str] = field(default_factory=dict)
    correlated_with_main: bool = False

    def to_dict(self) -> dict:
        levels = {n: {k: v for k, v in (lv.to_dict() if isinstance(lv, Level) else dict(lv)).items()
                      if k in SUB_LEVEL_KEYS} for n, lv in (self.levels or {}).items()}
        return {"predictors": list(self.predictors), "levels": levels, "priors": dict(self.priors),
                "correlated_with_main": self.correlated_with_main}


def _parameters_dict(value) -> dict | None:
    """`parameters:` as plain data: ParameterModel objects or mappings, as given."""
    if not isinstance(value, Mapping):
        return value
    return {k: v.to_dict() if isinstance(v, ParameterModel) else v for k, v in value.items()}


@dataclass(frozen=True)
class Spec:
    """A multilevel model specification (spec format v1). See docs/spec-reference.md."""

    outcome: str
    predictors: Sequence[str] = ()
    levels: Mapping[str, Level] = field(default_factory=dict)
    family: str = DEFAULT_FAMILY
    trials: str | None = None
    offset: str | None = None  # a column added to the linear predictor with coefficient 1 (lme4's offset())
    weights: str | None = None  # likelihood weights: each row's log density times its weight (brms's weights())
    # censored outcomes: {column: each row's kind (none|left|right|interval), upper} (stangen/core/censoring.py)
    censoring: Mapping[str, str | None] | None = None
    # truncated outcomes: {lower, upper}, each a number or a column (stangen/core/truncation.py)
    truncation: Mapping[str, float | str | None] | None = None
    categorical: Sequence[str] = ()
    reference: Mapping[str, str] = field(default_factory=dict)
    intercept: bool | None = None  # None: the family's default (true; false for an ordinal family)
    priors: Mapping[str, str] = field(default_factory=dict)
    sampler: Mapping[str, float] = field(default_factory=dict)
    name: str | None = None
    data: str | None = None
    missing: str = "error"  # rows with a missing value in a used column: error | drop
    # the level-1 errors' structure: {correlation: ar1|car1, time, level, sd_by} (stangen/core/residuals.py)
    residuals: Mapping[str, str | None] | None = None
    order: Sequence[str | int | float] | None = None  # an ordinal outcome's categories, lowest first
    # sub-models for the family's parameters: parameter → ParameterModel (a mapping of its keys is read too)
    parameters: Mapping[str, ParameterModel] = field(default_factory=dict)
    # the lme4 formula the spec was written as (`formula:`), and its translation (stangen.spec.formula.LongForm:
    # the notes on what the data decided, the comments `stangen from-formula` writes)
    formula: str | None = field(default=None, compare=False, repr=False)
    translation: Any = field(default=None, compare=False, repr=False)
    base_dir: Path | None = field(default=None, compare=False, repr=False)
    _lines: Mapping[str, int] | None = field(default=None, compare=False, repr=False)
    _columns: Mapping[str, str] | None = field(default=None, compare=False, repr=False)

    def __post_init__(self) -> None:
        normalized, problems = validate(self.to_dict(), self._lines)
        if problems:
            raise SpecError(problems, source=self._source(), partial=normalized, base_dir=self.base_dir)
        set_ = object.__setattr__
        for key in ("predictors", "categorical"):
            set_(self, key, tuple(normalized[key]))
        for key in ("reference", "priors", "sampler"):
            set_(self, key, FrozenDict(normalized[key]))
        for key in ("family", "outcome", "trials", "offset", "weights", "intercept", "name", "data", "missing"):
            set_(self, key, normalized[key])
        set_(self, "residuals", FrozenDict(normalized["residuals"]) if normalized["residuals"] else None)
        set_(self, "censoring", FrozenDict(normalized["censoring"]) if normalized["censoring"] else None)
        set_(self, "truncation", FrozenDict(normalized["truncation"]) if normalized["truncation"] else None)
        set_(self, "order", tuple(normalized["order"]) if normalized["order"] else None)
        set_(self, "levels", FrozenDict({
            name: Level(id=lv["id"], within=lv["within"], correlated=lv["correlated"],
                        varying=FrozenDict({k: tuple(v) for k, v in lv["varying"].items()}),
                        means=tuple(lv["means"]), unique_labels=lv["unique_labels"],
                        parameterization=lv["parameterization"])
            for name, lv in normalized["levels"].items()}))
        set_(self, "parameters", FrozenDict({
            name: ParameterModel(
                predictors=tuple(sub["predictors"]), priors=FrozenDict(sub["priors"]),
                correlated_with_main=sub["correlated_with_main"],
                levels=FrozenDict({n: Level(id=lv["id"], within=lv["within"], correlated=lv["correlated"],
                                            varying=FrozenDict({k: tuple(v) for k, v in lv["varying"].items()}),
                                            parameterization=lv["parameterization"])
                                   for n, lv in sub["levels"].items()}))
            for name, sub in normalized["parameters"].items()}))
        set_(self, "_lines", None)
        set_(self, "_columns", FrozenDict(used_columns(normalized)))

    def _source(self) -> str | None:
        return str(self.base_dir / f"{self.name}.yaml") if self._lines is not None and self.base_dir else None

    # -- construction -----------------------------------------------------------------------
    @classmethod
    def from_dict(cls, raw: Mapping, *, base_dir: Path | None = None, lines=None, source=None,
                  data=None) -> "Spec":
        """`data` (a DataFrame or CSV path; default the spec's `data:`) is read only for a `formula:` spec:
        the data decide which predictors are group-level (stangen/spec/formula.py)."""
        formula, translation = None, None
        if isinstance(raw, Mapping) and "parameters" in raw:  # a sub-model given as a formula: `zi: "~ mined"`
            try:
                raw = sub_model_formulas(raw)
            except SpecError as err:
                raise SpecError(err.problems, source=source, base_dir=base_dir) from None
        if isinstance(raw, Mapping) and "formula" in raw:
            raw, formula, translation = _from_formula(raw, data, base_dir, lines, source)
        normalized, problems = validate(raw, lines)
        if problems and formula is not None:  # a key the formula wrote has no line of its own: name the formula
            line = (lines or {}).get("formula")
            problems = [Problem("formula", f"(as {p.path}) {p.message}", line)
                        if p.path.split(".")[0].split("[")[0] in FORMULA_KEYS else p for p in problems]
        if problems:
            raise SpecError(problems, source=source, partial=normalized, base_dir=base_dir)
        levels = {n: Level(**{k: v for k, v in lv.items()}) for n, lv in normalized["levels"].items()}
        parameters = {name: ParameterModel(
            predictors=sub["predictors"], priors=sub["priors"], correlated_with_main=sub["correlated_with_main"],
            levels={n: Level(**{k: v for k, v in lv.items() if k in SUB_LEVEL_KEYS}) for n, lv in sub["levels"].items()})
            for name, sub in normalized["parameters"].items()}
        kwargs = {k: v for k, v in normalized.items() if k not in ("levels", "parameters")}
        return cls(levels=levels, parameters=parameters, base_dir=base_dir, formula=formula,
                   translation=translation, **kwargs)

    @classmethod
    def from_yaml(cls, path: str | Path, data=None) -> "Spec":
        path = Path(path)
        raw, lines = read_yaml(path)
        if isinstance(raw, dict) and "name" not in raw:
            raw = {"name": path.stem, **raw}
        return cls.from_dict(raw, base_dir=path.resolve().parent, lines=lines, source=str(path), data=data)

    @classmethod
    def from_formula(cls, formula: str, frame=None, **keys) -> "Spec":
        """A spec from an lme4 formula, e.g. `Spec.from_formula("Reaction ~ Days + (Days | Subject)", df)`.
        `frame`: the data (a DataFrame or CSV path; default the `data=` key's file), which place group-level
        predictors (a path is also the spec's `data:` unless one is given); `keys`: the other spec keys
        (data, family, priors, sampler, …)."""
        raw = {"formula": formula, **keys}
        if isinstance(frame, (str, Path)) and "data" not in raw:
            raw["data"] = str(frame)
        return cls.from_dict(raw, data=frame)

    # -- output -----------------------------------------------------------------------------
    def to_dict(self) -> dict:
        """The spec as plain data, in canonical form (what `to_yaml` writes)."""
        out: dict[str, Any] = {}
        for f in fields(self):
            if f.name in ("base_dir", "_lines", "_columns", "formula", "translation"):
                continue
            value = getattr(self, f.name)
            if f.name == "levels":
                value = {n: lv.to_dict() if isinstance(lv, Level) else lv for n, lv in (value or {}).items()}
            elif f.name == "parameters":
                value = _parameters_dict(value)
            elif isinstance(value, Mapping):
                value = dict(value)
            elif isinstance(value, tuple):
                value = list(value)
            out[f.name] = value
        return out

    def to_yaml(self) -> str:
        data = self.to_dict()
        ordinal = get_family(self.family).ordinal  # cutpoints take the intercept's place: it is always false
        defaults = {"family": DEFAULT_FAMILY, "intercept": not ordinal, "missing": "error"}
        lean = {k: v for k, v in data.items() if v not in (None, [], {}) and defaults.get(k, object()) != v}
        for key in ("residuals", "censoring", "truncation"):
            if key in lean:
                lean[key] = {k: v for k, v in lean[key].items() if v is not None}
        for name, lv in lean.get("levels", {}).items():
            if lv.get("id") == name:
                del lv["id"]
            for key, default in (("correlated", True), ("unique_labels", False), ("parameterization", "auto"),
                                 ("varying", [INTERCEPT])):
                if lv.get(key) == default:
                    del lv[key]
        for sub in lean.get("parameters", {}).values():
            for key, default in (("predictors", []), ("levels", {}), ("priors", {}), ("correlated_with_main", False)):
                if sub.get(key) == default:
                    del sub[key]
            for lv in sub.get("levels", {}).values():
                for key, default in (("correlated", True), ("parameterization", "auto"), ("varying", [INTERCEPT])):
                    if lv.get(key) == default:
                        del lv[key]
        # where the data are and what model: first, as a person writes a spec
        first = ("name", "data", "family", "outcome", "trials", "offset", "weights", "order")
        lean = {k: lean[k] for k in first if k in lean} | {k: v for k, v in lean.items() if k not in first}
        return dump_yaml(lean)

    def with_parameterization(self, choice: str, levels: Sequence[str] | None = None,
                              sub_models: bool = False) -> "Spec":
        """The same spec with `parameterization: choice` on the given levels (default: all); `sub_models`: on
        the sub-models' levels whose setting is `auto` as well."""
        raw = self.to_dict()
        for name, level in raw["levels"].items():
            if levels is None or name in levels:
                level["parameterization"] = choice
        for sub in raw["parameters"].values() if sub_models else ():
            for level in sub["levels"].values():
                if level.get("parameterization", "auto") == "auto":
                    level["parameterization"] = choice
        return Spec.from_dict(raw, base_dir=self.base_dir)

    @property
    def formula_notes(self) -> tuple[str, ...]:
        """What the data decided in translating `formula:` ("w is constant within g: …")."""
        return tuple(self.translation.notes) if self.translation is not None else ()

    @property
    def columns(self) -> Mapping[str, str]:
        """The data columns the model uses → the spec path that names each first."""
        return self._columns

    @property
    def data_path(self) -> Path | None:
        return None if self.data is None else resolve_data_path(self.data, self.base_dir)

    def _repr_html_(self) -> str:
        """In a notebook: the model in one line, then the spec as YAML (folded)."""
        return (f"<div><p><b>{html.escape(self.describe())}</b></p><details><summary>spec (YAML)</summary>"
                f"<pre>{html.escape(self.to_yaml())}</pre></details></div>")

    def describe(self) -> str:
        """One line: family, outcome, predictors and levels, e.g. for `stangen validate`."""
        parts = [f"{self.family} model of {self.outcome}"]
        if self.trials:
            parts[0] += f" (trials: {self.trials})"
        if self.offset:
            parts[0] += f" (offset: {self.offset})"
        if self.weights:
            parts[0] += f" (weights: {self.weights})"
        n = len(self.predictors)
        parts.append(f"{n or 'no'} level-1 predictor{'s' if n != 1 else ''}")
        for name, lv in self.levels.items():
            slopes = [c for c in lv.coefficients if c != INTERCEPT]
            bits = (["intercept"] if INTERCEPT in lv.coefficients else []) + [f"{s} slope" for s in slopes]
            nest = f" within {lv.within}" if lv.within else ""
            parts.append(f"{name}{nest}: varying {' + '.join(bits)}")
        if len(self.levels) > 1:
            top = [n for n, lv in self.levels.items() if lv.within is None]
            if len(top) > 1:
                parts.append(f"crossed: {' × '.join(top)}")
        return "; ".join(parts)


def resolve_data_path(value: str, base_dir: Path | None) -> Path:
    """A spec's `data:` path: relative to the spec file's folder."""
    path = Path(value)
    return path if path.is_absolute() or base_dir is None else base_dir / path


# the spec keys a formula writes: a problem there is the formula's
FORMULA_KEYS = ("outcome", "trials", "offset", "predictors", "levels", "intercept", "categorical", "reference")


def _from_formula(raw: Mapping, data, base_dir: Path | None, lines, source) -> tuple[dict, str, Any]:
    """A raw spec with `formula:` in long form, read against the data (the given data, else `data:`)."""
    frame = data
    if frame is not None and not hasattr(frame, "columns"):
        frame = read_csv(frame)
    elif frame is None and isinstance(raw.get("data"), str):
        frame = read_csv(resolve_data_path(raw["data"], base_dir))
    try:
        long_form, translation = expand(raw, frame, lines)
    except SpecError as err:
        raise SpecError(err.problems, source=source, kind="formula problem", base_dir=base_dir) from None
    return long_form, str(raw["formula"]).strip(), translation
