"""Check a raw spec (a plain dict, from YAML or from the Python API) and normalize it.

All problems are collected, each with its spec path; nothing stops at the first one.
The normalized form has every default filled in and the canonical shape of each key.
"""
from __future__ import annotations

import re

import math
from collections.abc import Mapping

from ..core import censoring, residuals, truncation
from ..core.errors import Problem, suggest
from ..core.families import DEFAULT as DEFAULT_FAMILY
from ..core.families import FAMILIES as _FAMILIES
from .priors import parse_prior

FAMILIES = tuple(_FAMILIES)
TOP_KEYS = ("name", "data", "formula", "family", "outcome", "trials", "predictors", "categorical",
            "reference", "intercept", "levels", "priors", "sampler", "missing", "residuals", "order", "parameters",
            "offset", "weights", "censoring", "truncation")
# rows with a missing value in a column the model uses: an error (default), or dropped (lme4's na.omit)
MISSING_POLICIES = ("error", "drop")
LEVEL_KEYS = ("id", "within", "varying", "correlated", "predictors", "means", "unique_labels", "parameterization")
# how a level's group effects are sampled; auto decides from the data (stangen/compiler/parameterization.py)
PARAMETERIZATIONS = ("auto", "centered", "noncentered", "mixed", "partial", "integrated")
PRIOR_CLASSES = {"intercept": "coefficient", "coefficients": "coefficient", "sd": "scale",
                 "correlation": "correlation"}  # and the family's auxiliary parameters (sigma, …)
# sampler key → (type, lower bound, upper bound, inclusive lower)
SAMPLER_KEYS = {
    "chains": (int, 1, None), "parallel_chains": (int, 1, None), "warmup": (int, 0, None),
    "draws": (int, 1, None), "seed": (int, 0, 2**31 - 1), "adapt_delta": (float, 0, 1),
    "max_treedepth": (int, 1, 30), "init": (float, 0, 100), "threads_per_chain": (int, 1, None),
}
INTERCEPT = "intercept"


def term_variables(term: str) -> list[str]:
    return [v.strip() for v in term.split(":")]


class _Checker:
    def __init__(self, lines: Mapping[str, int] | None):
        self.problems: list[Problem] = []
        self.lines = lines or {}

    def add(self, path: str, message: str) -> None:
        line = self.lines.get(path)
        if line is None and "." in path:  # fall back to the enclosing key's line
            line = self.lines.get(path.rsplit(".", 1)[0])
        self.problems.append(Problem(path, message, line))

    def keys(self, mapping: Mapping, allowed, path: str) -> None:
        for key in mapping:
            if key not in allowed:
                where = f"{path}.{key}" if path else str(key)
                self.add(where, f"unknown key '{key}'{suggest(key, allowed)} (allowed: {', '.join(allowed)})")

    def string(self, value, path: str, required: bool = False) -> str | None:
        if value is None:
            if required:
                self.add(path, "is required (a column name)")
            return None
        if isinstance(value, bool):
            self.add(path, f"must be a name, got {value!r}: YAML reads yes/no/on/off/true/false unquoted as "
                           "true or false; quote the name, e.g. 'yes'")
            return None
        if not isinstance(value, str) or not value.strip():
            self.add(path, f"must be a non-empty string, got {value!r}")
            return None
        return value.strip()

    def string_list(self, value, path: str) -> list[str]:
        if value is None:
            return []
        if isinstance(value, str):
            value = [value]
        if not isinstance(value, (list, tuple)):
            self.add(path, f"must be a list of names, got {type(value).__name__} {value!r}")
            return []
        out: list[str] = []
        for i, item in enumerate(value):
            if not isinstance(item, str) or not item.strip():
                self.add(f"{path}[{i}]", f"must be a non-empty string, got {item!r}")
            elif item.strip() in out:
                self.add(f"{path}[{i}]", f"'{item}' is listed twice")
            else:
                out.append(item.strip())
        return out

    def boolean(self, value, path: str, default: bool) -> bool:
        if value is None:
            return default
        if not isinstance(value, bool):
            self.add(path, f"must be true or false, got {value!r}")
            return default
        return value


