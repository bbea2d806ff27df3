"""Tables of a fit in the spec's terms: the full summary, the population-level table, lme4's printout,
and the lme4/brms accessors fixef, ranef, coef and varcorr.

Display names:
    Intercept, Days, period2            population-level coefficients (original scale)
    schavg, standLRT:schavg             effects of group-level predictors (on the intercept / on a slope)
    sd(school: intercept)               sd of a varying coefficient
    cor(school: intercept, iq_verb)     correlation of two varying coefficients
    sigma                               residual sd (gaussian)
    school[17]: intercept               deviation u of group 17 from its predicted coefficient
"""
from __future__ import annotations

from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from ..compiler.peers import formula, submodel_formula
from ..spec.validate import INTERCEPT
from .diagnostics import diagnostics
from .multilevel import design_effects

if TYPE_CHECKING:
    from ..fitting import Fit

DEFAULT_QUANTILES = (0.025, 0.5, 0.975)


def quantile_name(q: float) -> str:
    return f"q{100 * q:g}%"


def group_effect_selectors(fit: "Fit") -> dict[str, str]:
    """'school[17]: intercept' → 'u_school[16,0]' for every group and varying coefficient."""
    out = {}
    for lv in fit.description.levels:
        labels = fit.program.data.labels[lv.name]
        for j, label in enumerate(labels):
            for k, c in enumerate(lv.coefficients):
                sel = f"u_{lv.stan}[{j}]" if lv.kind == "intercept" else f"u_{lv.stan}[{j},{k}]"
                out[f"{lv.name}[{label}]: {c.name}"] = sel
    return out


def stack(fit: "Fit", selectors: dict[str, str]) -> np.ndarray:
    """Draws of the selected parameters as one array (chains, draws, parameters)."""
    return np.stack([fit.draws_of(s) for s in selectors.values()], axis=-1)


def describe_draws(draws: np.ndarray, names: list[str], quantiles=DEFAULT_QUANTILES) -> pd.DataFrame:
    """mean, sd, quantiles, mcse_mean, ess_bulk, ess_tail, r_hat per parameter (the diagnostics as ArviZ
    computes them: stangen/results/diagnostics.py)."""
    flat = draws.reshape(-1, draws.shape[-1])
    table = pd.DataFrame(index=pd.Index(names, name="parameter"))
    table["mean"] = flat.mean(axis=0)
    table["sd"] = flat.std(axis=0, ddof=1)
    for q in quantiles:
        table[quantile_name(q)] = np.quantile(flat, q, axis=0)
    found = diagnostics(draws)  # ArviZ's numbers, for every parameter at once
    for name in ("mcse_mean", "ess_bulk", "ess_tail", "r_hat"):
        table[name] = found[name]
    return table


def population(fit: "Fit", quantiles=DEFAULT_QUANTILES) -> pd.DataFrame:
    """Population-level parameters: coefficients, group-level predictor effects, sds, correlations, sigma."""
    selectors = fit.parameters()
    return describe_draws(stack(fit, selectors), list(selectors), quantiles)


def summary(fit: "Fit", quantiles=DEFAULT_QUANTILES, group_effects: bool = True) -> pd.DataFrame:
    """Every parameter people read: the population-level ones, then each group's deviations."""
    selectors = dict(fit.parameters())
    if group_effects:
        selectors |= group_effect_selectors(fit)
    return describe_draws(stack(fit, selectors), list(selectors), quantiles)


def to_markdown(table: pd.DataFrame, digits: int = 3) -> str:
    """A pipe table (no extra dependency)."""
    frame = table.reset_index()
    cells = [[_fmt(v, digits) for v in row] for row in frame.itertuples(index=False)]
    header = [str(c) for c in frame.columns]
    lines = ["| " + " | ".join(header) + " |", "|" + "|".join("---" for _ in header) + "|"]
    lines += ["| " + " | ".join(row) + " |" for row in cells]
    return "\n".join(lines) + "\n"


