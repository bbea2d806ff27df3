"""Simulation-based calibration (Talts et al. 2018): is the generated program, with its priors, right?

    result = sbc("specs/sleepstudy.yaml", sims=200, workers=2)
    result.verdict, result.table       # per population parameter: uniformity test, ECDF inside its band
    result.ranks                       # one row per simulation and parameter

For each simulation: draw every parameter from the priors the program uses, simulate the outcome with the
spec's design (the data set's groups and predictors, or a simulated design), fit, and rank each true value
among the posterior draws, thinned to `thin_to` draws (near-independent). If the program computes the
posterior of the model that generated the data, every rank is uniform on 0..thin_to.

Two decisions make the check exact:
- the priors' numbers are fixed once, from the design (and the data's outcome when it has one), and used both
  to simulate and in every fit — the default priors are scaled to the data, and a prior that followed each
  simulated outcome would not be the prior the truth was drawn from;
- every fit runs the same program, compiled once: levels whose spec says `auto` (a sub-model's too) are sampled noncentered
  (prior draws range from data-poor to data-rich; the centered form's funnel at small sds would make the
  ranks non-uniform through the sampler, not the model), levels set to centered stay centered.

Uniformity: per parameter a chi-square test of the binned ranks, and the ECDF of the scaled ranks against
its simultaneous 95% band (Säilynoja, Bürkner & Vehtari 2022), Bonferroni-adjusted over the parameters; the
verdict fails when a parameter's ECDF leaves its band.
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy import stats

from ..compiler.encoding import encode
from ..compiler.model import prior_targets
from ..compiler.program import build, load_spec
from ..compiler.standata import write_stan_data
from ..core import files
from ..core.errors import Problem, SpecError, StangenError, require_count
from ..results.figures import plt, save
from ..results.naming import naming, submodel_name
from ..run.backends import SamplerSettings
from ..run.manyfits import FitJob, job_seeds, run_fits
from ..spec.priors import parse_prior
from .simulate import draw_outcome, prior_draw, simulation_design

THIN_TO = 99  # ranks 0..99: 100 possible values
SBC_FILES = ("fits.jsonl", "ranks.csv", "uniformity.csv", "sbc.png", "summary.md")  # what `out` holds
SBC_SETTINGS = dict(chains=2, warmup=500, draws=500, parallel_chains=1)
ALPHA = 0.05


# -- true values in the summary's names ----------------------------------------------------------

def truth_values(desc, prepared, truth: dict) -> dict[str, float]:
    """The true values (simulate's format) under the population parameters' display names (fit.summary)."""
    out: dict[str, float] = {}
    if desc.intercept:
        out["Intercept"] = truth["Intercept"]
    for term in desc.terms:
        for col in prepared.columns[term.name]:
            out[col] = truth["coefficients"][col]
    many = sum(lv.has_effects for lv in desc.levels) > 1
    for lv in desc.levels:
        for c in lv.coefficients:
            for e in c.effects:
                for col in prepared.group_columns[(lv.name, e.predictor.name)]:
                    shown = col if c.term is None else f"{c.term.name}:{col}"
                    out[shown + (f" ({lv.name})" if many else "")] = truth["effects"][lv.name][c.name][col]
    for lv in desc.levels:
        out.update(_level_truth_names(lv, truth, lambda name: name))
    res = desc.residuals
    for aux in desc.family.aux:
        sub = desc.submodel(aux)
        if sub is not None:  # its coefficients and sds under their summary names (results/naming.py)
            own = truth["parameters"][sub.stan]
            out[submodel_name(sub, "Intercept")] = own["Intercept"]
            for term in sub.terms:
                for col in prepared.columns[term.columns_key]:
                    out[submodel_name(sub, col)] = own["coefficients"][col]
            for lv in sub.levels:
                out.update(_level_truth_names(lv, own, lambda name, sub=sub: submodel_name(sub, name)))
            continue
        per_value = res.truth_names(truth, aux, prepared.sigma_labels)
        if per_value is not None:
            out.update(per_value)
        elif aux.size:
            for label, value in zip(desc.family.aux_labels(prepared.outcome_categories), truth[aux.name]):
                out[f"{aux.shown}[{label}]"] = value
        else:
            out[aux.name] = truth[aux.name]
    out.update(res.own_truth_names(truth))
    return {k: float(v) for k, v in out.items()}


def _level_truth_names(lv, truth: dict, shown) -> dict[str, float]:
    """A level's true sds and correlations under their summary names; `shown` names a coefficient
    (a sub-model's: zi_intercept)."""
    out = {f"sd({lv.name}: {shown(c.name)})": truth["sd"][lv.name][c.name] for c in lv.coefficients}
    if lv.kind == "correlated":
        matrix = np.asarray(truth["cor"][lv.name])
        for a in range(lv.n_coef):
            for b in range(a + 1, lv.n_coef):
                out[f"cor({lv.name}: {shown(lv.coefficients[a].name)}, {shown(lv.coefficients[b].name)})"] = \
                    matrix[a, b]
    return out


# -- on the worker: ranks of one fit --------------------------------------------------------------

def _select(draws, selector: str) -> np.ndarray:
    var, _, index = selector.partition("[")
    values = draws.variables[var]
    if index:
        values = values[(slice(None), slice(None), *map(int, index.rstrip("]").split(",")))]
    return values


def rank_summary(draws, job: FitJob) -> dict:
    """Each true value's rank among the thinned draws (0..thin_to), and each parameter's bulk ESS."""
    import arviz as az
    thin_to = job.payload["thin_to"]
    ranks, ess = {}, {}
    for name, selector in job.payload["selectors"].items():
        values = _select(draws, selector)  # (chains, draws)
        chains, n = values.shape
        per_chain = -(-thin_to // chains)
        step = max(n // per_chain, 1)
        thinned = values[:, ::step][:, :per_chain].reshape(-1)[:thin_to]
        ranks[name] = int(np.sum(thinned < job.payload["truth"][name]))
        ess[name] = float(az.ess(values)) if np.ptp(values) > 0 else float("nan")
    return {"ranks": ranks, "ess": ess, "draws": int(len(thinned))}


# -- uniformity --------------------------------------------------------------------------------------

def simultaneous_band(n: int, points: int, alpha: float, rng: np.random.Generator, sims: int = 4000):
    """Counts (lower, upper) at z = 1/points … (points−1)/points within which the ECDF of n uniform values
    stays with probability 1 − alpha at all points together (Säilynoja et al. 2022, by simulation)."""
    z = np.arange(1, points) / points
    u = np.sort(rng.uniform(size=(sims, n)), axis=1)
    counts = np.stack([np.searchsorted(row, z, side="right") for row in u])
    tail = np.minimum(stats.binom.cdf(counts, n, z), stats.binom.sf(counts - 1, n, z))
    gamma = np.quantile(2 * tail.min(axis=1), alpha)
    return z, stats.binom.ppf(gamma / 2, n, z), stats.binom.isf(gamma / 2, n, z)


def _grid(levels: int, most: int, cap: int) -> int:
    """The largest number of bins (or ECDF points) up to min(most, cap) that divides the `levels` possible
    ranks evenly (so each bin holds as many rank values), else min(most, cap)."""
    top = max(min(most, cap, levels), 1)
    return next((k for k in range(top, 1, -1) if levels % k == 0), top)


def uniformity(ranks: pd.DataFrame, thin_to: int, alpha: float = ALPHA, seed: int = 0) -> pd.DataFrame:
    """Per parameter: simulations, chi-square p-value of the binned ranks, whether the ECDF stays inside the
    simultaneous band (family-wise level alpha over the parameters), and the largest ECDF departure."""
    params = list(dict.fromkeys(ranks["parameter"]))
    rows = []
    rng = np.random.default_rng(seed)
    n = ranks.groupby("parameter").size().max()
    points = _grid(thin_to + 1, max(n // 5, 5), 50)
    z, lower, upper = simultaneous_band(int(n), points, alpha / max(len(params), 1), rng)
    for name in params:
        r = ranks.loc[ranks["parameter"] == name, "rank"].to_numpy()
        scaled = (r + 0.5) / (thin_to + 1)
        bins = _grid(thin_to + 1, max(len(r) // 5, 2), 20)
        counts = np.histogram(scaled, bins=bins, range=(0, 1))[0]
        p = float(stats.chisquare(counts).pvalue)
        ecdf = np.searchsorted(np.sort(scaled), z, side="right")
        if len(r) == n:
            inside = bool(np.all((ecdf >= lower) & (ecdf <= upper)))
        else:  # fewer simulations of this parameter (failed fits): its own band
            _, lo, hi = simultaneous_band(len(r), points, alpha / max(len(params), 1), rng)
            inside = bool(np.all((ecdf >= lo) & (ecdf <= hi)))
        rows.append({"parameter": name, "sims": len(r), "chi2 p": p, "ECDF in band": inside,
                     "max |ECDF - z|": float(np.max(np.abs(ecdf / len(r) - z)))})
    return pd.DataFrame(rows)


# -- the whole check -----------------------------------------------------------------------------------

@dataclass
class SBCResult:
    spec_name: str
    ranks: pd.DataFrame  # sim, parameter, rank, truth, ess
    table: pd.DataFrame  # per parameter: uniformity
    failures: list[tuple[int, str]]  # (simulation, reason)
    thin_to: int
    info: dict = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        return bool(len(self.table)) and bool(self.table["ECDF in band"].all()) and not self.failures

    @property
    def verdict(self) -> str:
        bad = self.table.loc[~self.table["ECDF in band"], "parameter"].tolist()
        n_sims = self.ranks["sim"].nunique() if len(self.ranks) else 0
        if self.failures:  # leaving out simulations that depend on the draws biases the ranks
            return (f"NOT VALID: {len(self.failures)} simulation(s) could not be fitted (see below), and leaving "
                    "them out biases the ranks; " + (f"non-uniform: {', '.join(bad)}" if bad else
                                                     "the others' ranks look uniform"))
        if not bad:
            return (f"pass: the ranks of all {len(self.table)} population parameters are consistent with uniform "
                    f"over {n_sims} simulations (ECDFs inside their simultaneous {100 * (1 - ALPHA):g}% bands)")
        return (f"FAIL: non-uniform ranks for {', '.join(bad)} over {n_sims} simulations: the program's posterior "
                "is not the model that generated the data (a wrong program or prior), or the fits did not "
                "converge (see ess and divergences in ranks.csv / fits.jsonl)")

    def text(self) -> str:
        lines = [f"SBC of {self.spec_name}: {self.verdict}"]
        shown = self.table.assign(**{"chi2 p": self.table["chi2 p"].map(lambda p: f"{p:.3f}"),
                                     "max |ECDF - z|": self.table["max |ECDF - z|"].map(lambda v: f"{v:.3f}")})
        lines += ["", shown.to_string(index=False)]
        if self.failures:
            lines += ["", f"{len(self.failures)} simulation(s) not fitted:"] + \
                [f"  sim {k}: {reason}" for k, reason in self.failures[:10]]
        low = self.ranks.groupby("sim")["ess"].min()
        if len(low) and (low < self.thin_to).any():
            lines.append(f"note: in {(low < self.thin_to).sum()} fit(s) some parameter's bulk ESS was below "
                         f"{self.thin_to}, the number of draws ranked: their ranks are not quite independent "
                         "draws (more draws per fit help)")
        return "\n".join(lines)


def _override_priors(desc, overrides: dict[str, str] | None, prepared) -> dict:
    """The priors simulation draws from: the program's, or (to test the check itself) others for some keys,
    e.g. {"sd_g": "exponential(0.2)"}."""
    classes = {t.key: ("scale" if t.role == "sd" else "correlation" if t.role == "correlation" else
                       t.aux.prior_class if t.role == "aux" else "coefficient") for t in prior_targets(desc)}
    priors = {k: dict(v) for k, v in prepared.priors.items()}
    for key, text in (overrides or {}).items():
        if key not in priors:
            raise SpecError(Problem(f"simulation_priors.{key}", f"no prior '{key}' (priors: {', '.join(priors)})"))
        prior, problem = parse_prior(text, classes[key])
        if problem:
            raise SpecError(Problem(f"simulation_priors.{key}", problem))
        size = np.size(next(iter(priors[key]["args"].values())))
        priors[key] = priors[key] | {"family": prior.family, "args": {
            k: (np.full(size, v) if size > 1 else v) for k, v in prior.named_args.items()}}
    return priors


def sbc(spec, sims: int = 200, *, data=None, groups: dict[str, int] | None = None, per_group: int = 10,
        seed: int = 1, thin_to: int = THIN_TO, scheduler: str | None = None, workers: int | None = None,
        backend: str = "pystan", out: str | Path | None = None, progress: bool = True,
        simulation_priors: dict[str, str] | None = None, **settings: Any) -> SBCResult:
    """Simulation-based calibration of a spec's program (see the module's doc). `data`: a frame or CSV whose
    groups and predictors are the design (default: the spec's data; False: a simulated design with `groups`
    and `per_group`). `settings`: sampler settings of each fit (default 2 chains × 500 + 500, one core each).
    `out`: a folder for fits.jsonl (kept if interrupted; a rerun continues), ranks.csv, uniformity.csv,
    sbc.png and summary.md. `simulation_priors`: simulate from other priors than the program's (prior key →
    prior), to see the check fail."""
    spec = load_spec(spec)
    require_count("sims", sims, "the number of simulations", error=SpecError)
    out = files.check_output_folder(out, "calibration folder", SBC_FILES) if out is not None else None
    # the priors' numbers, fixed once: from the data's outcome, or a unit-scale stand-in (as `simulate`)
    frame, desc0, reference = simulation_design(spec, data, groups, per_group, np.random.default_rng(seed),
                                                missing=spec.missing)
    simulate_priors = _override_priors(desc0, simulation_priors, reference)
    fixed_numbers = {k: v for k, v in reference.stan_data.items() if k.startswith("prior_")}

    # `auto` levels are sampled noncentered: the prior's draws range from data-poor to data-rich groups, and
    # one program serves them all; the centered form's funnel at small sds (the common case under an
    # exponential prior) would show up as non-uniform ranks that are the sampler's, not the model's
    auto = [name for name, lv in spec.levels.items() if lv.parameterization == "auto"]
    fitted_spec = spec.with_parameterization("noncentered", auto, sub_models=True)  # (sub-models' levels too)
    seeds = job_seeds(seed, 2 * sims)
    sim_seeds, fit_seeds = seeds[:sims], seeds[sims:]
    program, jobs, failures = None, [], []
    for k in range(sims):
        rng = np.random.default_rng(sim_seeds[k])
        simulation_view = _with_priors(reference, simulate_priors)
        truth = prior_draw(desc0, simulation_view, rng)
        sim_frame = frame.copy()
        sim_frame[spec.outcome] = draw_outcome(desc0, reference, truth, rng)
        try:
            if program is None:  # one program for every simulation: `auto` levels noncentered
                program = build(fitted_spec, sim_frame)
            stan_data = write_stan_data(program.description, encode(program.description, sim_frame,
                                                                    missing=spec.missing)).stan_data
        except StangenError as exc:
            failures.append((k, f"simulated data rejected: {str(exc).splitlines()[-1].strip()}"))
            continue
        stan_data.update(fixed_numbers)
        values = truth_values(desc0, reference, truth)
        selectors = dict(naming(program.description, program.data).population)
        jobs.append(FitJob(k, stan_data, fit_seeds[k], {"truth": values, "selectors": selectors,
                                                         "thin_to": thin_to}))
    if program is None:
        raise SpecError(Problem("sbc", "no simulated data set could be fitted: " + "; ".join(r for _, r in failures[:3])))
    sampler = SamplerSettings(**(SBC_SETTINGS | settings | {"quiet": True}))
    if sampler.chains * sampler.draws < thin_to:
        raise SpecError(Problem("draws", f"{sampler.chains} chains × {sampler.draws} draws are fewer than the "
                                         f"{thin_to} draws each true value is ranked among: draw more"))
    results = run_fits(program.code, jobs, rank_summary, settings=sampler, backend=backend, scheduler=scheduler,
                       workers=workers, results_file=out / "fits.jsonl" if out else None, progress=progress,
                       label="SBC fits")
    rows = []
    for job, result in zip(jobs, results):
        if not result.ok:
            failures.append((job.index, result.reason))
            continue
        for name, rank in result.output["ranks"].items():
            rows.append({"sim": job.index, "parameter": name, "rank": rank, "truth": job.payload["truth"][name],
                         "ess": result.output["ess"][name], "divergences": result.divergences,
                         "seconds": result.seconds})
    ranks = pd.DataFrame(rows, columns=["sim", "parameter", "rank", "truth", "ess", "divergences", "seconds"])
    table = uniformity(ranks, thin_to) if len(ranks) else pd.DataFrame(
        columns=["parameter", "sims", "chi2 p", "ECDF in band", "max |ECDF - z|"])
    result = SBCResult(spec.name or "model", ranks, table, sorted(failures), thin_to,
                       info={"sims": sims, "seed": seed, "settings": SBC_SETTINGS | settings,
                             "parameterization": [c.to_dict() for c in program.parameterization],
                             "simulation_priors": simulation_priors or {}})
    if out is not None:
        write_sbc(result, out)
    return result


def _with_priors(prepared, priors: dict):
    """`prepared` with other prior records (what prior_draw reads)."""
    return replace(prepared, priors=priors)


def plot_sbc(result, path: str | Path) -> Path:
    """Per population parameter: the rank histogram (grey: where 99% of bins fall under uniformity) and the
    ECDF difference F(z) − z of the scaled ranks with its simultaneous 95% band (Säilynoja et al. 2022)."""
    params = list(result.table["parameter"])
    n_rows = max(len(params), 1)
    fig, axes = plt.subplots(n_rows, 2, figsize=(10, 2.1 * n_rows + 0.8), layout="constrained", squeeze=False)
    rng = np.random.default_rng(0)
    levels = result.thin_to + 1
    for row, name in zip(axes, params):
        ranks = result.ranks.loc[result.ranks["parameter"] == name, "rank"].to_numpy()
        n = len(ranks)
        bins = _grid(levels, max(n // 5, 2), 20)
        row[0].hist((ranks + 0.5) / levels, bins=bins, range=(0, 1), color="tab:blue", alpha=0.8)
        lo, hi = stats.binom.ppf([0.005, 0.995], n, 1 / bins)
        row[0].axhspan(lo, hi, color="0.85", zorder=0)
        row[0].set_title(f"{name}: ranks ({n} simulations)", fontsize=9, loc="left")
        row[0].set_xlim(0, 1)
        z, lower, upper = simultaneous_band(n, _grid(levels, max(n // 5, 5), 50), ALPHA / len(params), rng)
        ecdf = np.searchsorted(np.sort((ranks + 0.5) / levels), z, side="right") / n
        row[1].fill_between(z, lower / n - z, upper / n - z, color="0.85", step="mid")
        row[1].plot(z, ecdf - z, color="tab:blue", drawstyle="steps-mid")
        row[1].axhline(0, color="0.5", lw=0.8)
        inside = bool(result.table.loc[result.table["parameter"] == name, "ECDF in band"].iloc[0])
        row[1].set_title(f"ECDF difference, simultaneous band: {'inside' if inside else 'OUTSIDE'}", fontsize=9,
                         loc="left", color="black" if inside else "tab:red")
        for ax in row:
            ax.tick_params(labelsize=8)
    fig.suptitle(f"{result.spec_name}: simulation-based calibration — {'pass' if result.ok else 'FAIL'}", fontsize=11)
    return save(fig, path)


def write_sbc(result: SBCResult, out: str | Path) -> Path:
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    result.ranks.to_csv(out / "ranks.csv", index=False)
    result.table.to_csv(out / "uniformity.csv", index=False)
    plot_sbc(result, out / "sbc.png")
    (out / "summary.md").write_text(f"# Simulation-based calibration: {result.spec_name}\n\n```\n{result.text()}\n```\n\n"
                                    f"![ranks](sbc.png)\n\nSettings: `{json.dumps(result.info, default=str)}`\n",
                                    encoding="utf-8")
    return out