def validate(raw: object, lines: Mapping[str, int] | None = None) -> tuple[dict, list[Problem]]:
    """Return (normalized spec dict, problems). The dict is only meaningful when problems is empty."""
    c = _Checker(lines)
    if not isinstance(raw, Mapping):
        c.add("", f"a spec is a mapping of keys ({', '.join(TOP_KEYS)}), got {type(raw).__name__}")
        return {}, c.problems
    c.keys(raw, TOP_KEYS, "")
    spec: dict = {}
    spec["name"] = _check_name(c, raw.get("name"))
    spec["data"] = c.string(raw.get("data"), "data")
    family = raw.get("family", DEFAULT_FAMILY)
    known = _FAMILIES.get(family) if isinstance(family, str) else None
    if known is None:
        c.add("family", f"unknown family {family!r}{suggest(family, FAMILIES)} (allowed: {', '.join(FAMILIES)})")
    spec["family"] = family
    outcome = spec["outcome"] = c.string(raw.get("outcome"), "outcome", required=True)
    trials = spec["trials"] = c.string(raw.get("trials"), "trials")
    takers = [f.name for f in _FAMILIES.values() if f.takes_trials]
    if known is not None and known.takes_trials and trials is None and "trials" not in raw:
        c.add("trials", f"family {family} needs `trials:`, the column holding the number of trials per row")
    if trials is not None and known is not None and not known.takes_trials:
        c.add("trials", f"only family {' or '.join(takers)} takes `trials:` (this spec's family is {family})")

    terms = spec["predictors"] = _check_terms(c, raw.get("predictors"), outcome, trials)
    spec["offset"] = _check_row_column(c, raw.get("offset"), "offset", outcome, trials,
                                       "an offset is another column, added to the linear predictor with coefficient 1")
    spec["weights"] = _check_row_column(c, raw.get("weights"), "weights", outcome, trials,
                                        "weights are another column, each row's log density times its weight")
    spec["intercept"] = c.boolean(raw.get("intercept"), "intercept", True)
    spec["order"] = _check_order(c, raw.get("order"), known)
    if known is not None and known.ordinal:
        if raw.get("intercept") is True:
            c.add("intercept", f"family {family} has no population intercept: its K − 1 cutpoints (one between each "
                               "two adjacent categories) take its place, as in ordinal::clmm; remove "
                               "`intercept: true`")
        spec["intercept"] = False
    used_vars = {v for t in terms for v in term_variables(t)}

    levels_raw = raw.get("levels")
    levels_raw = {} if levels_raw is None else levels_raw
    spec["levels"] = {}
    if not isinstance(levels_raw, Mapping):  # `levels: []` too: a list would silently drop every level
        c.add("levels", f"must be a mapping of level name → level settings, got {type(levels_raw).__name__}")
        levels_raw = {}
    for name, level_raw in levels_raw.items():
        level = _check_level(c, str(name), level_raw, terms, outcome)
        spec["levels"][str(name)] = level
        for preds in level["varying"].values():
            used_vars.update(preds)
        used_vars.update(level["means"])
    _check_nesting(c, spec["levels"])
    _check_level_forms(c, spec["levels"])

    spec["priors"] = _check_priors(c, raw.get("priors"), terms, spec["levels"], known)
    spec["parameters"] = _check_parameters(c, raw.get("parameters"), known, spec, outcome, trials)
    for name in spec["parameters"]:
        if name in spec["priors"]:
            c.add(f"priors.{name}", f"{name} has a sub-model (parameters.{name}): it is no longer one number with a "
                                    f"prior; give its coefficients' priors under parameters.{name}.priors")
    for sub in spec["parameters"].values():  # a sub-model's predictors may be categorical, or referenced, too
        used_vars.update(v for t in sub["predictors"] for v in term_variables(t))
    spec["categorical"] = c.string_list(raw.get("categorical"), "categorical")
    for i, var in enumerate(spec["categorical"]):
        if var not in used_vars:
            c.add(f"categorical[{i}]", f"'{var}' is not used by any predictor{suggest(var, used_vars)}")
    spec["reference"] = _check_reference(c, raw.get("reference"), used_vars)
    spec["sampler"] = _check_sampler(c, raw.get("sampler"))
    spec["residuals"] = residuals.check_spec(c, raw.get("residuals"), known, spec["levels"], outcome, suggest)
    used_vars.update(residuals.spec_variables(spec["residuals"]))
    for name in spec["parameters"]:
        problem = residuals.sub_model_problem(spec["residuals"], name)
        if problem:
            c.add(f"parameters.{name}", problem)
    _check_integrated(c, spec["levels"], spec["residuals"])
    spec["censoring"] = censoring.check_spec(c, raw.get("censoring"), known, outcome)
    spec["truncation"] = truncation.check_spec(c, raw.get("truncation"), known, outcome)
    for key, what in (("censoring", "`censoring:`"), ("weights", "`weights:`"),
                      ("residuals", "correlated errors (`residuals: correlation`)")):
        if spec["truncation"] and spec[key] and (key != "residuals" or spec[key].get("correlation")):
            c.add("truncation", f"truncation together with {what} is not supported yet")
    for key, what in (("residuals", "correlated errors (`residuals: correlation`)"), ("weights", "`weights:`"),
                      ("parameters", "sub-models (`parameters:`)")):
        if spec["censoring"] and spec[key] and (key != "residuals" or spec[key].get("correlation")):
            c.add("censoring", f"censoring together with {what} is not supported yet")
    if spec["weights"] and (spec["residuals"] or {}).get("correlation"):
        c.add("weights", "likelihood weights with correlated errors (`residuals: correlation`) are not supported: "
                         "a weight scales one row's log density, and a row's density there depends on the row before")
    missing = raw.get("missing", "error")
    spec["missing"] = missing if missing in MISSING_POLICIES else None  # None: unknown, so not applied
    if spec["missing"] is None:
        c.add("missing", f"unknown missing-value policy {missing!r}{suggest(str(missing), MISSING_POLICIES)} "
                         "(allowed: error — stop and name the rows; drop — leave out every row with a missing "
                         "value in a column the model uses, like lme4's na.omit)")
    return spec, c.problems


