"""What a fit's report shows, registered once: each section of the report (its id, title and how it is
computed) and each results table a Fit offers (`fit.table(name)`). The report (report.py) is built from
SECTIONS in their order; Fit's table methods (fixef, varcorr, quantities, …) read TABLES. A new section is one
function under `@section(...)`; a new table is one entry in TABLES (and, if it belongs in the report, a
section that shows it).
"""
from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Callable

import numpy as np
import pandas as pd

from ..compiler.model import prior_targets
from .naming import prior_names
from . import checks, multilevel, prior_check, tables
from . import equations as _equations

if TYPE_CHECKING:
    from ..fitting import Fit


# -- tables as plain data for the templates ----------------------------------------------------

@dataclass
class Table:
    index_name: str
    columns: list[str]
    rows: list[tuple[str, list[str]]]  # (row label, formatted cells)
    classes: list[list[str]] = field(default_factory=list)  # per row, per cell: a CSS class ('' for none)

    def markdown(self) -> str:
        def cell(text: str) -> str:
            return str(text).replace("|", "\\|").replace("\n", " ")
        header = [self.index_name, *self.columns]
        lines = ["| " + " | ".join(cell(h) for h in header) + " |", "|" + "|".join("---" for _ in header) + "|"]
        lines += ["| " + " | ".join(cell(c) for c in [label, *cells]) + " |" for label, cells in self.rows]
        return "\n".join(lines)


def number(value: Any) -> str:
    """A number for a table: 4 significant digits, whole numbers for counts, '—' for missing."""
    if value is None:
        return "—"
    if isinstance(value, (bool, np.bool_)):
        return str(bool(value))
    if isinstance(value, (int, np.integer)):
        return str(int(value))
    try:
        x = float(value)
    except (TypeError, ValueError):
        return str(value)
    if math.isnan(x):
        return "—"
    if math.isinf(x):
        return "∞" if x > 0 else "−∞"
    if x != 0 and (abs(x) >= 1e6 or abs(x) < 1e-4):
        return f"{x:.3e}"
    return f"{x:.4g}" if abs(x) < 1e4 else f"{x:.0f}"


INTEGER_COLUMNS = ("ess_bulk", "ess_tail")


def frame_table(frame: pd.DataFrame, index_name: str | None = None) -> Table:
    rows = []
    for label, row in frame.iterrows():
        cells = []
        for col, value in row.items():
            if col in INTEGER_COLUMNS and value is not None and np.isfinite(value):
                cells.append(f"{value:.0f}")
            elif col == "r_hat" and value is not None and np.isfinite(value):
                cells.append(f"{value:.3f}")
            else:
                cells.append(number(value))
        rows.append((str(label), cells))
    classes = []
    if "r_hat" in frame.columns:
        k = list(frame.columns).index("r_hat")
        for _, cells in rows:
            cls = [""] * len(cells)
            try:
                cls[k] = "bad" if float(cells[k]) > 1.01 else ""
            except ValueError:
                pass
            classes.append(cls)
    return Table(index_name or frame.index.name or "", [str(c) for c in frame.columns], rows, classes)


# -- priors -----------------------------------------------------------------------------------

def prior_rows(fit: "Fit") -> Table:
    """One row per parameter (vector priors expanded): parameter, prior, where it came from."""

    priors = fit.program.data.priors
    data = fit.program.data
    targets = {t.key: t for t in prior_targets(fit.description)}
    rows = []
    for key, used in priors.items():
        family, args, source = used["family"], used.get("args", {}), used.get("source", "")
        target = targets.get(key)
        names = prior_names(target, fit.description, data) if target is not None else [key]
        vector = {a: np.atleast_1d(np.asarray(v, dtype=float)) for a, v in args.items()}
        n = max([len(v) for v in vector.values()] + [1])
        if target is not None and target.role == "correlation":
            n = 1
        if len(names) != n:
            names = [key] if n == 1 else [f"{key}[{i + 1}]" for i in range(n)]
        if source == "default":
            fixed = family == "lkj" or (target is not None and target.aux is not None and target.aux.default_prior)
            origin = "default" if fixed else "default, scaled to the data"
        else:
            origin = f"spec: {source}"
        for i, name in enumerate(names):
            values = [number(v[i] if len(v) > i else v[0]) for v in vector.values()]
            rows.append((name, [f"{family}({', '.join(values)})", used.get("param", ""), origin]))
    return Table("parameter", ["prior", "Stan parameter", "source"], rows)


