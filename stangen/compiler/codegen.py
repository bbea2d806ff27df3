"""Stage 3a: ModelDescription → Stan program text, through the Jinja templates in templates/.

Python decides; templates spell. The output is deterministic (no dates or versions),
because the program text is the compile cache's key.
"""
from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path

import jinja2

from ..core.names import comment_text
from .model import LevelDescription, ModelDescription, PriorTarget, SubModel, Term, VaryingCoefficient, prior_targets


def _template_dir() -> Path:
    try:
        return Path(str(resources.files("stangen.templates")))
    except ModuleNotFoundError:  # running from a source tree that is not installed
        return Path(__file__).resolve().parent.parent / "templates"


def stack_coefficients(terms: tuple[Term, ...]) -> str:
    """One vector of the pooled coefficients, in design-column order: [b1, b2]' or append_row(b1, v)."""
    if all(not t.categorical for t in terms):
        return "[" + ", ".join(t.param for t in terms) + "]'"
    *head, last = terms
    expr = last.param if last.categorical else f"[{last.param}]'"
    for term in reversed(head):
        expr = f"append_row({term.param}, {expr})"
    return expr


def group_mean(c: VaryingCoefficient, lv: LevelDescription, d: ModelDescription) -> str:
    """The Stan expression (a J-vector) of a centered level's predicted coefficient c, or '' for 0."""
    parts = []
    if c.mean_from_population:
        # the pooled coefficient (at the predictors' means, like the slope predictors here)
        parts.append(f"rep_vector({d.intercept_param if c.term is None else c.term.param}, {lv.groups_key})")
    if c.parent_column is not None:
        index = f"[{lv.parent_key}]" if lv.parent_is_vector else f"[{lv.parent_key}, {c.parent_column}]"
        parts.append(f"{lv.parent_value}{index}")
    parts += [f"{e.predictor.data} * {e.param}" for e in c.effects]
    return " + ".join(parts)


def mean_note(c: VaryingCoefficient, lv: LevelDescription) -> str:
    """' (with the pooled coefficient and the batch's)': what a centered level's groups are drawn around."""
    notes = (["the pooled coefficient"] if c.mean_from_population else []) + (
        [f"the {lv.parent}'s"] if c.parent_column is not None else [])
    return f" (with {' and '.join(notes)})" if notes else ""


def _group_block_note(lv: LevelDescription, c: VaryingCoefficient) -> str:
    """'school iq_verb slopes (with the pooled coefficient)': a level's coefficient as its comments name it."""
    label = "intercepts" if c.term is None else f"{c.term.name} slopes"
    return f"{lv.name} {label}{mean_note(c, lv)}"


def eta_terms(d: ModelDescription, rows: str = "") -> list[tuple[str, str]]:
    """The linear predictor's terms (Stan expression, comment), in the order of C's blocks
    (ModelDescription.design_blocks, without X): each level's group values gathered to the observations
    (times the slope's values), then the pooled intercept unless a level took it. `rows` ("[start:end]"): of a
    slice of the rows, the per-observation data indexed by it."""
    terms = []
    for block in d.design_blocks:
        if block.columns == "groups":
            lv, c = block.level, block.coefficient
            idx = f"{lv.index_key}{rows}"
            index = f"[{idx}]" if lv.kind == "intercept" else f"[{idx}, {c.column}]"
            expr = f"{lv.value}{index}" + (f" .* {c.x}{rows}" if c.term is not None else "")
            terms.append((expr, _group_block_note(lv, c)))
        elif block.columns == "ones":
            terms.append((block.value, "pooled intercept"))
    if d.offset is not None:
        terms.append((f"offsets{rows}", f"offset: {d.offset} (coefficient 1)"))
    return terms


def submodel_terms(sub: SubModel) -> list[str]:
    """A sub-model's linear predictor as a sum's terms: its intercept, its pooled coefficients through its
    design matrix, its group effects gathered to the observations (times the slope's values)."""
    terms = [] if sub.intercept_level else [sub.intercept_param]  # (else it is in that level's groups' values)
    if sub.terms:
        terms.append(f"{sub.design_key} * {stack_coefficients(sub.terms)}")
    for lv in sub.levels:
        for c in lv.coefficients:
            index = f"[{lv.index_key}]" if lv.kind == "intercept" else f"[{lv.index_key}, {c.column}]"
            terms.append(f"{lv.value}{index}" + (f" .* {c.x}" if c.term is not None else ""))
    return terms


def design_segments(d: ModelDescription) -> list[tuple[str, str, str]]:
    """theta's pieces for a likelihood written with cross-products: (its index range in theta, the Stan
    vector, comment), in the column order of C (ModelDescription.design_blocks)."""
    out, before = [], []
    for block in d.design_blocks:
        start = " + ".join(before + ["1"])
        end = " + ".join(before + [block.size])
        index = start if block.size == "1" else f"{_grouped(start)}:{_grouped(end)}"
        if block.columns == "groups":
            note = f"{_group_block_note(block.level, block.coefficient)}: a column per group"
        else:
            note = "pooled intercept: a column of ones" if block.columns == "ones" else "pooled coefficients: X"
        out.append((index, block.value, note))
        before.append(block.size)
    return out


