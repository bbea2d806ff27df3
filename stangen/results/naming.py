"""Stan's variables in the spec's terms: every variable's dimensions and coordinates, the display names of the
population-level parameters (Naming), and a backend's draws as ArviZ InferenceData."""
from __future__ import annotations

from dataclasses import dataclass, field

import arviz as az
import numpy as np

from ..compiler.model import ModelDescription
from ..compiler.program import StanProgram
from ..compiler.standata import PreparedData
from ..run.backends import Draws


@dataclass
class Naming:
    """Dimensions and coordinates of every Stan variable, and the display names of population-level ones."""

    dims: dict[str, list[str]] = field(default_factory=dict)
    coords: dict[str, list[str]] = field(default_factory=dict)
    population: list[tuple[str, str]] = field(default_factory=list)  # (display name, "var" or "var[i]" selector)


def naming(desc: ModelDescription, prepared: PreparedData) -> Naming:
    n = Naming()
    if desc.intercept:
        n.population.append(("Intercept", "Intercept"))
    for term in desc.terms:
        names = prepared.columns[term.name]
        if term.categorical:
            dim = f"{term.stan}_coef"
            n.coords[dim] = names
            for var in {f"beta_{term.stan}", term.param}:
                n.dims[var] = [dim]
            n.population += [(name, f"beta_{term.stan}[{i}]") for i, name in enumerate(names)]
        else:
            n.population.append((names[0], f"beta_{term.stan}"))
    many_levels = sum(lv.has_effects for lv in desc.levels) > 1
    for lv in desc.all_levels:
        coef_dim, group_dim = f"{lv.stan}_coef", lv.stan
        n.coords[coef_dim] = [c.name for c in lv.coefficients]
        n.coords[group_dim] = prepared.labels[lv.name]
        for c in lv.coefficients:
            for e in c.effects:
                names = prepared.group_columns[(lv.name, e.predictor.name)]
                suffix = f" ({lv.name})" if many_levels else ""
                shown = [nm if c.term is None else f"{c.term.name}:{nm}" for nm in names]
                if e.predictor.categorical:
                    dim = f"{e.name}_coef"
                    n.coords[dim] = shown
                    n.dims[e.name] = n.dims[e.param] = [dim]
                    n.population += [(s + suffix, f"{e.name}[{i}]") for i, s in enumerate(shown)]
                else:
                    n.population.append((shown[0] + suffix, e.name))
        if lv.kind == "intercept":
            for var in ("z", "u", "b"):
                n.dims[f"{var}_{lv.stan}"] = [group_dim]
        else:
            for var in {f"sd_{lv.stan}", lv.sd}:
                n.dims[var] = [coef_dim]
            for var in (f"u_{lv.stan}", f"b_{lv.stan}"):
                n.dims[var] = [group_dim, coef_dim]
            if lv.kind == "correlated":
                n.coords[f"{coef_dim}_bis"] = n.coords[coef_dim]
                n.dims[f"z_{lv.stan}"] = [coef_dim, group_dim]
                for var in {f"L_{lv.stan}", lv.L, f"corr_{lv.stan}"}:
                    n.dims[var] = [coef_dim, f"{coef_dim}_bis"]
            else:
                n.dims[f"z_{lv.stan}"] = [group_dim, coef_dim]
    for lv in desc.levels:
        for k, c in enumerate(lv.coefficients):
            sel = f"sd_{lv.stan}" if lv.kind == "intercept" else f"sd_{lv.stan}[{k}]"
            n.population.append((f"sd({lv.name}: {c.name})", sel))
        if lv.kind == "correlated":
            for a in range(lv.n_coef):
                for b in range(a + 1, lv.n_coef):
                    n.population.append((f"cor({lv.name}: {lv.coefficients[a].name}, {lv.coefficients[b].name})",
                                         f"corr_{lv.stan}[{a},{b}]"))
    res = desc.residuals
    for aux in desc.family.aux:
        sub = desc.submodel(aux)
        if sub is not None:
            _submodel_names(n, sub, prepared)
        elif res.per_value_of(aux):  # one value per value of a column (residuals: sd_by)
            n.coords[f"{aux.name}_by"] = list(prepared.sigma_labels)
            n.dims[aux.name] = [f"{aux.name}_by"]
            n.population += [(res.value_name(aux, label), f"{aux.name}[{k}]")
                             for k, label in enumerate(prepared.sigma_labels)]
        elif aux.size:  # a vector: its elements by label (an ordinal model's cutpoints: cutpoint[1|2], …)
            labels = desc.family.aux_labels(prepared.outcome_categories)
            n.coords[f"{aux.name}_dim"] = labels
            for var in {aux.name, desc.aux_stan(aux)}:
                n.dims[var] = [f"{aux.name}_dim"]
            n.population += [(f"{aux.shown}[{label}]", f"{aux.name}[{k}]") for k, label in enumerate(labels)]
        else:
            n.population.append((aux.name, aux.name))
    n.population += res.own_parameters()
    return n


def submodel_name(sub, name: str) -> str:
    """A sub-model's coefficient as summaries show it, brms's way: 'zi_Intercept', 'zi_minedno', 'sigma_Days';
    its level's varying coefficient: 'zi_intercept' in 'sd(site: zi_intercept)'."""
    return f"{sub.stan}_{name}"