# the keys of a `parameters:` entry (a sub-model for one of the family's parameters) and of its levels
PARAMETER_KEYS = ("predictors", "levels", "priors", "correlated_with_main")
PARAMETER_LEVEL_KEYS = ("varying", "correlated", "parameterization")
PARAMETER_PARAMETERIZATIONS = ("auto", "centered", "noncentered")


def _check_parameters(c: _Checker, value, family, spec: dict, outcome, trials) -> dict[str, dict]:
    """`parameters:` → {parameter: {predictors, levels, priors, correlated_with_main}}: a linear predictor for
    each of the family's parameters named (brms's distributional parameters, glmmTMB's ziformula and
    dispformula). Its levels are levels of the model; its predictors are the data's columns, as the main
    model's."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add("parameters", f"must be a mapping of the family's parameter → its sub-model, got {value!r}")
        return {}
    modelable = {a.name: a for a in family.aux if a.sub_model} if family is not None else {}
    out = {}
    for name, raw in value.items():
        name = str(name)
        path = f"parameters.{name}"
        if family is not None and name not in modelable:
            others = [a.name for a in family.aux if not a.sub_model]
            fixed = f"; {', '.join(others)} cannot have one" if others else ""
            c.add(path, f"family {family} has no parameter '{name}' that a sub-model can predict{suggest(name, modelable)} "
                        f"(its parameters: {', '.join(modelable) or 'none'}{fixed})")
            continue
        if raw is None:
            raw = {}
        if not isinstance(raw, Mapping):
            c.add(path, f"must be a mapping ({', '.join(PARAMETER_KEYS)}), got {raw!r}")
            continue
        c.keys(raw, PARAMETER_KEYS, path)
        terms = _check_terms(c, raw.get("predictors"), outcome, trials, f"{path}.predictors")
        levels = {}
        levels_raw = raw.get("levels") or {}
        if not isinstance(levels_raw, Mapping):
            c.add(f"{path}.levels", f"must be a mapping of level name → level settings, got {levels_raw!r}")
            levels_raw = {}
        for level_name, level_raw in levels_raw.items():
            level_name = str(level_name)
            where = f"{path}.levels.{level_name}"
            if level_name not in spec["levels"]:
                c.add(where, f"'{level_name}' is not a level of the model{suggest(level_name, spec['levels'])} "
                             f"(levels: {', '.join(spec['levels']) or 'none'}): a sub-model's groups are the model's")
                continue
            if isinstance(level_raw, Mapping):
                c.keys(level_raw, PARAMETER_LEVEL_KEYS, where)
                for key in ("predictors", "means"):
                    if key in level_raw:
                        c.add(f"{where}.{key}", "group-level predictors in a sub-model are not supported yet")
                level_raw = {k: v for k, v in level_raw.items() if k in PARAMETER_LEVEL_KEYS}
            level = _check_level(c, level_name, level_raw, terms, outcome, prefix=f"{path}.")
            if any(level["varying"].values()):
                c.add(f"{where}.varying", "group-level predictors in a sub-model are not supported yet")
            if level["parameterization"] not in PARAMETER_PARAMETERIZATIONS:
                c.add(f"{where}.parameterization", f"a sub-model's level is sampled centered or noncentered "
                                                   f"(allowed: {', '.join(PARAMETER_PARAMETERIZATIONS)})")
            elif level["parameterization"] == "centered" and list(level["varying"]) != [INTERCEPT]:
                c.add(f"{where}.parameterization", "centered is available for a sub-model's level that varies only "
                                                   "its intercept, for now; use noncentered or auto here")
            level.update(id=spec["levels"][level_name]["id"], within=spec["levels"][level_name]["within"])
            levels[level_name] = level
        correlated = c.boolean(raw.get("correlated_with_main"), f"{path}.correlated_with_main", False)
        if correlated:
            c.add(f"{path}.correlated_with_main", "group effects correlated between the model and a sub-model are "
                                                  "not supported yet; leave it false (the default)")
        if not terms and not levels:
            c.add(path, f"has neither predictors nor levels: without them {name} is one number, as it is without "
                        "an entry (remove the entry, or give it `predictors:` or `levels:`)")
        priors = _check_priors(c, raw.get("priors"), terms, levels, None, path=f"{path}.priors", own=False)
        out[name] = {"predictors": terms, "levels": levels, "priors": priors, "correlated_with_main": correlated}
    return out


def _check_order(c: _Checker, value, family) -> list | None:
    """`order: [low, mid, high]`: an ordinal outcome's categories, lowest first (only with an ordinal family)."""
    if value is None:
        return None
    ordinal = [f.name for f in _FAMILIES.values() if f.ordinal]
    if family is not None and not family.ordinal:
        c.add("order", f"only family {' or '.join(ordinal)} takes `order:` (the order of an ordinal outcome's "
                       f"categories); this spec's family is {family}")
        return None
    scalar = (str, int, float)
    if not isinstance(value, list) or not all(isinstance(v, scalar) and not isinstance(v, bool) for v in value):
        c.add("order", f"must be a list of the outcome's categories, lowest first, e.g. [low, mid, high]; got {value!r}")
        return None
    shown = [str(int(v)) if isinstance(v, float) and v.is_integer() else str(v) for v in value]
    repeated = sorted({v for v in shown if shown.count(v) > 1})
    if repeated:
        c.add("order", f"lists {', '.join(repr(v) for v in repeated)} more than once")
    if len(value) < 2:
        c.add("order", f"an ordinal outcome needs at least 2 categories; `order` lists {len(value)}")
    return list(value)