def _grouped(expr: str) -> str:
    return f"({expr})" if " " in expr else expr


@dataclass(frozen=True)
class SliceArgument:
    name: str
    argument_type: str  # its type as a function argument: "vector", "array[] int", "real", …
    # per-observation data: the function reads its rows start..end. Indexed where used, never copied into a
    # local variable: a function's local vector holds autodiff variables, and the GLM functions would then
    # differentiate with respect to y and X (measured: 3× slower)
    rows: bool = False


def sliced_likelihood(d: ModelDescription) -> tuple[SliceArgument, ...]:
    """The arguments of the likelihood on a slice of the rows (reduce_sum, threads within a chain), in the
    order the function takes them: the per-observation data the likelihood reads (the outcome, trials, the
    design matrix, each level's group index and slope values, the residual sd's group), then the parameters and
    model-block values it reads whole (each level's group values, the pooled intercept and coefficients, the
    family's auxiliary parameters). Exactly the names eta_terms and the family's log density use."""
    rows = [SliceArgument("y", d.family.outcome_argument, rows=True)]
    if d.family.takes_trials:
        rows.append(SliceArgument("trials", "array[] int", rows=True))
    if d.pooled_terms:
        rows.append(SliceArgument("X", "matrix", rows=True))
    shared = []
    for lv in d.levels:
        used = [c for c in lv.coefficients if not c.absorbed]
        if not used:
            continue
        rows.append(SliceArgument(lv.index_key, "array[] int", rows=True))
        rows += [SliceArgument(c.x, "vector", rows=True) for c in used if c.term is not None]
        shared.append(SliceArgument(lv.value, "vector" if lv.kind == "intercept" else "matrix"))
    rows += [SliceArgument(name, "array[] int", rows=True) for name in d.residuals.slice_rows()]
    if d.offset is not None:
        rows.append(SliceArgument("offsets", "vector", rows=True))
    if d.intercept and not d.intercept_absorbed:
        shared.append(SliceArgument(d.intercept_param, "real"))
    if d.pooled_terms:
        shared.append(SliceArgument("beta", "vector"))
    for aux in d.family.aux:
        vector = bool(aux.size) or d.residuals.per_value_of(aux) is not None
        shared.append(SliceArgument(d.aux_stan(aux), "vector" if vector else "real"))
    unique = {a.name: a for a in rows + shared}  # a slope's values may serve two levels
    return tuple(unique.values())


def _prior_data(arg: str, target: PriorTarget) -> str:
    return target.data_name(arg)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(_template_dir())),
        undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
        keep_trailing_newline=True, autoescape=False)
    env.filters["stack_coefficients"] = stack_coefficients
    env.filters["prior_data"] = _prior_data
    env.filters["group_mean"] = group_mean
    env.filters["eta_terms"] = eta_terms
    env.filters["design_segments"] = design_segments
    env.filters["mean_note"] = mean_note
    env.filters["sliced_likelihood"] = sliced_likelihood
    env.filters["submodel_terms"] = submodel_terms
    return env


def equations(d: ModelDescription) -> list[str]:
    """The model as equations in the program's own names, for the header comment."""
    first, lhs = d.family.header(d.outcome, d.trials)
    first = d.residuals.header_line(d.outcome, first)  # the errors' structure, in nlme's terms
    parts = ["Intercept"] if d.intercept else []
    parts += [f"beta_{t.stan} * {t.name}[i]" for t in d.terms]
    parts += [f"{d.offset}[i] (offset)"] if d.offset is not None else []
    rest = []
    for lv in d.levels:
        group = f"{lv.name}[i]"
        b = f"r_{lv.stan}" if lv.has_effects else f"u_{lv.stan}"
        for c in lv.coefficients:
            index = f"{b}[{group}]" if lv.kind == "intercept" else f"{b}[{group}, {c.column}]"
            parts.append(index if c.term is None else f"{index} * {c.term.name}[i]")
            if c.effects:
                u = f"u_{lv.stan}[j]" if lv.kind == "intercept" else f"u_{lv.stan}[j, {c.column}]"
                lhs_b = f"r_{lv.stan}[j]" if lv.kind == "intercept" else f"r_{lv.stan}[j, {c.column}]"
                effects = " + ".join(f"{e.name} * {e.predictor.name}[j]" for e in c.effects)
                rest.append(f"{lhs_b} = {effects} + {u}")
        nest = f", within {lv.parent}" if lv.parent else ""
        rest.append(f"u_{lv.stan}[j] ~ {_deviation_distribution(lv)},  j = 1..{lv.groups_key} ({lv.name} groups{nest})")
        how = ("integrated out of the likelihood, each {3} series jointly normal; b_{0} drawn in generated "
               "quantities given the data" if lv.marginal else
               "mixed: data-rich groups' intercepts b_{0} are parameters (centered), data-poor groups' are "
               "sd * standardized z_{0} (noncentered); which is which is data" if lv.mixed else
               "partial: {1} b_{0}_centered are parameters (centered), {2} standardized z_{0}_noncentered given "
               "them (noncentered)" if lv.partial else
               "centered: each group's coefficients b_{0} are parameters" if lv.centered else
               "integrated out of the model block; u_{0} drawn in generated quantities" if lv.integrated else
               "noncentered: u_{0} = sds * standardized z_{0}").format(
            lv.stan, ", ".join(c.name for c in lv.coefficients[:lv.centered_coefficients]),
            ", ".join(c.name for c in lv.coefficients[lv.centered_coefficients:]), lv.name)
        if lv.at_means:
            slopes = ", ".join(c.term.name for c in lv.coefficients if c.term is not None)
            how += f"; sampled with {slopes} centered at the mean{'s' if ',' in slopes else ''}"
        rest.append(f"  ({lv.name}: {how})")
    return [_per_observation(first, d), f"{lhs} = {' + '.join(parts) or '0'}", *rest, *_submodel_equations(d)]