def _submodel_names(n: Naming, sub, prepared: PreparedData) -> None:
    """A sub-model's population-level names: its intercept, coefficients, then its levels' sds and
    correlations (the dims of its levels' variables are set with the model's levels)."""
    n.population.append((submodel_name(sub, "Intercept"), sub.intercept_name))
    for term in sub.terms:
        names = prepared.columns[term.columns_key]
        if term.categorical:
            dim = f"{term.stan}_coef"
            n.coords[dim] = names
            n.dims[term.param] = [dim]
            n.population += [(submodel_name(sub, name), f"{term.param}[{i}]") for i, name in enumerate(names)]
        else:
            n.population.append((submodel_name(sub, names[0]), term.param))
    for lv in sub.levels:
        for k, c in enumerate(lv.coefficients):
            sel = lv.sd if lv.kind == "intercept" else f"{lv.sd}[{k}]"
            n.population.append((f"sd({lv.name}: {submodel_name(sub, c.name)})", sel))
        if lv.kind == "correlated":
            for a in range(lv.n_coef):
                for b in range(a + 1, lv.n_coef):
                    n.population.append((f"cor({lv.name}: {submodel_name(sub, lv.coefficients[a].name)}, "
                                         f"{submodel_name(sub, lv.coefficients[b].name)})", f"corr_{lv.stan}[{a},{b}]"))


# optional generated quantities (model.GENERATED) → the InferenceData group that holds them, as `y`
GENERATED_GROUPS = {"y_rep": "posterior_predictive", "log_lik": "log_likelihood"}


def to_inference_data(program: StanProgram, draws: Draws) -> az.InferenceData:
    """Draws → InferenceData. Parameters go to `posterior`; the optional generated quantities go to their own
    groups under the outcome's name `y`, like `observed_data` (dims chain, draw, obs): y_rep (draws of the
    outcome) to `posterior_predictive`, log_lik (pointwise log-likelihood) to `log_likelihood`."""
    names = naming(program.description, program.data)
    stats = dict(draws.sample_stats)
    if "n_leapfrog" in stats:
        stats["n_steps"] = stats.pop("n_leapfrog")
    y = np.asarray(program.stan_data["y"])
    variables = dict(draws.variables)
    groups = {}
    for var in program.description.generated:
        values = variables.pop(var)
        if var == "y_rep" and np.issubdtype(y.dtype, np.integer) and np.isfinite(values).all():
            values = values.astype(y.dtype)  # counts stay counts (a draw that failed in Stan is NaN: left float)
        groups[GENERATED_GROUPS[var]] = {"y": values}
    dims = {k: v for k, v in names.dims.items() if k in variables} | {"y": ["obs"]}
    return az.from_dict(posterior=variables, sample_stats=stats, observed_data={"y": y}, **groups,
                        coords=names.coords, dims=dims)


def prior_names(target, desc: ModelDescription, data: PreparedData) -> list[str]:
    """The display names of a prior target's elements (compiler.model.PriorTarget): one per number it is on."""
    sub = target.submodel
    if sub is not None:  # a sub-model's: named as its summary rows (zi_Intercept, zi_minedno, sd(site: zi_intercept))
        if target.role == "intercept":
            return [submodel_name(sub, "Intercept") + (" (at its predictors' means)" if sub.intercept_centered else "")]
        if target.role == "term":
            cols = data.columns.get(target.term.columns_key, [target.term.name])
            return [submodel_name(sub, c) for c in cols]
        if target.role == "sd":
            return [f"sd({target.level.name}: {submodel_name(sub, c.name)})" for c in target.level.coefficients]
        return [f"cor({target.level.name}: {', '.join(submodel_name(sub, c.name) for c in target.level.coefficients)})"]
    role = target.role
    if role == "intercept":
        return ["Intercept" + (" (at the predictors' means)" if target.param.endswith("_centered") else "")]
    if role == "term":
        cols = data.columns.get(target.term.name, [target.term.name]) if target.vector else [target.term.name]
        note = " (at the group-level predictors' means)" if target.term.centered_slope else ""
        return [c + note for c in cols]
    if role == "effect":
        c, pred = target.coefficient, target.effect.predictor
        cols = data.group_columns.get((target.level.name, pred.name), [pred.name]) if target.vector else [pred.name]
        shown = [col if c.term is None else f"{c.term.name}:{col}" for col in cols]
        on = "intercept" if c.term is None else f"{c.name} slope"
        return [f"{s} (on the {target.level.name} {on})" for s in shown]
    if role == "aux" and target.aux.size:
        labels = desc.family.aux_labels(data.outcome_categories)
        note = " (at the predictors' means)" if target.param.endswith("_centered") else ""
        return [f"{target.aux.shown}[{label}]{note}" for label in labels] or [target.aux.name]
    if role == "aux":
        each = f" (each of {', '.join(data.sigma_labels)})" if desc.residuals.per_value_of(target.aux) else ""
        return [target.aux.name + each]
    if role == "sd":
        note = " (at the slope predictors' means)" if target.param.endswith("_at_mean") else ""
        return [f"sd({target.level.name}: {c.name}){note}" for c in target.level.coefficients]
    if role == "correlation":
        return [f"cor({target.level.name}: {', '.join(c.name for c in target.level.coefficients)})"]
    return [target.key]
