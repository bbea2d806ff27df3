"""Study planning from the model spec: how many groups, and how many rows per group, give a usable estimate?

    table = plan("specs/exam.yaml", "truth.yaml", groups={"school": [20, 40, 80]}, per_group=[5, 10, 25],
                 sims=50, focus=["standLRT:schavg"], workers=2)

For every design on the grid (number of groups of the top level × rows per group), simulate `sims` data sets
from the spec's model with the given true values (stangen.workflows.simulate, a simulated design), fit each, and
report for each focus parameter: the median posterior sd, the share of 95% intervals that cover the true
value, and the share that exclude zero (the power to detect it), with each level's design effect and
effective N (the lecture's measures: how many independent observations the design is worth). Fits run on
Dask (stangen.run.manyfits), one batch per design, every design with one program.
"""
from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ..compiler.encoding import encode
from ..compiler.program import StanProgram, build, load_spec
from ..compiler.standata import write_stan_data
from ..core import files
from ..core.errors import Problem, SpecError, StangenError, require_count
from ..fitting import Fit
from ..results.figures import plt, save
from ..results.multilevel import design_effects
from ..results.naming import naming, to_inference_data
from ..results.tables import population_coefficients
from ..run.backends import SamplerSettings
from ..run.manyfits import FitJob, job_seeds, local_cluster, run_fits
from .kfold import pinned_spec
from .sbc import truth_values
from .simulate import read_params, simulate

PLAN_FILES = ("fits_*.jsonl", "plan.csv", "plan.png")  # what `out` holds
PLAN_SETTINGS = dict(chains=2, warmup=500, draws=500, parallel_chains=1)


def plan_summary(draws, job: FitJob) -> dict:
    """Per focus parameter: posterior mean, sd, 95% interval, covers the truth, excludes zero; per level the
    design effect and effective N (posterior means)."""
    program = job.payload["program"]
    fit = Fit(program, to_inference_data(program, draws), {})
    out: dict[str, Any] = {"focus": {}, "levels": {}}
    for name in job.payload["focus"]:
        values = fit.parameter_draws(name).reshape(-1)
        lo, hi = np.quantile(values, [0.025, 0.975])
        truth = job.payload["truth"][name]
        out["focus"][name] = {"mean": float(values.mean()), "sd": float(values.std(ddof=1)), "lo": float(lo),
                              "hi": float(hi), "covers": bool(lo < truth < hi), "excludes_zero": bool(lo > 0 or hi < 0)}
    quantities = design_effects(fit)
    for lv in program.description.levels:
        deff = quantities.get(f"design effect({lv.name})")
        eff_n = quantities.get(f"effective N({lv.name})")
        out["levels"][lv.name] = {"design_effect": float(np.nanmean(deff)) if deff is not None else None,
                                  "effective_n": float(np.nanmean(eff_n)) if eff_n is not None else None}
    return out


