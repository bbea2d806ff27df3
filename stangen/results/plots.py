"""Plots of a fit as PNG files, in the spec's terms. Each function takes a Fit and an output path and returns
the path written (or None when the plot does not apply to the fit).

    trace(fit, "plots/trace.png")                    hyperparameters: chains over draws, and their densities
    caterpillar(fit, "school", "plots/cat.png")      each group's deviation u, sorted, with 50% and 95% intervals
    pairs(fit, "plots/pairs.png")                    intercept, sds, correlations, sigma; divergences in red
    ppc(fit, "plots/ppc.png")                        observed outcome vs. posterior predictive draws
    prior_posterior(fit, "plots/prior.png")          each population-level parameter's prior and posterior
    effects.plot_effects(fit, "x", "plots/e.png")    expected outcome against a predictor (results/effects.py)
    all_plots(fit, "run/plots")                      all of them: {name: path or None}, with notes on skipped ones

Figures are drawn and saved as stangen.results.figures says (Agg unless pyplot is set up; closed after saving).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable

import arviz as az
import numpy as np
import xarray as xr

from .effects import numeric_predictors, plot_effects
from .figures import plt, quiet, save, title
from .prior_check import prior_and_posterior
from .tables import coefficient_draws

if TYPE_CHECKING:
    from ..fitting import Fit

MAX_TRACE = 40  # population-level parameters in the trace plot
MAX_PAIRS = 8  # hyperparameters in the pairs plot
MAX_LABELS = 45  # group labels per caterpillar panel; more groups: every k-th label
PPC_DRAWS = 100
EFFECT_GROUPS = 25  # sampled groups' lines in the report's effects plot (the lecture's 25 girls)
ENABLE_PPC = "stangen fit SPEC --generated y_rep"


def _hyper_names(fit: "Fit") -> list[str]:
    return list(fit.parameters())


def _is_variance_part(name: str) -> bool:
    return name.startswith(("sd(", "cor(")) or name == "sigma"


def _named_idata(fit: "Fit", names: list[str]) -> az.InferenceData:
    """The selected population-level parameters under their display names, with the sampler's statistics."""
    selectors = fit.parameters()
    post = fit.posterior
    coords = {"chain": post["chain"].values, "draw": post["draw"].values}
    data = xr.Dataset({name: (("chain", "draw"), fit.draws_of(selectors[name])) for name in names}, coords=coords)
    groups = {"posterior": data}
    if "sample_stats" in fit.idata.groups():
        groups["sample_stats"] = fit.idata.sample_stats
    return az.InferenceData(**groups)


# -- trace ------------------------------------------------------------------------------------

@quiet
def trace(fit: "Fit", path: str | Path) -> Path:
    """Trace and density of every population-level parameter (intercept, coefficients, group-level predictor
    effects, sds, correlations, sigma), titled by its display name; divergent draws as red ticks."""
    every = _hyper_names(fit)
    names = every[:MAX_TRACE]
    idata = _named_idata(fit, names)
    n = len(names)
    with az.rc_context({"plot.max_subplots": 2 * n + 2}):
        axes = az.plot_trace(idata, var_names=names, compact=False, divergences="bottom",
                             figsize=(11, 1.7 * n + 0.6), backend_kwargs={"layout": "constrained"})
    axes = np.atleast_2d(axes)
    for row, name in zip(axes, names):
        row[0].set_title(f"{name}: density by chain", fontsize=10)
        row[1].set_title(f"{name}: draws by chain", fontsize=10)
        for ax in row:
            ax.tick_params(labelsize=8)
    fig = axes.flat[0].figure
    shown = f" (the first {len(names)} of {len(every)})" if len(names) < len(every) else ""
    fig.suptitle(f"{title(fit)}: population-level parameters{shown}", fontsize=12)
    return save(fig, path)


# -- caterpillar ------------------------------------------------------------------------------