# -- convergence ------------------------------------------------------------------------------

def convergence_table(report) -> Table:
    rows, classes = [], []
    for c in report.checks:
        value = c.value
        try:
            x = float(value)
        except (TypeError, ValueError):
            x = float("nan")
        if not math.isfinite(x):
            shown = number(value)
        elif c.name == "r_hat":
            shown = f"{x:.3f}"
        elif c.name.startswith("ess") or x.is_integer():
            shown = f"{x:.0f}"
        else:
            shown = f"{x:.2f}"
        rows.append((c.name, [c.status, shown, c.message, c.advice if c.status != "pass" and c.advice else "—"]))
        classes.append(["status " + c.status, "", "", ""])
    return Table("check", ["status", "value", "result", "advice"], rows, classes)


# -- sections of the report ---------------------------------------------------------------------------------

@dataclass
class Section:
    id: str
    title: str
    html: str = ""  # pre-rendered HTML (equations)
    text: str = ""  # preformatted text (lme4 printout, Stan program)
    table: Table | None = None
    intro: str = ""
    error: str = ""
    status: str = ""  # pass | warn | fail, for the convergence verdict


@dataclass(frozen=True)
class SectionEntry:
    id: str
    title: str
    fill: Callable[["Fit", Section], None]

    def build_for(self, fit: "Fit", errors: list[str]) -> Section:
        """The section for this fit; one that cannot be computed says what went wrong (and is listed in
        `errors`) instead of taking the whole report down."""
        built = Section(self.id, self.title)
        try:
            self.fill(fit, built)
        except Exception as exc:  # one section should not take the whole report down
            built.error = f"{type(exc).__name__}: {exc}"
            errors.append(f"{self.title}: {built.error}")
        return built


SECTIONS: list[SectionEntry] = []  # in report order


def section(id_: str, title: str):
    """Register the decorated function (fit, section) → None as a report section, after those before it."""
    def register(fill: Callable[["Fit", Section], None]):
        SECTIONS.append(SectionEntry(id_, title, fill))
        return fill
    return register


# -- results tables a Fit offers ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ResultTable:
    name: str
    compute: Callable[..., Any]  # (fit, **options) → a DataFrame (ranef, coef: one per level)
    index_name: str  # what the rows are
    meaning: str  # in words, for `Fit.table`'s help


TABLES: dict[str, ResultTable] = {t.name: t for t in (
    ResultTable("summary", tables.summary, "parameter",
                "population-level parameters (group_effects=True: and every group's deviation): mean, sd, "
                "quantiles, MCSE, bulk and tail ESS, R-hat"),
    ResultTable("population", tables.population, "parameter", "the population-level rows of summary"),
    ResultTable("fixef", tables.fixef, "coefficient", "population-level coefficients (like brms::fixef)"),
    ResultTable("ranef", tables.ranef, "group", "group deviations per level, posterior means (like lme4::ranef)"),
    ResultTable("coef", tables.coef, "group", "group-specific coefficients per level (like lme4::coef)"),
    ResultTable("varcorr", tables.varcorr, "component", "variance components (like lme4::VarCorr)"),
    ResultTable("quantities", multilevel.quantities, "quantity",
                "ICC, pooling factors, design effects and effective N, posterior mean and 95% interval"),
    ResultTable("chains", checks.chains, "chain", "each chain's time, gradients and step size"),
)}


# -- the report's sections, in order ------------------------------------------------------------------------

@section("equations", "Model")
def _equations_section(fit: "Fit", s: Section) -> None:
    eqs = _equations.from_fit(fit)
    s.html = eqs.html()
    s.text = eqs.text()


@section("priors", "Priors")
def _priors_section(fit: "Fit", s: Section) -> None:
    s.intro = ("The priors in the Stan program, with their numbers. Defaults are weakly informative and scaled "
               "to the data; a prior written in the spec is used as written.")
    s.table = prior_rows(fit)