def _check_row_column(c: _Checker, value, key: str, outcome, trials, meaning: str) -> str | None:
    """`offset:` or `weights:`: a column with a number per row (lme4's offset(), brms's weights()): its name,
    not an expression."""
    if isinstance(value, str) and re.fullmatch(r"\s*(\w+\s*\()?\s*\w+\s*\(.*\)\s*\)?\s*", value):
        c.add(key, f"{value!r} is an expression; `{key}:` names a column: add the transformed values to the data "
                   "as a column (e.g. log_exposure = log(exposure)) and name it here")
        return None
    column = c.string(value, key)
    if column is not None and column in (outcome, trials):
        c.add(key, f"'{column}' is the {'outcome' if column == outcome else 'trials column'}; {meaning}")
        return None
    return column


def used_columns(spec: Mapping) -> dict[str, str]:
    """The data columns a (normalized) spec uses → the spec path that names each first. Works on a spec
    with problems too: what validation could not read is None or left out there, and so not listed."""
    used: dict[str, str] = {}
    for key in ("outcome", "trials", "offset", "weights"):
        if spec.get(key):
            used.setdefault(spec[key], key)
    for i, term in enumerate(spec.get("predictors") or ()):
        for var in term_variables(term):
            used.setdefault(var, f"predictors[{i}]")
    for column, path in residuals.spec_columns(spec.get("residuals")).items():
        used.setdefault(column, path)
    for column, path in censoring.spec_columns(spec.get("censoring")).items():
        used.setdefault(column, path)
    for column, path in truncation.spec_columns(spec.get("truncation")).items():
        used.setdefault(column, path)
    for parameter, sub in (spec.get("parameters") or {}).items():
        for i, term in enumerate(sub["predictors"]):
            for var in term_variables(term):
                used.setdefault(var, f"parameters.{parameter}.predictors[{i}]")
    for name, level in (spec.get("levels") or {}).items():
        used.setdefault(level["id"], f"levels.{name}.id")
        for coef, predictors in level["varying"].items():
            for p in predictors:
                used.setdefault(p, f"levels.{name}.varying.{coef}")
        for var in level["means"]:
            used.setdefault(var, f"levels.{name}.means")
    return used