@quiet
def caterpillar(fit: "Fit", level: str, path: str | Path, scale: str = "deviation") -> Path:
    """One panel per varying coefficient of `level`: each group's posterior mean, 50% and 95% intervals, groups
    sorted by their mean. scale="deviation": the deviation u from the group's predicted coefficient (lme4's
    ranef; 0 = as predicted); scale="coefficient": the group's own coefficient (population value + group-level
    predictors + u, like lme4's coef). With many groups only every k-th label is written."""
    lv = fit.description.level(level)
    labels = [str(x) for x in fit.program.data.labels[lv.name]]
    if scale == "coefficient":
        draws = coefficient_draws(fit, lv.name)
    elif scale == "deviation":
        draws = fit.posterior[f"u_{lv.stan}"].values
    else:
        raise ValueError(f"scale must be 'deviation' or 'coefficient', not {scale!r}")
    draws = draws.reshape(-1, len(labels), lv.n_coef)  # (draws, groups, coefficients)
    n_groups, n_coef = len(labels), lv.n_coef
    height = min(max(2.8, 0.17 * n_groups + 1.6), 12 if n_coef == 1 else 15)
    fig, axes = plt.subplots(1, n_coef, figsize=(max(6.0, 4.6 * n_coef), height), squeeze=False,
                             layout="constrained")
    step = max(1, math.ceil(n_groups / MAX_LABELS))
    for k, coef in enumerate(lv.coefficients):
        ax = axes[0, k]
        x = draws[..., k]
        mean = x.mean(axis=0)
        q = np.quantile(x, [0.025, 0.25, 0.75, 0.975], axis=0)
        order = np.argsort(mean)
        pos = np.arange(n_groups)
        reference = 0.0 if scale == "deviation" else float(np.mean(mean))
        away = (q[0] > reference) | (q[3] < reference)
        colors = np.where(away[order], "#b2182b", "#2166ac")
        ax.hlines(pos, q[0][order], q[3][order], colors=colors, linewidth=0.9 if n_groups > 60 else 1.2, alpha=0.8)
        ax.hlines(pos, q[1][order], q[2][order], colors=colors, linewidth=2.6 if n_groups <= 60 else 1.6)
        ax.plot(mean[order], pos, "o", color="black", markersize=2.2 if n_groups > 60 else 3.5, zorder=3)
        ax.axvline(reference, color="0.4", linestyle="--", linewidth=0.8, zorder=0)
        shown = pos[::step]
        ax.set_yticks(shown)
        ax.set_yticklabels([labels[i] for i in order[::step]], fontsize=7 if n_groups > 30 else 8)
        ax.set_ylim(-1, n_groups)
        what = "intercept" if coef.term is None else f"{coef.name} slope"
        if scale == "deviation":
            ax.set_xlabel(f"deviation from the predicted {what}", fontsize=9)
        else:
            ax.set_xlabel(f"{lv.name}'s own {what}", fontsize=9)
        ax.set_title(f"{lv.name}: {coef.name}", fontsize=10, loc="left")
        ax.tick_params(axis="x", labelsize=8)
        ax.grid(axis="x", color="0.9", linewidth=0.6)
        if k == 0:
            note = f", every {step}{_ordinal(step)} label" if step > 1 else ""
            ax.set_ylabel(f"{lv.name} ({n_groups} groups, sorted by posterior mean{note})", fontsize=9)
    fig.suptitle(f"{title(fit)}: {lv.name} effects\nposterior mean, 50% and 95% intervals; red: the 95% "
                 f"interval excludes {'0' if scale == 'deviation' else 'the average'}", fontsize=10)
    return save(fig, path)


def _ordinal(n: int) -> str:
    return "th" if 10 <= n % 100 <= 20 else {1: "st", 2: "nd", 3: "rd"}.get(n % 10, "th")


# -- pairs ------------------------------------------------------------------------------------