@section("prior_predictive", "Prior predictive check")
def _prior_predictive_section(fit: "Fit", s: Section) -> None:
    """Only for a prior-only fit (the templates skip a section with no table)."""
    if not fit.info.get("prior_only"):
        return
    check = fit.prior_predictive()
    s.status = "warn" if check.note else "pass"
    beyond = (f" {check.beyond:.1%} of the predictions lie beyond {prior_check.ABSURD_FACTOR} times the data's largest "
              f"|{check.outcome}| ({number(check.limit)})." if check.limit is not None else "")
    s.intro = (f"{check.draws} data sets of {check.outcome} drawn from the priors for the data's rows (their "
               "predictors, groups and exposures), each summarized, against the data's own statistics: do the "
               f"priors allow the data, without predicting absurd values?{beyond}"
               + (f" ({check.caveat[0].upper()}{check.caveat[1:]}.)" if check.caveat else "")
               + (f" {check.note[0].upper()}{check.note[1:]}." if check.note else ""))
    s.table = frame_table(check.table, "statistic")


@section("convergence", "Convergence checks")
def _convergence_section(fit: "Fit", s: Section) -> None:
    result = fit.convergence()
    s.status = result.status
    s.intro = {"pass": "Every check passed.",
               "warn": "Usable, with warnings: read the advice below.",
               "fail": "Not converged: do not use these estimates yet; follow the advice below."}.get(result.status, "")
    s.table = convergence_table(result)


@section("chains", "Chains")
def _chains_section(fit: "Fit", s: Section) -> None:
    s.intro = ("Where each chain's time went. Gradients: log-density gradient evaluations (leapfrog steps) while "
               "sampling; a chain far slower than the others took more of them (a smaller step size, deeper "
               "trees) or paid more per gradient.")
    s.table = frame_table(fit.table("chains"), TABLES["chains"].index_name)


@section("lme4", "Summary (lme4 style)")
def _lme4_section(fit: "Fit", s: Section) -> None:
    s.text = tables.lme4_text(fit)


@section("population", "Population-level parameters")
def _population_section(fit: "Fit", s: Section) -> None:
    s.intro = ("Posterior mean, sd and quantiles of the population-level parameters, with Monte Carlo standard "
               "error, bulk and tail effective sample sizes and R-hat.")
    s.table = frame_table(fit.table("population"), TABLES["population"].index_name)


@section("multilevel", "Multilevel quantities")
def _multilevel_section(fit: "Fit", s: Section) -> None:
    s.intro = ("ICC: share of the variance at each level (varying intercepts; latent scale for logit models). "
               "pooling: how far group estimates are pulled toward their prediction (0 = none, 1 = complete). "
               "design effect: 1 + (n̄ − 1)·ICC, how much the clustering inflates a mean's variance; effective N: "
               "N / design effect. With AR errors, effective observations per series: 1ᵀC⁻¹1 of its error "
               "correlation, ≈ n(1 − φ)/(1 + φ) for unit gaps.")
    s.table = frame_table(fit.table("quantities"), TABLES["quantities"].index_name)


@section("parameterization", "Sampling parameterization")
def _parameterization_section(fit: "Fit", s: Section) -> None:
    s.intro = ("How each level's group effects were sampled. Centered: each group's coefficients are parameters "
               "(mixes well when groups have much data); noncentered: standardized effects scaled by the sds "
               "(mixes well when they have little). `auto` decides from the data: centered when the median "
               "information ratio n·τ²/σ² exceeds 1. Both give the same model; only the sampling differs. A level "
               "with too few groups to tell (its ratio's 90% interval reaches below 1/2 and above 2) keeps its "
               "estimate's choice, and the sampler's adapt_delta is raised to 0.9 unless the spec sets it. "
               "Integrated: a parent level's effects are integrated out of the model (its only nested level "
               "carries them), or the effects of the level of correlated error series out of the likelihood "
               "(each series jointly normal), and drawn afterwards. Partial: a level's data-rich leading "
               "coefficients (a varying intercept) centered, the others noncentered given them; mixed: each "
               "group of an intercept-only level in its own form.")
    rows = [(c.level, [c.form, "auto" if c.how == "auto" else "spec", c.reason])
            for c in fit.program.parameterization]
    s.table = Table("level", ["parameterization", "chosen by", "why"], rows)


@section("program", "Stan program")
def _program_section(fit: "Fit", s: Section) -> None:
    s.text = fit.program.code
