"""Stage 4: StanProgram → backend → Fit (draws as ArviZ InferenceData, in the spec's terms).

    fit = stangen.fit("specs/sleepstudy.yaml", chains=4, seed=1)
    fit.summary()        # population-level parameters: mean, sd, interval, R-hat, ESS
    fit.save("runs/sleepstudy")
"""
from __future__ import annotations

import json
import os
import time
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from . import codegen
from .backends import CompiledModel, Draws, SamplerSettings, get_backend
from .backends.base import check_threads
from .data import DroppedRows, PreparedData
from .errors import Problem, SpecError, UserError
from .model import ModelDescription, describe
from .parameterization import Choice, describe_options, suggested_adapt_delta
from .program import StanProgram, build, stan_data_json, threaded
from .spec import Spec
from .warmup import initial_inverse_metric

COMPLETE_MARKER = "COMPLETE"
STAN_LOG = "stan.log"  # Stan's messages during sampling, in the run directory
SETTING_NAMES = ("chains", "parallel_chains", "warmup", "draws", "seed", "adapt_delta", "max_treedepth", "init",
                 "quiet", "threads_per_chain")


def sampler_settings(spec: Spec, defaults: dict[str, Any] | None = None, **overrides: Any) -> SamplerSettings:
    """The spec's `sampler:` block with explicit overrides (None means: not overridden); `defaults` replace
    SamplerSettings' own defaults where neither sets a value."""
    unknown = set(overrides) - set(SETTING_NAMES)
    if unknown:
        raise SpecError([Problem(f"sampler.{k}", f"unknown sampler setting (allowed: {', '.join(SETTING_NAMES)})")
                         for k in sorted(unknown)])
    values = dict(defaults or {}) | dict(spec.sampler) | {k: v for k, v in overrides.items() if v is not None}
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
        if aux.name == "sigma" and res is not None and res.sd_by:
            n.coords["sigma_by"] = list(prepared.sigma_labels)
            n.dims["sigma"] = ["sigma_by"]
            n.population += [(f"sigma({res.sd_by}: {label})", f"sigma[{k}]")
                             for k, label in enumerate(prepared.sigma_labels)]
        elif aux.size:  # a vector: its elements by label (an ordinal model's cutpoints: cutpoint[1|2], …)
            labels = desc.family.aux_labels(prepared.outcome_categories)
            n.coords[f"{aux.name}_dim"] = labels
            for var in {aux.name, desc.aux_stan(aux)}:
                n.dims[var] = [f"{aux.name}_dim"]
            n.population += [(f"{aux.shown}[{label}]", f"{aux.name}[{k}]") for k, label in enumerate(labels)]
        else:
            n.population.append((aux.name, aux.name))
    if res is not None and res.correlation:
        n.population.append((f"phi ({res.label}, {res.time} within {res.level})", "phi"))
    return n


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


# -- the fit object ---------------------------------------------------------------------------