def _per_observation(line: str, d: ModelDescription) -> str:
    """The outcome's distribution with each parameter that has a sub-model as a value per observation."""
    for sub in d.submodels:
        line = re.sub(rf"\b{re.escape(sub.aux.name)}\b(?!\[)", f"{sub.aux.name}[i]", line)
    return line


def _deviation_distribution(lv: LevelDescription) -> str:
    """The header's distribution of a level's deviations u."""
    return {"intercept": f"normal(0, sd_{lv.stan})",
            "independent": f"normal(0, sd_{lv.stan}) independently",
            "correlated": f"multi_normal(0, diag(sd_{lv.stan}) * corr_{lv.stan} * diag(sd_{lv.stan}))"}[lv.kind]


def _submodel_equations(d: ModelDescription) -> list[str]:
    """Each sub-model's linear predictor and its levels' effects, in the program's names."""
    out = []
    for sub in d.submodels:
        name = sub.aux.name
        parts = [] if sub.intercept_level else [f"Intercept_{name}"]
        parts += [f"beta_{t.stan} * {t.name}[i]" for t in sub.terms]
        levels = []
        for lv in sub.levels:
            for c in lv.coefficients:
                index = f"u_{lv.stan}[{lv.name}[i]]" if lv.kind == "intercept" else f"u_{lv.stan}[{lv.name}[i], {c.column}]"
                if lv.centered:  # (its groups' values include the sub-model's intercept)
                    index = f"b_{lv.stan}[{lv.name}[i]]"
                parts.append(index if c.term is None else f"{index} * {c.term.name}[i]")
            if lv.centered:  # around the sub-model's intercept when this level took it, else around 0
                mean = f"Intercept_{name}" if lv.name == sub.intercept_level else "0"
                levels.append(f"b_{lv.stan}[j] ~ normal({mean}, sd_{lv.stan}),  j = 1..{lv.groups_key} "
                              f"({lv.name} groups; centered)")
            else:
                levels.append(f"u_{lv.stan}[j] ~ {_deviation_distribution(lv)},  j = 1..{lv.groups_key} "
                              f"({lv.name} groups; noncentered)")
        out += [f"{sub.aux.link}({name}[i]) = {' + '.join(parts)}  ({sub.aux.meaning}: its sub-model)", *levels]
    return out


def with_comment_text(value):
    """The description with every string in it passed through names.comment_text. The program is rendered
    from this copy only, so no user text (a column, level or term name) reaches the program except inside a
    comment, whatever the templates do with it. Stan names and expressions in the description are built from
    sanitized identifiers, which comment_text leaves as they are, and it keeps different texts different."""
    if isinstance(value, str):
        return comment_text(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.replace(value, **{f.name: with_comment_text(getattr(value, f.name))
                                             for f in dataclasses.fields(value) if f.init})
    if isinstance(value, (tuple, list, frozenset, set)):
        return type(value)(with_comment_text(v) for v in value)
    return value


def render(desc: ModelDescription) -> str:
    """The Stan program for a model description."""
    desc = with_comment_text(desc)
    template = environment().get_template("program.stan.j2")
    # the spec's name stays out of the program: it is no part of the structure, and the text is the cache key
    title = f"A {desc.family} multilevel model" if desc.levels else f"A {desc.family} model"
    return template.render(d=desc, priors=prior_targets(desc), link=desc.family.stan_link, title=title,
                           equations=equations(desc),
                           has_generated=desc.intercept_centered or bool(desc.centered_aux) or bool(desc.levels)
                           or bool(desc.generated) or bool(desc.submodels))