def _check_terms(c: _Checker, value, outcome, trials, where: str = "predictors") -> list[str]:
    terms = c.string_list(value, where)
    out = []
    for i, term in enumerate(terms):
        variables = term_variables(term)
        path = f"{where}[{i}]"
        if any(not v for v in variables):
            c.add(path, f"term {term!r} has an empty part; an interaction is written 'a:b'")
            continue
        if term in ("1", "0", "-1", INTERCEPT):
            c.add(path, "the intercept is not a predictor; use `intercept: true|false`")
            continue
        if len(set(variables)) != len(variables):
            c.add(path, f"term {term!r} repeats a variable")
            continue
        for v in variables:
            if v in (outcome, trials):
                c.add(path, f"'{v}' is the {'outcome' if v == outcome else 'trials column'}; it cannot be a predictor")
        canonical = ":".join(variables)
        if any(sorted(term_variables(t)) == sorted(variables) for t in out):
            c.add(path, f"term {term!r} duplicates an earlier term")
            continue
        out.append(canonical)
    return out


def _check_level(c: _Checker, name: str, raw, terms: list[str], outcome, prefix: str = "") -> dict:
    path = f"{prefix}levels.{name}"
    level = {"id": name, "within": None, "varying": {INTERCEPT: []}, "correlated": True,
             "means": [], "unique_labels": False, "parameterization": "auto"}
    if raw is None:
        raw = {}
    if not isinstance(raw, Mapping):
        c.add(path, f"must be a mapping of level settings ({', '.join(LEVEL_KEYS)}), got {raw!r}")
        return level
    c.keys(raw, LEVEL_KEYS, path)
    level["id"] = c.string(raw.get("id"), f"{path}.id") or name
    level["within"] = c.string(raw.get("within"), f"{path}.within")
    level["correlated"] = c.boolean(raw.get("correlated"), f"{path}.correlated", True)
    level["unique_labels"] = c.boolean(raw.get("unique_labels"), f"{path}.unique_labels", False)
    parameterization = raw.get("parameterization", "auto")
    if parameterization not in PARAMETERIZATIONS:
        c.add(f"{path}.parameterization", f"unknown parameterization {parameterization!r}"
                                          f"{suggest(str(parameterization), PARAMETERIZATIONS)} "
                                          f"(allowed: {', '.join(PARAMETERIZATIONS)})")
    else:
        level["parameterization"] = parameterization

    varying_raw = raw.get("varying", [INTERCEPT])
    varying: dict[str, list[str]] = {}
    if isinstance(varying_raw, Mapping):
        for coef, preds in varying_raw.items():
            varying[str(coef)] = c.string_list(preds, f"{path}.varying.{coef}")
    else:
        for coef in c.string_list(varying_raw, f"{path}.varying"):
            varying[coef] = []
    if not varying and "varying" in raw:
        c.add(f"{path}.varying", "lists no coefficient; give at least 'intercept'")
    for i, coef in enumerate(varying):
        where = f"{path}.varying.{coef}" if isinstance(varying_raw, Mapping) else f"{path}.varying[{i}]"
        if coef != INTERCEPT and coef not in terms:
            canonical = ":".join(term_variables(coef))
            if canonical not in terms:
                c.add(where, f"'{coef}' is neither 'intercept' nor a level-1 predictor term "
                             f"(predictors: {', '.join(terms) or 'none'}){suggest(coef, [INTERCEPT, *terms])}")
    intercept_preds = c.string_list(raw.get("predictors"), f"{path}.predictors")
    if intercept_preds:
        if INTERCEPT not in varying:
            c.add(f"{path}.predictors", "group-level predictors of the intercept need 'intercept' in `varying`")
        else:
            for p in intercept_preds:
                if p in varying[INTERCEPT]:
                    c.add(f"{path}.predictors", f"'{p}' is also given under varying.intercept")
                else:
                    varying[INTERCEPT].append(p)
    level["means"] = c.string_list(raw.get("means"), f"{path}.means")
    if level["means"] and INTERCEPT not in varying:
        c.add(f"{path}.means", "group means are predictors of the varying intercept: add 'intercept' to `varying`")
    for i, var in enumerate(level["means"]):
        if var == outcome:
            c.add(f"{path}.means[{i}]", "the group mean of the outcome cannot be a predictor")
    for coef, preds in varying.items():
        for p in preds:
            if p == outcome:
                c.add(f"{path}.varying.{coef}", "the outcome cannot be a group-level predictor")
    # the intercept always comes first, then slopes in the spec's order
    level["varying"] = ({INTERCEPT: varying[INTERCEPT]} if INTERCEPT in varying else {}) | {
        ":".join(term_variables(k)): v for k, v in varying.items() if k != INTERCEPT}
    return level