class Fit:
    """Posterior draws of a spec's model, with the program, data and label maps that produced them."""

    def __init__(self, program: StanProgram, idata: az.InferenceData, info: dict[str, Any],
                 stan_messages: list[str] | None = None):
        self.program = program
        self.idata = idata
        self.info = info
        # Stan's own informational messages per chain (stan.log in a run directory)
        self.stan_messages = list(stan_messages or [])
        self.frame: pd.DataFrame | None = None  # the training rows, when fitted in this session (fitted())
        # diagnostics over every group effect cost seconds on large data (InstEval: 4,100 effects), and the
        # draws do not change: each summary and the convergence report are computed once
        self._memo: dict[tuple, Any] = {}

    def _once(self, key: tuple, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        value = self._memo[key]
        return value.copy() if isinstance(value, pd.DataFrame) else value

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

    def summary(self, quantiles=(0.025, 0.5, 0.975), group_effects: bool = False) -> pd.DataFrame:
        """Population-level parameters (and with group_effects=True every group's deviation): mean, sd,
        quantiles, mcse, bulk and tail ESS, R-hat. See stangen.results.tables for the names."""
        from .results import tables
        return self._once(("summary", tuple(quantiles), group_effects),
                          lambda: tables.summary(self, quantiles, group_effects=group_effects))

    def fixef(self, prob: float = 0.95) -> pd.DataFrame:
        """Population-level coefficients with posterior sd and interval (like brms::fixef)."""
        from .results import tables
        return tables.fixef(self, prob)

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Group deviations per level (posterior means), like lme4::ranef."""
        from .results import tables
        return tables.ranef(self)

    def coef(self) -> dict[str, pd.DataFrame]:
        """Group-specific coefficients per level (population + group-level predictors + deviation)."""
        from .results import tables
        return tables.coef(self)

    def varcorr(self) -> pd.DataFrame:
        """Variance components: sds, variances, correlations and the residual (like lme4::VarCorr)."""
        from .results import tables
        return tables.varcorr(self)

    def quantities(self) -> pd.DataFrame:
        """ICC per level, pooling factors, design effects and effective N (with AR errors also the effective
        observations per series): posterior mean and 95% interval (stangen.results.multilevel)."""
        from .results import multilevel
        return multilevel.quantities(self)

    def predict(self, newdata: pd.DataFrame | str | Path, kind: str = "response", new_groups: str = "error",
                draws: bool = False, seed: int | None = None, quantiles=(0.025, 0.5, 0.975)):
        """Predictions for new rows (stangen.predict.predict): kind 'response' | 'mean' | 'link', new_groups
        'error' | 'sample' | 'population'; a DataFrame with mean, sd and quantiles, or with draws=True an
        xarray DataArray (chain, draw, row)."""
        from .data import read_csv
        from .predict import predict
        frame = newdata if isinstance(newdata, pd.DataFrame) else read_csv(newdata)
        return predict(self, frame, kind=kind, new_groups=new_groups, draws=draws, seed=seed, quantiles=quantiles)

    def fitted(self, data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """The expected outcome of each training row (predict kind='mean'), like lme4's fitted(). `data`: the
        training data, when the fit did not keep them (default: the frame it was fitted on, else the spec's
        `data:` file, without the rows `missing: drop` left out)."""
        frame = self.training_data(data)
        return self.predict(frame, kind="mean")

    def training_data(self, data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """The rows the model was fitted on."""
        from .data import read_csv
        data = self.frame if data is None else data
        data = self.info.get("data_file") if data is None and self.info.get("data_file") else data
        data = self.spec.data_path if data is None else data
        if data is None:
            raise UserError(Problem("data", "the training data are not known: pass them (fitted(data=...))"))
        frame = data if isinstance(data, pd.DataFrame) else read_csv(data)
        dropped = self.program.data.dropped
        if dropped is not None:
            frame = frame.drop(index=frame.index[[r - 1 for r in dropped.rows]])
        frame = frame.reset_index(drop=True)
        if len(frame) != self.program.data.n:
            raise UserError(Problem("data", f"these data have {len(frame)} usable rows; the model was fitted on "
                                            f"{self.program.data.n}: pass the data it was fitted on"))
        return frame

    def plot_effects(self, predictor: str, path: str | Path | None = None, by: str | None = None, groups: int = 0,
                     level: str | None = None, data: pd.DataFrame | None = None) -> Path:
        """The expected outcome against a numeric level-1 predictor, the others at their reference values, with
        50%/95% bands; `by`: a line per category; `groups`: the fitted lines of that many sampled groups of
        `level` (stangen.results.effects). Written to `path` (default: effects_<predictor>.png here)."""
        from .results.effects import plot_effects
        return plot_effects(self, predictor, path or f"effects_{predictor}.png", by=by, groups=groups, level=level,
                            data=data)

    def lme4(self) -> str:
        """The fit printed like lme4's summary()."""
        from .results import tables
        return tables.lme4_text(self)

    def convergence(self):
        """Convergence checks with pass/warn/fail and advice (stangen.results.checks)."""
        from .results import checks
        return self._once(("convergence",), lambda: checks.convergence(self))

    def verdict(self) -> str:
        return self.convergence().one_line()

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
               "priors": prepared.priors, "categorical": sorted(self.description.categorical),
               # the data rows the fit used: all but these (missing: drop)
               "dropped": prepared.dropped.to_dict() if prepared.dropped else None,
               "sigma_labels": prepared.sigma_labels, "outcome_categories": prepared.outcome_categories,
               "categories": prepared.categories}
        _write(out / "spec.yaml", self.spec.to_yaml())
        _write(out / "model.stan", self.program.code)
        _write(out / "data.json", stan_data_json(prepared.stan_data))
        from .results import tables
        full = self.summary(group_effects=True)
        _write(out / "summary.csv", full.to_csv())
        _write(out / "summary.md", tables.to_markdown(full))
        _write(out / "convergence.json", json.dumps(self.convergence().to_dict(), indent=1, default=_json_default))
        tmp = out / ".posterior.nc.tmp"
        self.idata.to_netcdf(str(tmp), engine="h5netcdf")
        os.replace(tmp, out / "posterior.nc")
        _write(out / "run.json", json.dumps(run, indent=1, default=_json_default))
        _write(out / STAN_LOG, "".join(f"{line}\n" for line in self.stan_messages))
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
        choices = tuple(Choice.from_dict(c) for c in run["info"].get("parameterization", []))
        desc = describe(spec, set(run["categorical"]), generated=run["info"].get("generated", ()),
                        **describe_options(choices))
        if run["info"].get("threaded"):
            desc = threaded(desc)
        stan_data = {k: np.asarray(v) if isinstance(v, list) else v
                     for k, v in json.loads((run_dir / "data.json").read_text()).items()}
        prepared = PreparedData(stan_data, run["labels"], run["columns"],
                                {(lv, p): names for lv, p, names in run["group_columns"]}, run["priors"],
                                missing=run["info"].get("missing", "error"), sigma_labels=run.get("sigma_labels", []),
                                outcome_categories=run.get("outcome_categories", []),
                                categories=run.get("categories", {}),
                                dropped=DroppedRows.from_dict(run.get("dropped")))
        code = (run_dir / "model.stan").read_text()
        if code != codegen.render(desc):
            raise UserError(Problem(str(run_dir / "model.stan"), "the run's program is not the one this stangen "
                                    "renders from the run's spec.yaml and choices (the run was made by another "
                                    "version of stangen, or a file was edited): its draws cannot be read "
                                    "in the spec's terms; fit the spec again"))
        program = StanProgram(spec, desc, code, prepared, choices)
        idata = az.from_netcdf(str(run_dir / "posterior.nc"), engine="h5netcdf")
        log = run_dir / STAN_LOG
        messages = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
        return cls(program, idata, run["info"], messages)


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