def _fmt(value, digits: int) -> str:
    if isinstance(value, (float, np.floating)):
        if not np.isfinite(value):
            return str(value)
        return f"{value:.{digits}f}" if abs(value) < 1e5 else f"{value:.{digits}g}"
    return str(value)


# -- lme4/brms accessors ------------------------------------------------------------------------

def _interval(draws: np.ndarray, prob: float = 0.95) -> dict[str, float]:
    flat = draws.reshape(-1)
    low = (1 - prob) / 2
    return {"Estimate": flat.mean(), "Est.Error": flat.std(ddof=1),
            f"Q{100 * low:g}": np.quantile(flat, low), f"Q{100 * (1 - low):g}": np.quantile(flat, 1 - low)}


def population_coefficients(description, parameters: dict[str, str]) -> dict[str, str]:
    """Of a model's population-level parameters (display name → Stan selector, as Fit.parameters() gives
    them), the coefficients and group-level effects: not the sds, correlations, the family's own parameters
    (sigma, phi, nu, shape) or the residuals' phi — told apart by the Stan variable, not the display name."""
    not_coefficients = {a.name for a in description.family.aux} | {"phi"}
    return {name: sel for name, sel in parameters.items()
            if not sel.startswith(("sd_", "corr_")) and sel.partition("[")[0] not in not_coefficients}


def fixef(fit: "Fit", prob: float = 0.95) -> pd.DataFrame:
    """Population-level coefficients (like brms::fixef): Estimate, Est.Error and the interval."""
    rows = {name: _interval(fit.draws_of(sel), prob) for name, sel in population_coefficients(fit.description, fit.parameters()).items()}
    return pd.DataFrame.from_dict(rows, orient="index").rename_axis("coefficient")


def ranef(fit: "Fit") -> dict[str, pd.DataFrame]:
    """Each level's group deviations u (posterior means), groups × varying coefficients, like lme4::ranef."""
    out = {}
    for lv in fit.description.levels:
        values = fit.posterior[f"u_{lv.stan}"].mean(dim=("chain", "draw")).values
        values = values.reshape(len(fit.program.data.labels[lv.name]), lv.n_coef)
        out[lv.name] = pd.DataFrame(values, index=pd.Index(fit.program.data.labels[lv.name], name=lv.name),
                                    columns=[c.name for c in lv.coefficients])
    return out


def coefficient_draws(fit: "Fit", level_name: str) -> np.ndarray:
    """Draws (chains, draws, groups, coefficients) of each group's own coefficients: the population value,
    plus the group-level predictors' effects at the group's (uncentered) values, plus the deviation u."""
    lv = fit.description.level(level_name)
    data = fit.program.stan_data
    u = fit.posterior[f"u_{lv.stan}"].values
    u = u.reshape(*u.shape[:2], -1, lv.n_coef)
    total = u.copy()
    for k, c in enumerate(lv.coefficients):
        if c.term is None:
            base = fit.draws_of("Intercept") if fit.description.intercept else 0.0
        else:
            base = fit.draws_of(f"beta_{c.term.stan}")
            if c.term.categorical:  # not reachable: categorical slopes are rejected by describe()
                raise ValueError("categorical varying slopes are not supported")
        total[..., k] += np.asarray(base)[..., None] if np.ndim(base) else base
        for e in c.effects:
            w = np.asarray(data[e.predictor.data], dtype=float)
            center = np.asarray(data[e.predictor.center_key], dtype=float)
            raw = w + center
            gamma = fit.posterior[e.name].values
            if e.predictor.categorical:
                total[..., k] += np.einsum("cdp,jp->cdj", gamma, raw.reshape(len(raw), -1))
            else:
                total[..., k] += gamma[..., None] * raw[None, None, :]
    return total


def coef(fit: "Fit") -> dict[str, pd.DataFrame]:
    """Each group's own coefficients (posterior means), like lme4::coef: population + group-level + deviation."""
    out = {}
    for lv in fit.description.levels:
        means = coefficient_draws(fit, lv.name).mean(axis=(0, 1))
        out[lv.name] = pd.DataFrame(means, index=pd.Index(fit.program.data.labels[lv.name], name=lv.name),
                                    columns=[c.name for c in lv.coefficients])
    return out


