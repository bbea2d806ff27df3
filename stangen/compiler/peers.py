"""The way back: a spec's model as lme4 (or its family's R peer) and brms code, to check a stangen fit against
them in one paste (`stangen render --as lme4|brms SPEC`).

    print(lme4_code(program))     # lme4::lmer(Reaction ~ Days + (Days | Subject), data = d)
    print(brms_code(program))     # brms::brm(..., family = gaussian(), prior = c(prior(...), ...))

The formula names the data's columns (a level's id column, `ave(x, g)` for a group mean). Where the spec says
something a formula cannot (a parameterization, the error structure, priors for lme4), a comment says so.
"""
from __future__ import annotations

import re

from ..spec.validate import INTERCEPT
from .model import ModelDescription, prior_targets


def r_name(name: str) -> str:
    """A column as R (and formulae) read it: `my col` in backticks unless it is a syntactic name."""
    return name if re.fullmatch(r"[A-Za-z][A-Za-z0-9._]*|\.[A-Za-z_.][A-Za-z0-9._]*", name) else f"`{name}`"


def _r_term(term: str) -> str:
    return ":".join(r_name(v) for v in term.split(":"))


def formula(desc: ModelDescription, code: bool = False) -> str:
    """The model as an lme4 formula, e.g. 'Reaction ~ Days + (Days | Subject)'. `code`: as R code on the
    data's columns (id columns, `ave(x, g)` for a group mean); otherwise in the spec's names, with the
    family appended when it is not gaussian (the printout's first lines)."""
    d = desc
    q = _r_term if code else (lambda name: name)  # R code quotes a non-syntactic column in backticks
    lhs = f"cbind({q(d.outcome)}, {q(d.trials)} - {q(d.outcome)})" if d.family.takes_trials else q(d.outcome)
    fixed = ["1" if d.spans_intercept else "0"] + [q(t.name) for t in d.terms]
    for lv in d.levels:
        for c in lv.coefficients:
            for e in c.effects:
                name = q(e.predictor.name)
                if code and e.predictor.is_mean:
                    name = f"ave({q(e.predictor.column)}, {_group(d, lv, code)})"
                fixed.append(name if c.term is None else f"{q(c.term.name)}:{name}")
    if d.offset is not None:
        fixed.append(f"offset({q(d.offset)})")
    if d.spans_intercept and len(fixed) > 1:
        fixed = fixed[1:]
    bars = []
    for lv in d.levels:
        slopes = [q(c.name) for c in lv.coefficients if c.name != INTERCEPT]
        has_intercept = any(c.name == INTERCEPT for c in lv.coefficients)
        terms = " + ".join(slopes) if slopes else "1"
        if not has_intercept:
            terms = "0 + " + terms
        bar = "||" if lv.kind == "independent" else "|"
        bars.append(f"({terms} {bar} {_group(d, lv, code)})")
    text = f"{lhs} ~ {' + '.join(fixed + bars)}"
    return text if code or d.family.is_default else f"{text}, family = {d.family}"


def submodel_formula(d: ModelDescription, sub, code: bool = False) -> str:
    """A sub-model's right-hand side as glmmTMB's ziformula/dispformula and brms's `zi ~ …` write it:
    '~ mined', '~ Days + (1 | Subject)' ('~ 1' for an intercept alone)."""
    q = _r_term if code else (lambda name: name)
    parts = [q(t.name) for t in sub.terms]
    for lv in sub.levels:
        slopes = [q(c.name) for c in lv.coefficients if c.name != INTERCEPT]
        terms = " + ".join(slopes) if slopes else "1"
        if not any(c.name == INTERCEPT for c in lv.coefficients):
            terms = "0 + " + terms
        parts.append(f"({terms} {'||' if lv.kind == 'independent' else '|'} {_group(d, d.level(lv.name), code)})")
    return "~ " + (" + ".join(parts) or "1")


def _group(d: ModelDescription, lv, code: bool) -> str:
    """A level's grouping factor: its name (printout) or id column (code); a nested level whose labels repeat
    across parents as the interaction with its ancestors (batch:cask)."""
    name = (lambda level: r_name(level.id_column)) if code else (lambda level: level.name)
    if lv.ancestors and not lv.unique_labels:
        return ":".join([name(d.level(a)) for a in lv.ancestors] + [name(lv)])
    return name(lv)