def _check_nesting(c: _Checker, levels: dict[str, dict]) -> None:
    for name, level in levels.items():
        parent = level["within"]
        if parent is None:
            continue
        if parent == name:
            c.add(f"levels.{name}.within", "a level cannot be nested within itself")
        elif parent not in levels:
            c.add(f"levels.{name}.within", f"no level named '{parent}'{suggest(parent, levels)} "
                                           f"(levels: {', '.join(levels)})")
    for name in levels:  # cycles: follow parents until the top or a repeat
        seen, current = [name], levels[name]["within"]
        while current in levels and current not in seen:
            seen.append(current)
            current = levels[current]["within"]
        if current == name and len(seen) > 1:
            c.add(f"levels.{name}.within", f"nesting goes round in a circle: {' → '.join(seen + [name])}")


def marginal_level_name(series_level: str | None, parents: Mapping[str, str | None]) -> str | None:
    """The level whose effects a model with correlated errors (gaussian: the only family with residual
    structures) can integrate out of its likelihood, each of its series jointly normal
    (stangen.compiler.model, LevelDescription.marginal): the level of the error series (`series_level`),
    when no other level lies within it. `parents`: each level's parent (None: top level)."""
    if series_level not in parents:
        return None
    return None if any(parent == series_level for parent in parents.values()) else series_level


