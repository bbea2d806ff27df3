"""Stage 4: StanProgram → backend → Fit (draws as ArviZ InferenceData, in the spec's terms).

    fit = stangen.fit("specs/sleepstudy.yaml", chains=4, seed=1)
    fit.summary()        # population-level parameters: mean, sd, interval, R-hat, ESS
    fit.save("runs/sleepstudy")
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from .backends import CompiledModel, Draws, SamplerSettings, get_backend
from .data import PreparedData
from .errors import Problem, SpecError, UserError
from .model import ModelDescription, describe
from .program import StanProgram, build, stan_data_json
from .spec import Spec

COMPLETE_MARKER = "COMPLETE"
SETTING_NAMES = ("chains", "parallel_chains", "warmup", "draws", "seed", "adapt_delta", "max_treedepth", "init",
                 "quiet")


def sampler_settings(spec: Spec, **overrides: Any) -> SamplerSettings:
    """The spec's `sampler:` block with explicit overrides (None means: not overridden)."""
    unknown = set(overrides) - set(SETTING_NAMES)
    if unknown:
        raise SpecError([Problem(f"sampler.{k}", f"unknown sampler setting (allowed: {', '.join(SETTING_NAMES)})")
                         for k in sorted(unknown)])
    values = dict(spec.sampler) | {k: v for k, v in overrides.items() if v is not None}
    return SamplerSettings(**values)


# -- names and coordinates in the spec's terms ------------------------------------------------

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
    for lv in desc.levels:
        coef_dim, group_dim = f"{lv.stan}_coef", lv.stan
        n.coords[coef_dim] = [c.name for c in lv.coefficients]
        n.coords[group_dim] = prepared.labels[lv.name]
        for c in lv.coefficients:
            for e in c.effects:
                names = prepared.group_columns[(lv.name, e.predictor.name)]
                suffix = f" ({lv.name})" if many_levels else ""
                shown = [nm if c.term is None else f"{c.term.name}:{nm}" for nm in names]
                if e.predictor.categorical:
                    dim = f"{e.param}_coef"
                    n.coords[dim] = shown
                    n.dims[e.param] = [dim]
                    n.population += [(s + suffix, f"{e.param}[{i}]") for i, s in enumerate(shown)]
                else:
                    n.population.append((shown[0] + suffix, e.param))
        if lv.kind == "intercept":
            n.dims[f"z_{lv.stan}"] = [group_dim]
            n.dims[f"u_{lv.stan}"] = [group_dim]
        else:
            n.dims[f"sd_{lv.stan}"] = [coef_dim]
            n.dims[f"u_{lv.stan}"] = [group_dim, coef_dim]
            if lv.kind == "correlated":
                n.coords[f"{coef_dim}_bis"] = n.coords[coef_dim]
                n.dims[f"z_{lv.stan}"] = [coef_dim, group_dim]
                n.dims[f"L_{lv.stan}"] = [coef_dim, f"{coef_dim}_bis"]
                n.dims[f"corr_{lv.stan}"] = [coef_dim, f"{coef_dim}_bis"]
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
    if desc.family == "gaussian":
        n.population.append(("sigma", "sigma"))
    return n


def to_inference_data(program: StanProgram, draws: Draws) -> az.InferenceData:
    names = naming(program.description, program.data)
    stats = dict(draws.sample_stats)
    if "n_leapfrog" in stats:
        stats["n_steps"] = stats.pop("n_leapfrog")
    observed = {"y": np.asarray(program.stan_data["y"])}
    return az.from_dict(posterior=draws.variables, sample_stats=stats, observed_data=observed,
                        coords=names.coords, dims={k: v for k, v in names.dims.items() if k in draws.variables})


# -- the fit object ---------------------------------------------------------------------------