def pair_names(fit: "Fit") -> list[str]:
    """The hyperparameters in the pairs plot: Intercept, sds, correlations, sigma (at most MAX_PAIRS)."""
    names = _hyper_names(fit)
    chosen = [n for n in names if n == "Intercept"] + [n for n in names if n.startswith("sd(")]
    chosen += [n for n in names if n == "sigma"] + [n for n in names if n.startswith("cor(")]
    return chosen[:MAX_PAIRS]


@quiet
def pairs(fit: "Fit", path: str | Path) -> Path | None:
    """Scatter plots of every pair of hyperparameters with divergent transitions marked; funnels between a
    level's sd and the intercept, or ridges between sds, show up here. None when there are fewer than two."""
    names = pair_names(fit)
    if len(names) < 2:
        return None
    idata = _named_idata(fit, names)
    n = len(names)
    size = max(5.5, min(2.0 * n, 15))
    has_stats = "sample_stats" in idata.groups() and "diverging" in idata.sample_stats
    with az.rc_context({"plot.max_subplots": n * n + 1}):
        axes = az.plot_pair(idata, var_names=names, kind="scatter", divergences=has_stats, marginals=True,
                            figsize=(size, size), textsize=max(7, 12 - n),
                            scatter_kwargs={"alpha": 0.3, "s": 6},
                            divergences_kwargs={"color": "red", "markersize": 4, "alpha": 0.9},
                            backend_kwargs={"layout": "constrained"})
    fig = np.asarray(axes).flat[0].figure
    divergent = int(idata.sample_stats["diverging"].values.sum()) if has_stats else 0
    fig.suptitle(f"{title(fit)}: hyperparameters — {divergent} divergent transition"
                 f"{'' if divergent == 1 else 's'} (red)", fontsize=11)
    return save(fig, path)


# -- posterior predictive check ---------------------------------------------------------------

def has_predictive(fit: "Fit") -> bool:
    return "posterior_predictive" in fit.idata.groups() and "y" in fit.idata.posterior_predictive


@quiet
def ppc(fit: "Fit", path: str | Path) -> Path | None:
    """The observed outcome's distribution against PPC_DRAWS replicated data sets. None when the fit has no
    posterior predictive draws (fit with `--generated y_rep`)."""
    if not has_predictive(fit):
        return None
    fig, ax = plt.subplots(figsize=(8, 4.5), layout="constrained")
    n_draws = fit.idata.posterior_predictive.sizes["chain"] * fit.idata.posterior_predictive.sizes["draw"]
    az.plot_ppc(fit.idata, var_names=["y"], num_pp_samples=min(PPC_DRAWS, n_draws), random_seed=1, ax=ax,
                observed_rug=False)
    prior = fit.info.get("prior_only", False)
    ax.set_title(f"{title(fit)}: {'prior' if prior else 'posterior'} predictive check of {fit.description.outcome}",
                 fontsize=11, loc="left")
    ax.set_xlabel(fit.description.outcome)
    return save(fig, path)


# -- prior vs posterior -----------------------------------------------------------------------

MAX_PRIOR_PANELS = 24


@quiet
def prior_posterior(fit: "Fit", path: str | Path) -> Path | None:
    """Each population-level parameter's prior (drawn in numpy from the numbers the program used) behind its
    posterior: where the data moved it, and where the prior still shapes it. None for a prior-only fit."""
    if fit.info.get("prior_only"):
        return None
    pairs = prior_and_posterior(fit)[:MAX_PRIOR_PANELS]
    if not pairs:
        return None
    cols = min(4, len(pairs))
    rows = math.ceil(len(pairs) / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 2.3 * rows), layout="constrained", squeeze=False)
    for ax, (name, stan, prior, posterior) in zip(axes.flat, pairs):
        lo = min(np.quantile(prior, 0.01), np.quantile(posterior, 0.005))
        hi = max(np.quantile(prior, 0.99), np.quantile(posterior, 0.995))
        bins = np.linspace(lo, hi, 60)
        ax.hist(prior, bins=bins, density=True, histtype="stepfilled", color="0.8", label="prior")
        ax.hist(posterior, bins=bins, density=True, histtype="stepfilled", color="tab:blue", alpha=0.7,
                label="posterior")
        ax.set_title(name if len(name) <= 40 else name[:37] + "…", fontsize=8, loc="left")
        ax.set_yticks([])
        ax.tick_params(labelsize=7)
    for ax in list(axes.flat)[len(pairs):]:
        ax.axis("off")
    axes.flat[0].legend(fontsize=7, loc="upper right")
    fig.suptitle(f"{title(fit)}: prior (grey) and posterior (blue) of the population-level parameters, on the "
                 "sampler's scale", fontsize=10, x=0.01, ha="left")
    return save(fig, path)