def _notes(program) -> list[str]:
    """What the spec says that a formula cannot."""
    d, spec = program.description, program.spec
    notes = []
    set_in_spec = [lv for lv in d.levels if spec.levels[lv.name].parameterization != "auto"]
    if set_in_spec:
        notes.append("# stangen samples " + ", ".join(f"{lv.name} {lv.parameterization}" for lv in set_in_spec) +
                     " (the spec's choice; a formula has no such setting, and it does not change the model)")
    note = d.residuals.peer_note()
    if note is not None:
        notes.append(note)
    for lv in d.levels:
        on_intercept = {e.predictor.name for c in lv.coefficients if c.term is None for e in c.effects}
        for c in lv.coefficients:
            for e in c.effects:
                name = e.predictor.name
                if c.term is not None and name not in on_intercept:
                    notes.append(f"# {c.term.name}:{name}: {name} predicts only the {c.term.name} slope by {lv.name}, "
                                 f"not the intercept (no {name} main effect): in a formula, leave {name} out on "
                                 "its own")
        for gp in lv.predictors:
            if gp.is_mean:
                notes.append(f"# ave({gp.column}, {_group(d, lv, True)}): the {lv.name} mean of {gp.column}, "
                             "a group-level predictor (stangen's `means:`)")
    return notes


def _factor_lines(program) -> list[str]:
    """R lines that code each categorical variable as stangen does: a factor with stangen's reference."""
    d, prepared = program.description, program.data
    used = sorted({v for t in d.terms for v in t.variables if v in d.categorical} |
                  {gp.column for lv in d.levels for gp in lv.predictors if gp.categorical})
    lines = []
    for var in used:
        reference = prepared.categories[var][0] if prepared is not None else dict(d.reference).get(var)
        col = r_name(var)
        lines.append(f'd${col} <- relevel(factor(d${col}), ref = "{reference}")' if reference is not None else
                     f"d${col} <- factor(d${col})  # stangen's reference: the first value in sorted order")
    return lines


def lme4_code(program) -> str:
    """The R call of the spec's model in lme4 (or the family's usual peer: glmmTMB, ordinal)."""
    d = program.description
    lines = [f"# {program.spec.name or 'model'}: the stangen spec's model in R; d is the data (read.csv(...))"]
    lines += _notes(program)
    call = d.family.lme4_call
    if not call:
        lines.append(f"# lme4 has no {d.family} family: see `stangen render --as brms`")
        return "\n".join(lines) + "\n"
    f = formula(d, code=True)
    lhs, _, rhs = f.partition(" ~ ")
    if d.family.ordinal:
        levels = ", ".join(f'"{c}"' for c in d.order) if d.order else None
        lhs = f"factor({lhs}, levels = c({levels}), ordered = TRUE)" if levels else f"factor({lhs}, ordered = TRUE)"
    lines += _factor_lines(program)
    zero = next((sub for sub in d.submodels if sub.link == "logit"), None)
    dispersion = next((sub for sub in d.submodels if sub.link == "log"), None)
    call = call.format(formula=f, log_formula=f"log({lhs}) ~ {rhs}", ordered_formula=f"{lhs} ~ {rhs}",
                       zi_formula=submodel_formula(d, zero, code=True) if zero else "~1")
    if dispersion is not None:  # glmmTMB's dispformula (for sigma it models log sigma², brms's sigma log sigma)
        call = call.replace("lme4::lmer(", "glmmTMB::glmmTMB(").replace("lme4::glmer.nb(", "glmmTMB::glmmTMB(")
        call = call[:-1] + f", dispformula = {submodel_formula(d, dispersion, code=True)})"
        if dispersion.levels:
            lines.append("# glmmTMB 1.1.5 takes no group effects in dispformula: brms (`render --as brms`) does")
        if dispersion.stan == "sigma":
            lines.append("# glmmTMB's dispersion coefficients are on the log sigma² scale: halve them to compare")
    if d.censoring is not None:
        lines.append(f"# lme4 and glmmTMB cannot fit a censored outcome: this call takes {d.outcome}'s censored "
                     f"values ({d.censoring.column}) as observed; brms can (`stangen render --as brms`)")
    if d.truncation is not None:
        lines.append(f"# lme4 cannot fit a truncated outcome ({d.outcome} in {d.truncation.text()}): this call ignores "
                     "the truncation; glmmTMB's truncated_poisson/truncated_nbinom2 are zero-truncated counts, brms's "
                     "trunc() any range (`stangen render --as brms`)")
    if d.weights is not None:
        call = call[:-1] + f", weights = {_r_term(d.weights)})"
        lines.append("# stangen's weights multiply each row's log density, as glmer's prior weights and brms's "
                     "weights() do" if not d.family.additive_errors else
                     f"# stangen's weights multiply each row's log density (brms's weights()); lmer's are precision "
                     f"weights (residual variance sigma²/w): the same model only when {d.weights} averages 1")
    lines.append(call)
    lines.append("# priors: lme4 has none (maximum likelihood); stangen's are in `stangen render --as brms`")
    return "\n".join(lines) + "\n"