class Fit:
    """Posterior draws of a spec's model, with the program, data and label maps that produced them."""

    def __init__(self, program: StanProgram, idata: az.InferenceData, info: dict[str, Any]):
        self.program = program
        self.idata = idata
        self.info = info

    @property
    def spec(self) -> Spec:
        return self.program.spec

    @property
    def description(self) -> ModelDescription:
        return self.program.description

    @property
    def posterior(self):
        return self.idata.posterior

    def draws_of(self, selector: str) -> np.ndarray:
        """Draws (chains, draws) of 'var' or 'var[i]' / 'var[i,j]' (0-based)."""
        var, _, index = selector.partition("[")
        values = self.idata.posterior[var].values
        if index:
            values = values[(slice(None), slice(None), *map(int, index.rstrip("]").split(",")))]
        return values

    def parameters(self) -> dict[str, str]:
        """Population-level parameters: display name (as in `summary`) → Stan variable selector."""
        return dict(naming(self.description, self.program.data).population)

    def parameter_draws(self, name: str) -> np.ndarray:
        """Draws (chains, draws) of a population-level parameter by its display name, e.g. 'sd(school: intercept)'."""
        return self.draws_of(self.parameters()[name])

    def summary(self, prob: float = 0.95) -> pd.DataFrame:
        """Population-level parameters in the spec's terms: mean, sd, interval, R-hat, bulk and tail ESS."""
        rows = []
        low, high = (1 - prob) / 2, 1 - (1 - prob) / 2
        for name, selector in self.parameters().items():
            x = self.draws_of(selector)
            flat = x.reshape(-1)
            rows.append({"parameter": name, "mean": flat.mean(), "sd": flat.std(ddof=1),
                         f"{100 * low:g}%": np.quantile(flat, low), f"{100 * high:g}%": np.quantile(flat, high),
                         "r_hat": float(az.rhat(x)), "ess_bulk": float(az.ess(x, method="bulk")),
                         "ess_tail": float(az.ess(x, method="tail"))})
        return pd.DataFrame(rows).set_index("parameter")

    def convergence(self) -> dict[str, Any]:
        """A first, minimal verdict: max R-hat, min ESS, divergences, treedepth hits."""
        table = self.summary()
        stats = self.idata.sample_stats
        divergent = int(stats["diverging"].values.sum())
        max_depth = self.info.get("settings", {}).get("max_treedepth", 10)
        at_max = int((stats["tree_depth"].values >= max_depth).sum()) if "tree_depth" in stats else 0
        max_rhat, min_ess = float(table["r_hat"].max()), float(table[["ess_bulk", "ess_tail"]].min().min())
        chains = self.idata.posterior.sizes["chain"]
        problems = []
        if max_rhat > 1.01:
            problems.append(f"R-hat up to {max_rhat:.3f} (> 1.01): chains disagree; run longer")
        if min_ess < 100 * chains:
            problems.append(f"ESS as low as {min_ess:.0f} (< 100 per chain): run longer")
        if divergent:
            problems.append(f"{divergent} divergent transitions: raise adapt_delta (e.g. 0.95)")
        if at_max:
            problems.append(f"{at_max} transitions hit max_treedepth {max_depth}: raise max_treedepth")
        return {"ok": not problems, "max_r_hat": max_rhat, "min_ess": min_ess, "divergences": divergent,
                "max_treedepth_hits": at_max, "problems": problems}

    def verdict(self) -> str:
        check = self.convergence()
        head = (f"max R-hat {check['max_r_hat']:.3f}, min ESS {check['min_ess']:.0f}, "
                f"{check['divergences']} divergences")
        return f"converged: {head}" if check["ok"] else f"NOT converged ({head}): " + "; ".join(check["problems"])

    # -- run directories ----------------------------------------------------------------------
    def save(self, out: str | Path) -> Path:
        """Write a run directory. Each file is written under a temporary name and renamed; the
        COMPLETE marker is written last, so a directory without it is an incomplete run."""
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
        prepared = self.program.data
        run = {"info": self.info, "labels": prepared.labels, "columns": prepared.columns,
               "group_columns": [[lv, p, names] for (lv, p), names in prepared.group_columns.items()],
               "priors": prepared.priors, "categorical": sorted(self.description.categorical)}
        _write(out / "spec.yaml", self.spec.to_yaml())
        _write(out / "model.stan", self.program.code)
        _write(out / "data.json", stan_data_json(prepared.stan_data))
        _write(out / "summary.csv", self.summary().to_csv())
        _write(out / "convergence.json", json.dumps(self.convergence(), indent=1))
        tmp = out / ".posterior.nc.tmp"
        self.idata.to_netcdf(str(tmp), engine="h5netcdf")
        os.replace(tmp, out / "posterior.nc")
        _write(out / "run.json", json.dumps(run, indent=1, default=_json_default))
        _write(out / COMPLETE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
        return out

    @classmethod
    def load(cls, run_dir: str | Path) -> "Fit":
        run_dir = Path(run_dir)
        if not (run_dir / COMPLETE_MARKER).exists():
            raise UserError(Problem(str(run_dir), f"not a complete run (no {COMPLETE_MARKER} marker): it was "
                                                  "interrupted or is still being written; fit again"))
        run = json.loads((run_dir / "run.json").read_text())
        spec = Spec.from_yaml(run_dir / "spec.yaml")
        desc = describe(spec, set(run["categorical"]))
        stan_data = {k: np.asarray(v) if isinstance(v, list) else v
                     for k, v in json.loads((run_dir / "data.json").read_text()).items()}
        prepared = PreparedData(stan_data, run["labels"], run["columns"],
                                {(lv, p): names for lv, p, names in run["group_columns"]}, run["priors"])
        program = StanProgram(spec, desc, (run_dir / "model.stan").read_text(), prepared)
        idata = az.from_netcdf(str(run_dir / "posterior.nc"), engine="h5netcdf")
        return cls(program, idata, run["info"])


def _write(path: Path, text: str) -> None:
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text, encoding="utf-8")
    os.replace(tmp, path)


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")


def fit(spec: Spec | str | Path, data: pd.DataFrame | str | Path | None = None, *, backend: str = "auto",
        prior_only: bool = False, **settings: Any) -> Fit:
    """Compile (or reuse the cached compile of) the spec's program and sample it.

    `settings` override the spec's `sampler:` block: chains, parallel_chains, warmup, draws, seed,
    adapt_delta, max_treedepth, init, quiet. `prior_only=True` samples from the prior (same program)."""
    program = build(spec, data, require_data=True, prior_only=prior_only)
    chosen = get_backend(backend)
    sampler = sampler_settings(program.spec, **settings)
    compiled: CompiledModel = chosen.compile(program.code)
    draws = chosen.sample(compiled, program.stan_data, sampler)
    info = {"backend": draws.backend, "stan_version": draws.stan_version, "compiled_now": compiled.compiled_now,
            "compile_seconds": compiled.compile_seconds, "sample_seconds": draws.sample_seconds,
            "settings": asdict(sampler), "program_key": compiled.key, "prior_only": prior_only}
    return Fit(program, to_inference_data(program, draws), info)