def varcorr(fit: "Fit") -> pd.DataFrame:
    """Variance components (posterior means): group, name, name2 (correlations), variance, sd, cor."""
    rows = []
    for lv in fit.description.levels:
        names = [c.name for c in lv.coefficients]
        sd = fit.posterior[f"sd_{lv.stan}"].values.reshape(*fit.posterior[f"sd_{lv.stan}"].shape[:2], -1)
        for k, name in enumerate(names):
            rows.append({"group": lv.name, "name": name, "name2": None, "variance": float((sd[..., k] ** 2).mean()),
                         "sd": float(sd[..., k].mean()), "cor": None})
        if lv.kind == "correlated":
            corr = fit.posterior[f"corr_{lv.stan}"].values
            for a in range(lv.n_coef):
                for b in range(a + 1, lv.n_coef):
                    rows.append({"group": lv.name, "name": names[a], "name2": names[b], "variance": None,
                                 "sd": None, "cor": float(corr[..., a, b].mean())})
    if fit.description.family.residual_sd in fit.description.scalar_aux:  # (not with a sub-model for sigma)
        sigma = fit.posterior[fit.description.family.residual_sd.name].values
        by = fit.description.residuals.per_value_of(fit.description.family.residual_sd)
        if by is not None:  # residuals: sd_by — one row per value
            for k, label in enumerate(fit.program.data.sigma_labels):
                rows.append({"group": "Residual", "name": f"{by}: {label}", "name2": None,
                             "variance": float((sigma[..., k] ** 2).mean()), "sd": float(sigma[..., k].mean()),
                             "cor": None})
        else:
            rows.append({"group": "Residual", "name": None, "name2": None, "variance": float((sigma ** 2).mean()),
                         "sd": float(sigma.mean()), "cor": None})
    return pd.DataFrame(rows)


def _design_effect_lines(fit: "Fit", n: int) -> list[str]:
    """'Design effect: school 2.31 [2.05, 2.60] (effective N 1020 of 2287)' and, with AR errors, the effective
    observations per series (stangen.results.multilevel.design_effects)."""

    draws = design_effects(fit)
    parts = []
    for lv in fit.description.levels:
        deff = draws.get(f"design effect({lv.name})")
        if deff is not None and np.isfinite(deff).any():  # over the draws where it is defined
            deff, eff_n = deff[np.isfinite(deff)], draws[f"effective N({lv.name})"]
            lo, hi = np.quantile(deff, [0.025, 0.975])
            parts.append(f"{lv.name} {deff.mean():.2f} [{lo:.2f}, {hi:.2f}] "
                         f"(effective N {np.nanmean(eff_n):.0f} of {n})")
    lines = [f"Design effect: {'; '.join(parts)}"] if parts else []
    return lines + fit.description.residuals.effective_observation_lines(draws, fit.program.stan_data, n) + \
        _r_squared_lines(fit)


def _r_squared_lines(fit: "Fit") -> list[str]:
    """'R2: marginal 0.36 [0.30, 0.41], conditional 0.45 [0.41, 0.50] (Nakagawa); Bayes R2 0.47 [0.45, 0.49]',
    from the fit's quantities table (computed once per fit: the report shows it too)."""
    table = fit.table("quantities")

    def shown(name: str) -> str:
        row = table.loc[name]
        return f"{row['mean']:.2f} [{row['q2.5%']:.2f}, {row['q97.5%']:.2f}]"
    parts = ([f"marginal {shown('R2 marginal')}, conditional {shown('R2 conditional')} (Nakagawa)"]
             if "R2 marginal" in table.index else []) + [f"Bayes R2 {shown('Bayes R2')}"]
    return [f"R2: {'; '.join(parts)}"]