def program_defaults(program: StanProgram) -> dict[str, Any]:
    """Sampler settings the program asks for when the spec and the caller leave them open: a raised
    adapt_delta when `auto` could not decide a level's parameterization (stangen.parameterization)."""
    adapt_delta = suggested_adapt_delta(program.parameterization)
    return {} if adapt_delta is None else {"adapt_delta": adapt_delta}


def _data_file(spec: Spec, data) -> str | None:
    if isinstance(data, (str, Path)):
        return str(Path(data).resolve())
    if data is None and spec.data_path is not None:
        return str(spec.data_path.resolve())
    return None


def fit(spec: Spec | StanProgram | str | Path, data: pd.DataFrame | str | Path | None = None, *,
        backend: str = "auto",
        prior_only: bool = False, generated: str | tuple[str, ...] | list[str] | None = (),
        missing: str | None = None, scheduler: str | None = None, workers: int | None = None,
        **settings: Any) -> Fit:
    """Compile (or reuse the cached compile of) the spec's program and sample it.

    `settings` override the spec's `sampler:` block: chains, parallel_chains, warmup, draws, seed,
    adapt_delta, max_treedepth, init, quiet, threads_per_chain (> 1: the threaded program, whose likelihood
    reduce_sum splits into slices of rows; CmdStan only). `prior_only=True` samples from the prior (same program).
    `generated`: optional generated quantities, any of "y_rep" (draws of the outcome, in the InferenceData
    group posterior_predictive) and "log_lik" (pointwise log-likelihood, group log_likelihood, for
    `stangen compare`); they are part of the program, so each choice compiles (and caches) its own.
    `missing`: 'error' or 'drop' for rows with a missing value in a used column (default: the spec's
    `missing:`, else 'error'); dropped rows are counted in the printout and recorded in the run.
    `spec` may also be a StanProgram from `build` (with data): it is sampled as it is, and `data`,
    `prior_only`, `generated` and `missing` are then the program's.
    `scheduler` ("tcp://host:port") or `workers` (a local cluster of that many processes): each chain is a task
    on a Dask cluster (stangen/distributed.py); the same seed gives the same draws as a local run.
    """
    if isinstance(spec, StanProgram):
        if spec.data is None:
            raise SpecError(Problem("data", "this program was built without data: pass data to build()"))
        program = spec
    else:
        program = build(spec, data, require_data=True, prior_only=prior_only, generated=generated,
                        missing=missing, threads_per_chain=settings.get("threads_per_chain"))
    chosen = get_backend(backend)
    sampler = sampler_settings(program.spec, program_defaults(program), **settings)
    if sampler.threads_per_chain > 1 and not program.description.threads:
        raise SpecError(Problem("sampler.threads_per_chain",
                                f"threads_per_chain = {sampler.threads_per_chain} needs the threaded program: "
                                f"build(..., threads_per_chain={sampler.threads_per_chain})"))
    check_threads(chosen, sampler)  # before a compile that could not be used
    if getattr(chosen, "takes_initial_metric", False) and sampler.inv_metric is None:
        metric = initial_inverse_metric(program.description, program.stan_data)
        if metric is not None:
            sampler = replace(sampler, inv_metric=tuple(float(v) for v in metric))
    compiled: CompiledModel = chosen.compile(program.code)
    cluster = None
    if scheduler is not None or workers is not None:
        from .distributed import sample_on_cluster
        draws = sample_on_cluster(chosen.name, program.code, program.stan_data, sampler, scheduler=scheduler,
                                  workers=workers)
        cluster = f"Dask scheduler {scheduler}" if scheduler else f"local Dask cluster, {workers} workers"
    else:
        draws = chosen.sample(compiled, program.stan_data, sampler)
    info = {"backend": draws.backend, "stan_version": draws.stan_version, "compiled_now": compiled.compiled_now,
            "compile_seconds": compiled.compile_seconds, "sample_seconds": draws.sample_seconds,
            "header_seconds": compiled.header_seconds,
            "settings": {k: v for k, v in asdict(sampler).items() if k != "inv_metric"},
            # where NUTS started its metric: "estimated" (stangen/warmup.py) or Stan's unit metric
            "initial_metric": "estimated" if sampler.inv_metric is not None else "unit",
            "program_key": compiled.key,
            "prior_only": bool(program.stan_data["prior_only"]),
            "chain_seconds": draws.chain_seconds,
            "cluster": cluster,  # where the chains ran, when not here
            "generated": list(program.description.generated),
            "threaded": program.description.threads,  # the reduce_sum program (threads within a chain)
            "missing": program.data.missing,
            "parameterization": [c.to_dict() for c in program.parameterization],
            # where the training data were read from (fitted() on a loaded run reads them again)
            "data_file": _data_file(program.spec, data)}
    result = Fit(program, to_inference_data(program, draws), info, draws.messages)
    result.frame = data if isinstance(data, pd.DataFrame) else None  # for fitted(): the rows as given
    return result