def _check_integrated(c: _Checker, levels: dict[str, dict], residual_spec: Mapping | None) -> None:
    """`parameterization: integrated` fits two structures: the level of a gaussian model's correlated error
    series with no level within it (its effects integrated out of the likelihood), or a top-level level
    varying only its intercept, without group-level predictors, over exactly one nested level that varies
    only its intercept and is sampled centered (stangen/compiler/parameterization.py, _integrate_parents)."""
    series_level = marginal_level_name(residuals.spec_series_level(residual_spec),
                                       {n: lv["within"] for n, lv in levels.items()})
    for name, level in levels.items():
        if level.get("parameterization") != "integrated" or name == series_level:
            continue
        path = f"levels.{name}.parameterization"
        children = [k for k, o in levels.items() if o["within"] == name]
        problems = []
        if level["within"] is not None:
            problems.append(f"it is nested within '{level['within']}'")
        if list(level["varying"]) != [INTERCEPT] or any(level["varying"].values()) or level["means"]:
            problems.append("it varies more than its intercept or has group-level predictors")
        if len(children) != 1:
            problems.append(f"it has {len(children)} levels nested within it")
        elif list(levels[children[0]]["varying"]) != [INTERCEPT] \
                or any(o["within"] == children[0] for o in levels.values()):
            problems.append(f"its nested level '{children[0]}' varies more than its intercept or has levels "
                            "nested within it")
        elif levels[children[0]].get("parameterization") in ("noncentered", "mixed", "partial", "integrated"):
            problems.append(f"its nested level '{children[0]}' is {levels[children[0]]['parameterization']}, "
                            "and must be centered")
        if problems:
            c.add(path, "'integrated' needs a top-level level varying only its intercept, without group-level "
                        "predictors, over exactly one nested level that varies only its intercept and is "
                        f"centered; here {'; '.join(problems)} (or, with `residuals: correlation:`, the level of the "
                        "error series with no level within it)")


def _check_level_forms(c: _Checker, levels: dict[str, dict]) -> None:
    """`parameterization: mixed` (each group centered or noncentered by its own data) is built for levels that
    vary only their intercept, `partial` (the first coefficients centered) for levels that vary at least two
    (stangen/compiler/parameterization.py)."""
    for name, level in levels.items():
        if level.get("parameterization") == "mixed" and list(level["varying"]) != [INTERCEPT]:
            c.add(f"levels.{name}.parameterization", "'mixed' is available for a level that varies only its "
                                                    "intercept; use centered or noncentered here")
        if level.get("parameterization") == "partial" and len(level["varying"]) < 2:
            c.add(f"levels.{name}.parameterization", "'partial' (the first varying coefficients centered, the "
                                                    "others noncentered) needs a level varying at least two "
                                                    "coefficients; use centered, noncentered or mixed here")


def _check_reference(c: _Checker, value, used_vars) -> dict[str, str]:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add("reference", f"must be a mapping of variable → reference level, got {value!r}")
        return {}
    out = {}
    for var, level in value.items():
        if var not in used_vars:
            c.add(f"reference.{var}", f"'{var}' is not used by any predictor{suggest(var, used_vars)}")
        elif isinstance(level, (Mapping, list)) or level is None:
            c.add(f"reference.{var}", f"must be one label, got {level!r}")
        else:
            out[str(var)] = str(level)
    return out