def _auxiliary_text(fit: "Fit", digits: int = 3) -> list[str]:
    """The family's parameters other than a residual sd in their own block, as glmmTMB prints
    'Dispersion parameter for nbinom2 family': name, meaning, posterior mean and 95% interval."""
    family = fit.description.family
    others = [a for a in fit.description.scalar_aux if a is not family.residual_sd]
    lines = []
    for aux in others:
        draws = fit.posterior[aux.name].values
        if aux.size:  # a vector, by label: an ordinal model's cutpoints, as clmm's "Threshold coefficients"
            labels = family.aux_labels(fit.program.data.outcome_categories)
            draws = draws.reshape(-1, len(labels))
            lines += ["", f"Family parameters ({family} family): {aux.name}, the {aux.meaning}, where all "
                          "predictors are 0 (posterior mean, 95% interval):"]
            rows = []
            for k, label in enumerate(labels):
                lo, hi = np.quantile(draws[:, k], [0.025, 0.975])
                rows.append((f"{label}", f"{draws[:, k].mean():.{digits}f}", f"[{lo:.{digits}f}, {hi:.{digits}f}]"))
            lines += _columns(rows, left=1)
            continue
        lo, hi = np.quantile(draws, [0.025, 0.975])
        lines += ["", f"Family parameter ({family} family): {aux.name}, the {aux.meaning}",
                  f"  {aux.name} {draws.mean():.{digits}f} [{lo:.{digits}f}, {hi:.{digits}f}]"]
    return lines


def residual_structure_text(fit: "Fit", digits: int = 3) -> list[str]:
    """nlme's blocks for the errors' structure: 'Correlation Structure' (phi) and 'Variance function'
    (each value's sd relative to the first's); [] for independent errors with one sd."""
    return fit.description.residuals.printout(fit.posterior, fit.program.data.sigma_labels, digits, _columns)


# -- lme4's printout --------------------------------------------------------------------------

def lme4_formula(fit: "Fit") -> str:
    """The model in lme4 syntax, e.g. 'Reaction ~ Days + (Days | Subject)' (stangen.compiler.peers.formula)."""
    return formula(fit.description)


def lme4_text(fit: "Fit", digits: int = 3) -> str:
    """The fit printed the way lme4's summary() prints a model, with posterior means and intervals."""
    d = fit.description
    info = fit.info.get("settings", {})
    chains, draws = fit.posterior.sizes["chain"], fit.posterior.sizes["draw"]
    lines = [f"Bayesian multilevel model ({d.family}{'' if d.family.link == 'identity' else ', ' + d.family.link + ' link'})"
             f" fitted with Stan ({fit.info.get('backend', '?')}, NUTS: {chains} chains x {draws} draws"
             f"{', warmup ' + str(info['warmup']) if 'warmup' in info else ''})",
             f"Formula: {lme4_formula(fit)}"]
    lines += [f"Offset: {d.offset} (added to the linear predictor, coefficient 1)"] if d.offset else []
    if d.censoring:
        lines.append(f"{d.censoring.counts(fit.program.data.stan_data)} rows ('{d.censoring.column}')")
    if d.truncation:
        lines.append(f"Truncated: {d.outcome} in {d.truncation.text()} (each density over the range's probability)")
    if d.weights:
        weights = np.asarray(fit.program.data.stan_data["weights"], dtype=float)
        lines.append(f"Weights: {d.weights} (likelihood weights: each row's log density times its weight; "
                     f"sum {weights.sum():g} over {len(weights)} rows)")
    lines += [f"{sub.aux.sub_model_title.removesuffix(' model')}: {sub.stan} {submodel_formula(d, sub)}"
              for sub in d.submodels]
    lines += ["", "Random effects (posterior means):"]
    vc = varcorr(fit)
    rows = [("Groups", "Name", "Variance", "Std.Dev.", "Corr")]
    for lv in d.levels:
        sub = vc[vc.group == lv.name]
        singles = sub[sub.name2.isna()]
        cors = sub[sub.name2.notna()]
        for i, row in enumerate(singles.itertuples()):
            corr = [f"{c.cor:.2f}" for c in cors.itertuples() if c.name2 == row.name]
            rows.append((lv.name if i == 0 else "", _lme4_name(row.name), f"{row.variance:.{digits}f}",
                         f"{row.sd:.{digits}f}", " ".join(corr)))
    for i, r in enumerate(vc[vc.group == "Residual"].itertuples()):  # one row, or one per value of sd_by
        rows.append(("Residual" if i == 0 else "", r.name if isinstance(r.name, str) else "",
                     f"{r.variance:.{digits}f}", f"{r.sd:.{digits}f}", ""))
    lines += _columns(rows)
    n = fit.program.data.n
    groups = ", ".join(f"{lv.name}, {len(fit.program.data.labels[lv.name])}" for lv in d.levels)
    dropped = f" ({fit.program.data.dropped.note()})" if fit.program.data.dropped else ""
    lines.append(f"Number of obs: {n}{dropped}" + (f", groups:  {groups}" if groups else ""))
    lines += _design_effect_lines(fit, n)
    if fit.program.parameterization:
        choices = fit.program.parameterization
        line = "Sampled: " + ", ".join(c.label + (
            " (auto, undecided)" if c.undecided else " (auto)" if c.how == "auto" else "") for c in choices)
        adapt_delta = ((fit.info or {}).get("settings") or {}).get("adapt_delta")
        subs = [f"{sub.stan}'s {lv.name} {'centered' if lv.centered else 'noncentered'}"
                for sub in d.submodels for lv in sub.levels]
        if subs:  # a sub-model's levels (centered where the median group is data-rich)
            line += ", " + ", ".join(subs)
        if any(c.undecided or c.few_groups for c in choices) and adapt_delta is not None:
            line += f"; adapt_delta {adapt_delta:g}"
        lines.append(line)
    lines += residual_structure_text(fit, digits)
    lines += _auxiliary_text(fit, digits)
    lines += ["", "Fixed effects:"]
    fe = fixef(fit)
    own = [name for name in fe.index if name not in submodel_parameters(fit)]
    rows = [("", "Estimate", "Est.Error", "l-95% CI", "u-95% CI")]
    for name, row in fe.loc[own].iterrows():
        rows.append((_lme4_name(name), *(f"{v:.{digits}f}" for v in row.values)))
    lines += _columns(rows, left=1)
    lines += _submodel_text(fit, digits)
    return "\n".join(lines) + "\n"