# stangen prior key → brms class (and coefficient) of the same parameter
def _brms_priors(program) -> list[str]:
    d, prepared = program.description, program.data
    out = []
    for target in prior_targets(d):
        used = prepared.priors.get(target.key) if prepared is not None else None
        choice = target.choice
        if used is None:
            if choice.given is None:
                continue  # a default scaled to the data: only known with data
            args_list = [dict(choice.given.named_args)]
        else:
            args_list = _per_element(used["args"])
        family = choice.family
        names = _brms_targets(target, d, prepared)
        if target.submodel is not None:  # brms's distributional parameter
            names = [f"{where}, dpar = {target.submodel.stan}" for where in names]
        if len(args_list) == 1 and len(names) > 1:
            args_list = args_list * len(names)
        for where, args in zip(names, args_list):
            numbers = ", ".join(_number(v) for v in args.values())
            out.append(f"prior({family}({numbers}), {where})")
    return out


def _per_element(args: dict) -> list[dict]:
    import numpy as np
    arrays = {k: np.atleast_1d(np.asarray(v, dtype=float)) for k, v in args.items()}
    n = max(len(v) for v in arrays.values())
    return [{k: float(v[i] if len(v) > i else v[0]) for k, v in arrays.items()} for i in range(n)]


def _number(value: float) -> str:
    return f"{value:.6g}"


def _brms_targets(target, d, prepared) -> list[str]:
    role = target.role
    if role == "intercept":
        return ["class = Intercept"]
    if role == "term":
        columns = prepared.columns[target.term.columns_key] if prepared is not None else [target.term.name]
        return [f"class = b, coef = {_brms_coef(c)}" for c in columns]
    if role == "effect":
        c, pred = target.coefficient, target.effect.predictor
        columns = prepared.group_columns[(target.level.name, pred.name)] if prepared is not None else [pred.name]
        if pred.is_mean:
            columns = [f"ave{pred.column}{_group(d, target.level, True)}"]  # brms's name of ave(x, g)
        return [f"class = b, coef = {_brms_coef(col if c.term is None else f'{c.term.name}:{col}')}" for col in columns]
    if role == "aux":
        return [f"class = {target.aux.brms_class or target.aux.name}"]
    if role == "sd":
        group = _group(d, target.level, True)
        return [f"class = sd, group = {group}, coef = {'Intercept' if c.name == INTERCEPT else _brms_coef(c.name)}"
                for c in target.level.coefficients]
    if role == "correlation":
        return [f"class = cor, group = {_group(d, target.level, True)}"]
    return [f"class = {target.key}"]


def _brms_coef(name: str) -> str:
    """A coefficient's name as brms writes it, quoted: interactions keep ':'; a function call's term drops
    what is not a letter, digit, dot or underscore (ave(x, g) → avexg)."""
    import re
    return '"' + re.sub(r"[^A-Za-z0-9._:]", "", name) + '"'



def brms_code(program) -> str:
    """The brms call of the spec's model, with the priors stangen uses as prior(...) lines (the defaults with
    their numbers when the spec has data; they are scaled to it)."""
    d = program.description
    lines = [f"# {program.spec.name or 'model'}: the stangen spec's model in brms; d is the data (read.csv(...))"]
    lines += _notes(program)
    f = formula(d, code=True)
    lhs, _, rhs = f.partition(" ~ ")
    additions = ([f"trials({_r_term(d.trials)})"] if d.family.takes_trials else []) + \
        ([f"weights({_r_term(d.weights)})"] if d.weights else []) + \
        ([d.censoring.brms_addition(_r_term)] if d.censoring else []) + \
        ([d.truncation.brms_addition(_r_term)] if d.truncation else [])
    if d.censoring:
        lines.append(f"# brms codes {d.censoring.column} as none/left/right/interval or 0/-1/1/2, as stangen does")
    if additions:
        lhs = f"{_r_term(d.outcome)} | {' + '.join(additions)}"
    priors = _brms_priors(program)
    if program.data is None:
        lines.append("# default priors are scaled to the data: give the spec data to print their numbers")
    prior_text = ",\n    ".join(priors)
    lines += _factor_lines(program)
    subs = "".join(f", {sub.stan} {submodel_formula(d, sub, code=True)}" for sub in d.submodels)
    lines.append(f"brms::brm(brms::bf({lhs} ~ {rhs}{subs}), data = d, family = {d.family.brms}" +
                 (f",\n  prior = c(\n    {prior_text})" if priors else "") + ")")
    return "\n".join(lines) + "\n"