def plan(spec, params, *, groups: dict[str, list[int]], per_group: list[int], sims: int = 50,
         focus: list[str] | None = None, seed: int = 1, scheduler: str | None = None, workers: int | None = None,
         backend: str = "pystan", out: str | Path | None = None, progress: bool = True,
         **settings: Any) -> pd.DataFrame:
    """The planning table (see the module's doc): one row per design and focus parameter. `groups`: level →
    numbers of groups to try (a nested level: groups per parent group); `per_group`: rows per group (cell of
    the lowest grouping) to try; `focus`: display names of the parameters to report (default: every
    population-level coefficient and effect)."""
    spec = load_spec(spec)
    require_count("sims", sims, "the number of simulations", error=SpecError)
    out = files.check_output_folder(out, "planning folder", PLAN_FILES) if out is not None else None
    truth_given = read_params(params) if isinstance(params, (str, Path)) else dict(params)
    unknown = sorted(set(groups) - set(spec.levels))
    if unknown:
        raise SpecError(Problem("--groups", f"no level {', '.join(repr(u) for u in unknown)} "
                                            f"(levels: {', '.join(spec.levels)})"))
    designs = [dict(zip(groups, combo)) | {"per_group": m}
               for combo in itertools.product(*groups.values()) for m in per_group]
    sampler = SamplerSettings(**(PLAN_SETTINGS | settings | {"quiet": True}))
    cluster = local_cluster(workers) if scheduler is None else None
    address = cluster.scheduler_address if cluster is not None else scheduler
    rows = []
    try:
        for d_index, design in enumerate(designs):
            level_groups = {k: v for k, v in design.items() if k != "per_group"}
            seeds = job_seeds(seed + d_index, 2 * sims)
            jobs, program = [], None
            for k in range(sims):
                sim = simulate(spec, truth_given, data=False, groups=level_groups, per_group=design["per_group"],
                               seed=seeds[k])
                try:
                    if program is None:  # the design's first data set decides the parameterization, for all
                        first = build(spec, sim.data)
                        program = build(pinned_spec(spec, first), sim.data)
                        names = focus or _coefficients(program)
                        values = truth_values(program.description, program.data, sim.truth)
                        missing = [n for n in names if n not in values]
                        if missing:
                            raise SpecError(Problem("--focus", f"no parameter {', '.join(repr(m) for m in missing)} "
                                                               f"(parameters: {', '.join(values)})"))
                    prepared = write_stan_data(program.description, encode(program.description, sim.data))
                except SpecError:
                    raise
                except StangenError:
                    continue
                this = StanProgram(program.spec, program.description, program.code, prepared, program.parameterization)
                jobs.append(FitJob(k, prepared.stan_data, seeds[sims + k], {
                    "program": this, "focus": names,
                    "truth": truth_values(program.description, prepared, sim.truth)}))
            label = ", ".join(f"{v} {k}" for k, v in level_groups.items()) + f" × {design['per_group']} per group"
            if program is None:
                raise SpecError(Problem("plan", f"no simulated data set of the design {label} could be encoded "
                                                "(try more rows per group)"))
            results = run_fits(program.code, jobs, plan_summary, settings=sampler, backend=backend,
                               scheduler=address, progress=progress, label=f"plan [{label}]",
                               results_file=out / f"fits_{d_index}.jsonl" if out else None)
            ok = [r for r in results if r.ok]
            for name in names:
                part = [r.output["focus"][name] for r in ok]
                row = {**{f"groups({k})": v for k, v in level_groups.items()}, "per_group": design["per_group"],
                       "parameter": name, "fits": len(part), "failed": len(results) - len(ok),
                       "median sd": float(np.median([p["sd"] for p in part])) if part else np.nan,
                       "coverage 95%": float(np.mean([p["covers"] for p in part])) if part else np.nan,
                       "P(excludes 0)": float(np.mean([p["excludes_zero"] for p in part])) if part else np.nan}
                for lv in program.description.levels:
                    deffs = [r.output["levels"][lv.name]["design_effect"] for r in ok]
                    effs = [r.output["levels"][lv.name]["effective_n"] for r in ok]
                    deffs, effs = [v for v in deffs if v is not None], [v for v in effs if v is not None]
                    row[f"design effect({lv.name})"] = float(np.mean(deffs)) if deffs else np.nan
                    row[f"effective N({lv.name})"] = float(np.mean(effs)) if effs else np.nan
                rows.append(row)
    finally:
        if cluster is not None:
            cluster.close()
    table = pd.DataFrame(rows)
    if out is not None:
        out.mkdir(parents=True, exist_ok=True)
        table.to_csv(out / "plan.csv", index=False)
        plot_plan(table, out / "plan.png", spec.name or "model")
    return table


def _coefficients(program) -> list[str]:
    """Default focus: population-level coefficients and group-level effects (not sds, correlations, sigma)."""
    parameters = dict(naming(program.description, program.data).population)
    return [n for n in population_coefficients(program.description, parameters) if n != "Intercept"]


def precision_slope(table: pd.DataFrame, parameter: str, level: str) -> float:
    """The slope of log(median posterior sd) against log(number of groups): −0.5 is the 1/√J law."""
    part = table[table["parameter"] == parameter]
    x, y = np.log(part[f"groups({level})"].to_numpy(float)), np.log(part["median sd"].to_numpy(float))
    return float(np.polyfit(x, y, 1)[0])


def plot_plan(table: pd.DataFrame, path: str | Path, title: str) -> Path:
    params = list(dict.fromkeys(table["parameter"]))
    level_cols = [c for c in table.columns if c.startswith("groups(")]
    x_col = level_cols[0]
    fig, axes = plt.subplots(1, len(params), figsize=(4.2 * len(params) + 0.5, 3.8), layout="constrained",
                             squeeze=False)
    for ax, name in zip(axes[0], params):
        part = table[table["parameter"] == name]
        for m, rows in part.groupby("per_group"):
            ax.plot(rows[x_col], rows["median sd"], marker="o", label=f"{m} per group")
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xlabel(x_col.replace("groups(", "number of groups (").rstrip(")") + ")")
        ax.set_ylabel("median posterior sd")
        ax.set_title(name, fontsize=10, loc="left")
        ax.legend(fontsize=8)
    fig.suptitle(f"{title}: precision against the number of groups", fontsize=11)
    return save(fig, path)