def _check_priors(c: _Checker, value, terms, levels, family, path: str = "priors", own: bool = True) -> dict[str, str]:
    """`priors:` of the model (or, `own` False, of a sub-model at `path`: no family parameters there)."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add(path, f"must be a mapping of class or coefficient → prior, got {value!r}")
        return {}
    group_preds = {p for lv in levels.values() for ps in lv["varying"].values() for p in ps}
    group_preds |= {f"mean_{m}" for lv in levels.values() for m in lv["means"]}
    per_level = {f"sd_{n}": "scale" for n in levels} | {f"correlation_{n}": "correlation" for n in levels}
    by_name = {t: "coefficient" for t in [*terms, *group_preds]}
    # the family's auxiliary parameters (with an unknown family, any family's: that problem is reported already)
    aux = {a.name: a.prior_class for f in ([family] if family else _FAMILIES.values()) for a in f.aux} if own else {}
    allowed = PRIOR_CLASSES | aux | per_level | by_name
    others: dict[str, list[str]] = {}  # another family's parameter: not this family's, nor a predictor's name
    for f in _FAMILIES.values() if own else ():
        for a in f.aux:
            if a.name not in allowed:
                others.setdefault(a.name, []).append(f.name)
    out = {}
    for key, text in value.items():
        key = str(key)
        if key in others:
            owners = others[key]
            whose = f"family {owners[0]} has it" if len(owners) == 1 else \
                f"families {', '.join(owners[:-1])} and {owners[-1]} have it"
            c.add(f"{path}.{key}", f"family {family} has no parameter '{key}' ({whose}); this family's: "
                                   f"{', '.join(aux) or 'none'}")
            continue
        if key not in allowed:
            c.add(f"{path}.{key}", f"'{key}' is not a prior class or coefficient{suggest(key, allowed)} "
                                   f"(classes: {', '.join(PRIOR_CLASSES)}; also a predictor's name, sd_<level>, "
                                   f"correlation_<level>)")
            continue
        _, problem = parse_prior(text, allowed[key])
        if problem:
            c.add(f"{path}.{key}", problem)
        else:
            out[key] = text.strip()
    return out


MAX_NAME = 100


def _check_name(c: _Checker, value) -> str | None:
    """The model's name: it names the run folder under runs/, so a name, never a path."""
    name = c.string(value, "name")
    if name is None:
        return None
    if "/" in name or "\\" in name or name.startswith(".") or any(ord(ch) < 32 for ch in name) \
            or len(name) > MAX_NAME:
        c.add("name", f"must be a name, not a path: it names the run folder runs/<name>, so no '/', '\\', leading "
                      f"'.', control characters, or more than {MAX_NAME} characters; got {value!r}")
        return None
    return name


def check_sampler_settings(value: Mapping) -> tuple[dict, list[Problem]]:
    """Sampler settings however given (the spec's `sampler:`, the command line, fit()'s arguments): the
    checked values and the problems, each at `sampler.<key>`."""
    c = _Checker(None)
    return _check_sampler(c, value), c.problems


def _check_sampler(c: _Checker, value) -> dict:
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        c.add("sampler", f"must be a mapping of sampler settings ({', '.join(SAMPLER_KEYS)})")
        return {}
    c.keys(value, SAMPLER_KEYS, "sampler")
    out = {}
    for key, setting in value.items():
        if key not in SAMPLER_KEYS:
            continue
        kind, low, high = SAMPLER_KEYS[key]
        ok = isinstance(setting, (int, float)) and not isinstance(setting, bool)
        if ok and not math.isfinite(setting):
            c.add(f"sampler.{key}", f"must be a finite number, got {setting!r}")
            continue
        if kind is int and ok and not float(setting).is_integer():
            ok = False
        if not ok:
            c.add(f"sampler.{key}", f"must be {'an integer' if kind is int else 'a number'}, got {setting!r}")
            continue
        if (low is not None and (setting < low or (kind is float and key == "adapt_delta" and setting <= 0))) \
                or (high is not None and (setting > high or (key == "adapt_delta" and setting >= 1))):
            bounds = "between 0 and 1 (exclusive)" if key == "adapt_delta" else \
                f">= {low}" + (f" and <= {high}" if high is not None else "")
            c.add(f"sampler.{key}", f"must be {bounds}, got {setting!r}")
            continue
        out[key] = kind(setting)
    return out