# -- all of them ------------------------------------------------------------------------------

@dataclass
class PlotSet:
    paths: dict[str, Path] = field(default_factory=dict)  # name → file, in report order
    titles: dict[str, str] = field(default_factory=dict)
    notes: dict[str, str] = field(default_factory=dict)  # name → why it was not drawn
    errors: dict[str, str] = field(default_factory=dict)  # name → the error that stopped it


@dataclass(frozen=True)
class PlannedPlot:
    """One plot the report draws for a fit: its name, file and title, how to draw it (None: it does not
    apply, and `skipped` says why)."""

    name: str
    file: str
    title: str
    draw: Callable[[Path], Path | None]
    skipped: str = ""


def planned_plots(fit: "Fit") -> list[PlannedPlot]:
    """Every plot that applies to the fit, in report order: the registry of the report's plots."""
    out = [PlannedPlot("trace", "trace.png", "Trace plots of the population-level parameters",
                       lambda path: trace(fit, path))]
    for lv in fit.description.levels:
        out.append(PlannedPlot(f"caterpillar_{lv.stan}", f"caterpillar_{lv.stan}.png", f"Group effects: {lv.name}",
                               lambda path, level=lv.name: caterpillar(fit, level, path)))
    out.append(PlannedPlot("pairs", "pairs.png", "Pairs plot of the hyperparameters (divergent transitions in red)",
                           lambda path: pairs(fit, path), "Fewer than two hyperparameters: no pairs plot."))
    out.append(PlannedPlot("ppc", "ppc.png", "Posterior predictive check", lambda path: ppc(fit, path),
                           "This fit has no posterior predictive draws; to check the model against the data, fit "
                           f"with them: `{ENABLE_PPC}`"))
    out.append(PlannedPlot("prior_posterior", "prior_posterior.png", "Prior and posterior of the population-level "
                           "parameters", lambda path: prior_posterior(fit, path),
                           "A prior-only fit (its draws are the priors: the prior predictive check is above), or "
                           "no population-level parameter with a prior drawn here."))
    numeric = numeric_predictors(fit)
    if numeric:
        out.append(PlannedPlot("effects", f"effects_{_file_stem(numeric[0])}.png",
                               f"Expected {fit.description.outcome} against {numeric[0]}, with sampled groups' lines",
                               lambda path: plot_effects(fit, numeric[0], path, groups=EFFECT_GROUPS)))
    return out


def _file_stem(name: str) -> str:
    return "".join(ch if ch.isalnum() or ch in "-_" else "_" for ch in name)


def all_plots(fit: "Fit", out_dir: str | Path) -> PlotSet:
    """Every plot into out_dir. A plot that fails is recorded in `.errors` and the others still get drawn."""
    out_dir = Path(out_dir)
    result = PlotSet()
    for plot in planned_plots(fit):
        result.titles[plot.name] = plot.title
        target = out_dir / plot.file
        try:
            path = plot.draw(target)
        except Exception as exc:  # a plot should not take the whole report down
            plt.close("all")
            result.errors[plot.name] = f"{type(exc).__name__}: {exc}"
            continue
        if path is not None:
            result.paths[plot.name] = path
        else:
            if plot.skipped:
                result.notes[plot.name] = plot.skipped
            target.unlink(missing_ok=True)  # a stale plot of an earlier fit in the same run directory
    return result
