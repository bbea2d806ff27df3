"""The user's fit: StanProgram → backend → Fit (draws as ArviZ InferenceData, read in the spec's terms).

    fit = stangen.fit("specs/sleepstudy.yaml", chains=4, seed=1)
    fit.summary()        # population-level parameters: mean, sd, interval, R-hat, ESS
    fit.save("runs/sleepstudy")
"""
from __future__ import annotations

import tempfile
from dataclasses import asdict, replace
from pathlib import Path
from typing import Any

import arviz as az
import numpy as np
import pandas as pd

from ..compiler.model import ModelDescription
from ..compiler.parameterization import suggested_adapt_delta
from ..compiler.program import StanProgram, build
from ..core.errors import Problem, SpecError, UserError
from ..core.files import file_sha256
from ..core.frames import read_csv
from ..core.version import VERSION
from ..results import checks, display, effects, hypotheses, prior_check, tables
from ..results.report import write_report
from ..results.naming import naming, to_inference_data
from ..results.predict import predict
from ..results.sections import TABLES
from ..run.backends import CompiledModel, get_backend
from ..run.backends.base import check_threads
from ..run.distributed import sample_on_cluster
from ..run.settings import sampler_settings
from ..run.warmup import initial_inverse_metric
from ..spec import Spec
from . import rundir


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
        self.frame: pd.DataFrame | None = None  # the training rows as given or read (before missing: drop)
        # diagnostics over every group effect cost seconds on large data (InstEval: 4,100 effects), and the
        # draws do not change: each summary and the convergence report are computed once
        self._memo: dict[tuple, Any] = {}

    def _once(self, key: tuple, compute):
        if key not in self._memo:
            self._memo[key] = compute()
        value = self._memo[key]
        if isinstance(value, dict):  # one table per level
            return {k: v.copy() if isinstance(v, pd.DataFrame) else v for k, v in value.items()}
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

    def table(self, name: str, **options: Any) -> Any:
        """A results table by name (stangen.results.sections.TABLES: summary, population, fixef, ranef, coef,
        varcorr, quantities, chains), computed once per fit and options."""
        if name not in TABLES:
            raise UserError(Problem("table", f"no table {name!r} (tables: {', '.join(TABLES)})"))
        return self._once(("table", name, tuple(sorted(options.items()))),
                          lambda: TABLES[name].compute(self, **options))

    def summary(self, quantiles=(0.025, 0.5, 0.975), group_effects: bool = False) -> pd.DataFrame:
        """Population-level parameters (and with group_effects=True every group's deviation): mean, sd,
        quantiles, mcse, bulk and tail ESS, R-hat. See stangen.results.tables for the names."""
        return self.table("summary", quantiles=tuple(quantiles), group_effects=group_effects)

    def fixef(self, prob: float = 0.95) -> pd.DataFrame:
        """Population-level coefficients with posterior sd and interval (like brms::fixef)."""
        return self.table("fixef", prob=prob)

    def ranef(self) -> dict[str, pd.DataFrame]:
        """Group deviations per level (posterior means), like lme4::ranef."""
        return self.table("ranef")

    def coef(self) -> dict[str, pd.DataFrame]:
        """Group-specific coefficients per level (population + group-level predictors + deviation)."""
        return self.table("coef")

    def varcorr(self) -> pd.DataFrame:
        """Variance components: sds, variances, correlations and the residual (like lme4::VarCorr)."""
        return self.table("varcorr")

    def quantities(self) -> pd.DataFrame:
        """ICC per level, pooling factors, design effects and effective N (with AR errors also the effective
        observations per series), Nakagawa's and the Bayesian R²: posterior mean and 95% interval
        (stangen.results.multilevel)."""
        return self.table("quantities")

    def predict(self, newdata: pd.DataFrame | str | Path, kind: str = "response", new_groups: str = "error",
                draws: bool = False, seed: int | None = None, quantiles=(0.025, 0.5, 0.975)):
        """Predictions for new rows (stangen.results.predict.predict): kind 'response' | 'mean' | 'link', new_groups
        'error' | 'sample' | 'population'; a DataFrame with mean, sd and quantiles, or with draws=True an
        xarray DataArray (chain, draw, row)."""
        frame = newdata if isinstance(newdata, pd.DataFrame) else read_csv(newdata)
        return predict(self, frame, kind=kind, new_groups=new_groups, draws=draws, seed=seed, quantiles=quantiles)

    def fitted(self, data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """The expected outcome of each training row (predict kind='mean'), like lme4's fitted(). `data`: the
        training data, when the fit did not keep them (default: the frame it was fitted on, else the spec's
        `data:` file, without the rows `missing: drop` left out)."""
        frame = self.training_data(data)
        return self.predict(frame, kind="mean")

    def training_data(self, data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """The rows the model was fitted on: `data` when given, else the frame it was fitted on in this session,
        else the file the run records (run.json: its path and sha256, checked). A file given or recorded must
        be the one fitted (the same sha256), wherever it lies now."""
        frame = self.frame if data is None and self.frame is not None else self._as_fitted(data)
        dropped = self.program.data.dropped
        if dropped is not None:
            frame = frame.drop(index=frame.index[[r - 1 for r in dropped.rows]])
        frame = frame.reset_index(drop=True)
        if len(frame) != self.program.data.n:
            raise UserError(Problem("data", f"these data have {len(frame)} usable rows; the model was fitted on "
                                            f"{self.program.data.n}: pass the data it was fitted on"))
        return frame

    def use_data(self, data: str | Path) -> None:
        """Take the training data from `data` (a file moved since the fit; `stangen effects|report --data`):
        checked to be the file it was fitted on, then kept as the fit's frame."""
        self.frame = self._as_fitted(data)

    def _as_fitted(self, data: pd.DataFrame | str | Path | None) -> pd.DataFrame:
        """The whole training frame (before `missing: drop`): `data` when given, else the file the run records,
        else the spec's; a file is checked against the run's sha256 of the one fitted."""
        record = self.info.get("data") or {}
        if data is None and record.get("from") == "DataFrame":
            raise UserError(Problem("data", "this model was fitted on a DataFrame, which the run does not keep: pass "
                                            "it (fitted(data=...), plot_effects(data=...); --data FILE)"))
        # the file the run records (runs written before `data` was recorded named it `data_file`)
        recorded = record.get("file") or self.info.get("data_file")
        data = recorded if data is None and recorded else data
        data = self.spec.data_path if data is None else data
        if data is None:
            raise UserError(Problem("data", "the training data are not known: pass them (fitted(data=...))"))
        if not isinstance(data, pd.DataFrame) and record.get("sha256"):
            if not Path(data).is_file():
                raise UserError(Problem("data", f"the data this model was fitted on are not at {data} any more: pass "
                                                "them where they are now (--data FILE, fitted(data=...))"))
            if file_sha256(data) != record["sha256"]:
                raise UserError(Problem("data", f"{data} is not the file this model was fitted on (its sha256 "
                                                f"differs from the run's record of {record.get('file')}): pass the "
                                                "data it was fitted on (--data FILE)"))
        return data if isinstance(data, pd.DataFrame) else read_csv(data)

    def plot_effects(self, predictor: str, path: str | Path | None = None, by: str | None = None, groups: int = 0,
                     level: str | None = None, data: pd.DataFrame | None = None, parameter: str | None = None) -> Path:
        """The expected outcome against a numeric level-1 predictor, the others at their reference values, with
        50%/95% bands; `by`: a line per category; `groups`: the fitted lines of that many sampled groups of
        `level`; `parameter`: a family parameter with a sub-model (`parameters:`, e.g. 'sigma') in place of the
        expected outcome (stangen.results.effects). Written to `path` (default: effects_<predictor>.png here)."""
        default = f"effects_{predictor}.png" if parameter is None else f"effects_{parameter}_{predictor}.png"
        return effects.plot_effects(self, predictor, path or default, by=by, groups=groups, level=level,
                                    data=data, parameter=parameter)

    def means(self, by: str, at: dict[str, float] | None = None, contrast: str | None = None,
              scale: str = "response", weights: str = "equal", data: pd.DataFrame | str | Path | None = None,
              groups: str = "population"):
        """emmeans' estimated marginal means of the expected outcome per category of `by` (`groups`:
        'population', group effects 0, or 'sample', averaged over new groups), and with `contrast`
        ('pairwise', 'revpairwise', 'trt.vs.ctrl') their differences: (means, contrasts), tables of estimate,
        est_error, 95% interval (contrasts: and P(> 0)); an ordinal outcome's per category probability; see
        stangen.results.effects.marginal_means."""
        return effects.marginal_means(self, by, at=at, contrast=contrast, scale=scale, weights=weights,
                                      groups=groups, data=data)

    def slopes(self, predictor: str, by: str | None = None, eps: float | None = None,
               data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """marginaleffects' avg_slopes: the average over the data's rows of d E[y] / d predictor, per draw
        (by the categories of `by`): estimate, est_error and 95% interval (stangen.results.effects)."""
        return effects.average_slopes(self, predictor, by=by, eps=eps, data=data)

    def comparisons(self, predictor: str, values: tuple | None = None, by: str | None = None,
                    data: pd.DataFrame | str | Path | None = None) -> pd.DataFrame:
        """marginaleffects' avg_comparisons: the average over the data's rows of the change in E[y] when
        `predictor` goes up by 1 (numeric), from values[0] to values[1], or from the reference category to each
        other one (categorical), per draw (by the categories of `by`): estimate, est_error, 95% interval and
        P(> 0) (stangen.results.effects)."""
        return effects.average_comparisons(self, predictor, values=values, by=by, data=data)

    def hypothesis(self, text: str, prob: float = 0.95) -> pd.DataFrame:
        """brms's hypothesis(): 'Days > 5', 'a - b > 0', '`sd(g: x)` = 1' (several separated by ';') over the
        population-level parameters' names: estimate of left − right, its interval, the posterior probability
        and evidence ratio of a one-sided hypothesis (stangen.results.hypotheses)."""
        return hypotheses.hypothesis(self, text, prob)

    def lme4(self) -> str:
        """The fit printed like lme4's summary() (a prior-only fit: and its prior predictive check)."""
        text = tables.lme4_text(self)
        if self.info.get("prior_only"):
            try:
                text += "\n\n" + self.prior_predictive().text()
            except Exception as exc:  # the check is an addition: it must not cost the printout
                text += f"\n\nPrior predictive check: could not be computed ({type(exc).__name__}: {exc})"
        return text

    def prior_predictive(self) -> "prior_check.PriorPredictive":
        """A prior-only fit's (`prior_only=True`) predicted data sets against the data: their statistics, and a
        note when the priors predict absurd values (stangen.results.prior_check)."""
        if not self.info.get("prior_only"):
            raise UserError(Problem("prior_only", "this fit used the data; the prior predictive check needs a "
                                                  "prior-only fit (stangen fit SPEC --prior-only, or "
                                                  "stangen.fit(spec, prior_only=True))"))
        return self._once(("prior_predictive",), lambda: prior_check.prior_predictive(self))

    def convergence(self):
        """Convergence checks with pass/warn/fail and advice (stangen.results.checks)."""
        return self._once(("convergence",), lambda: checks.convergence(self))

    def verdict(self) -> str:
        return self.convergence().one_line()

    # -- how a fit shows itself (stangen.results.display) ---------------------------------------------
    def __repr__(self) -> str:
        return display.one_line(self)

    def _repr_html_(self) -> str:
        """In a notebook: the verdict with its advice, the lme4-style summary, the population table."""
        return display.fit_html(self)

    def report(self, out: str | Path | None = None) -> Path:
        """Write the report (report.html, report.md, plots/) into `out` (default: a new folder in the system's
        temporary folder) and return report.html's path; `stangen fit` and `save` write it into the run."""
        folder = Path(out) if out is not None else Path(tempfile.mkdtemp(prefix="stangen-report-"))
        html_path, _ = write_report(self, folder)
        return html_path

    # -- run directories ----------------------------------------------------------------------
    def save(self, out: str | Path, force: bool = False) -> Path:
        """Write a run directory (stangen.fitting.rundir): the whole folder atomically, so a previous run at
        `out` stays readable until the new one is complete; run.json holds each file's sha256. A folder that
        holds anything but a stangen run is refused unless `force`; a second process writing the same
        directory at the same time gets a clear error."""
        return rundir.write_run(self, out, force=force)

    @classmethod
    def load(cls, run_dir: str | Path) -> "Fit":
        return cls(*rundir.read_run(run_dir))


def _starting_values(program: StanProgram, sampler, given: dict) -> tuple[dict, ...] | None:
    """Each chain's initial values from the program's starting point, unless the caller or the spec set
    `init` (then Stan's uniform start, as asked) or the backend starts chains its own way."""
    if program.start is None or not program.start.values or given.get("init") is not None \
            or "init" in program.spec.sampler:
        return None
    ids = range(sampler.first_chain, sampler.first_chain + sampler.chains)
    return tuple(program.start.chain(sampler.seed, i) for i in ids)


def program_defaults(program: StanProgram) -> dict[str, Any]:
    """Sampler settings the program asks for when the spec and the caller leave them open: a raised
    adapt_delta when `auto` could not decide a level's parameterization (stangen.compiler.parameterization)."""
    adapt_delta = suggested_adapt_delta(program.parameterization)
    return {} if adapt_delta is None else {"adapt_delta": adapt_delta}


def _data_file(spec: Spec, data) -> str | None:
    if isinstance(data, (str, Path)):
        return str(Path(data).resolve())
    if data is None and spec.data_path is not None:
        return str(spec.data_path.resolve())
    return None


def _data_record(spec: Spec, data) -> dict:
    """What the run records of its data: the file actually read, with its sha256, or that a DataFrame was
    given (which the run does not keep)."""
    if isinstance(data, pd.DataFrame):
        return {"from": "DataFrame", "file": None, "sha256": None}
    file = _data_file(spec, data)
    return {"from": "file", "file": file, "sha256": file_sha256(file) if file and Path(file).is_file() else None}


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
    on a Dask cluster (stangen/run/distributed.py); the same seed gives the same draws as a local run.
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
    starts = _starting_values(program, sampler, settings) if getattr(chosen, "takes_inits", False) else None
    if starts is not None:
        sampler = replace(sampler, inits=starts)
    if getattr(chosen, "takes_initial_metric", False) and sampler.inv_metric is None:
        metric = initial_inverse_metric(program.description, program.stan_data)
        if metric is not None:
            sampler = replace(sampler, inv_metric=tuple(float(v) for v in metric))
    compiled: CompiledModel = chosen.compile(program.code)
    cluster = None
    if scheduler is not None or workers is not None:
        draws = sample_on_cluster(chosen.name, program.code, program.stan_data, sampler, scheduler=scheduler,
                                  workers=workers)
        cluster = f"Dask scheduler {scheduler}" if scheduler else f"local Dask cluster, {workers} workers"
    else:
        draws = chosen.sample(compiled, program.stan_data, sampler)
    info = {"stangen_version": VERSION, "backend": draws.backend, "stan_version": draws.stan_version,
            "compiled_now": compiled.compiled_now,
            "compile_seconds": compiled.compile_seconds, "sample_seconds": draws.sample_seconds,
            "header_seconds": compiled.header_seconds,
            "settings": {k: v for k, v in asdict(sampler).items() if k not in ("inv_metric", "inits")},
            # where the chains started: "working fit" (the population-level parameters near the working fit,
            # stangen/compiler/start.py; the rest uniform in (-init, init)) or "uniform" (Stan's start)
            "start": "working fit" if sampler.inits is not None else "uniform",
            # where NUTS started its metric: "estimated" (stangen/run/warmup.py) or Stan's unit metric
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
            "data": _data_record(program.spec, data)}
    result = Fit(program, to_inference_data(program, draws), info, draws.messages)
    result.frame = data if isinstance(data, pd.DataFrame) else None  # for fitted(): the rows as given
    return result