def submodel_parameters(fit: "Fit", sub=None) -> dict[str, str]:
    """The population-level parameters (display name → selector) of a sub-model (`parameters:`), or of all."""
    subs = fit.description.submodels if sub is None else (sub,)
    variables = {v for s in subs for v in [s.intercept_name, *(t.param for t in s.terms),
                                           *(lv.sd for lv in s.levels), *(f"corr_{lv.stan}" for lv in s.levels)]}
    return {name: sel for name, sel in fit.parameters().items() if sel.partition("[")[0] in variables}


def _submodel_text(fit: "Fit", digits: int) -> list[str]:
    """glmmTMB's blocks for the sub-models ('Zero-inflation model', 'Dispersion model'): each coefficient on
    the link scale, then the sds (and correlations) of its group effects."""
    lines = []
    for sub in fit.description.submodels:
        lines += ["", f"{sub.aux.sub_model_title} ({sub.stan}, the {sub.aux.meaning}; {sub.link} link; "
                      "posterior means):"]
        rows = [("", "Estimate", "Est.Error", "l-95% CI", "u-95% CI")]
        for name, sel in submodel_parameters(fit, sub).items():
            values = _interval(fit.draws_of(sel))
            shown = name.removeprefix(f"{sub.stan}_") if name.startswith(f"{sub.stan}_") else name
            rows.append((_lme4_name(shown), *(f"{v:.{digits}f}" for v in values.values())))
        lines += _columns(rows, left=1)
    return lines


def _lme4_name(name) -> str:
    return "(Intercept)" if name in (INTERCEPT, "Intercept") else str(name)


def _columns(rows, left: int = 2) -> list[str]:
    widths = [max(len(str(r[i])) for r in rows) for i in range(len(rows[0]))]
    out = []
    for r in rows:
        cells = [str(c).ljust(w) if i < left else str(c).rjust(w) for i, (c, w) in enumerate(zip(r, widths))]
        out.append(" " + " ".join(cells).rstrip())
    return out
