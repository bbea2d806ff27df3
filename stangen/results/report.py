"""The report of a fit: report.html (self-contained: plots embedded as base64 PNG, no external resources) and
report.md (plots referenced as files in plots/), written into the run directory.

    html, md = write_report(fit, "runs/sleepstudy")      # also: `stangen report runs/sleepstudy`

Contents, in order: title and one-line description, the equations, the priors actually used, the convergence
checks, the lme4-style printout, the population-level table, multilevel quantities (ICC, pooling), the plots
(trace, caterpillar per level, pairs, posterior predictive check) and the Stan program.

A section that cannot be computed does not stop the report: it says what went wrong, and the error is listed
in `Report.errors` (the CLI prints them).
"""
from __future__ import annotations

import base64
import datetime as _dt
import math
import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable

import jinja2
import markupsafe
import numpy as np
import pandas as pd

from ..core.version import VERSION
from ..compiler.model import prior_targets
from . import checks, equations as _equations, multilevel, plots as _plots, tables

if TYPE_CHECKING:
    from ..fitting import Fit

PLOTS_DIR = "plots"
HTML_NAME = "report.html"
MD_NAME = "report.md"
STATUS_ORDER = {"pass": 0, "warn": 1, "fail": 2}


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
        names = _prior_names(target, fit.description, data) if target is not None else [key]
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


def _prior_names(target, desc, data) -> list[str]:
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
        each = f" (each of {', '.join(data.sigma_labels)})" if data.sigma_labels and target.aux.name == "sigma" else ""
        return [target.aux.name + each]
    if role == "sd":
        return [f"sd({target.level.name}: {c.name})" for c in target.level.coefficients]
    if role == "correlation":
        return [f"cor({target.level.name}: {', '.join(c.name for c in target.level.coefficients)})"]
    return [target.key]


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


# -- the report -------------------------------------------------------------------------------

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


@dataclass
class PlotEntry:
    name: str
    title: str
    file: str  # relative to the run directory
    data_uri: str


@dataclass
class Report:
    title: str
    description: str
    facts: list[tuple[str, str]]
    banner: str
    sections: dict[str, Section]
    plots: list[PlotEntry]
    plot_notes: list[tuple[str, str]]  # (title, why not drawn)
    equations_text: str
    generated: str
    errors: list[str] = field(default_factory=list)


def _section(report_errors: list[str], id_: str, title: str, build: Callable[[Section], None]) -> Section:
    section = Section(id_, title)
    try:
        build(section)
    except Exception as exc:  # one section should not take the whole report down
        section.error = f"{type(exc).__name__}: {exc}"
        report_errors.append(f"{title}: {section.error}")
    return section


def build_report(fit: "Fit", run_dir: str | Path) -> Report:
    """Compute every part of the report and draw the plots into run_dir/plots/."""

    run_dir = Path(run_dir)
    errors: list[str] = []
    spec, desc = fit.spec, fit.description
    sections: dict[str, Section] = {}
    eq_holder: dict[str, str] = {"text": ""}

    def equations(s: Section) -> None:
        eqs = _equations.from_fit(fit)
        s.html = eqs.html()
        s.text = eqs.text()
        eq_holder["text"] = s.text

    def priors(s: Section) -> None:
        s.intro = ("The priors in the Stan program, with their numbers. Defaults are weakly informative and scaled "
                   "to the data; a prior written in the spec is used as written.")
        s.table = prior_rows(fit)

    def convergence(s: Section) -> None:
        result = fit.convergence()
        s.status = result.status
        s.intro = {"pass": "Every check passed.",
                   "warn": "Usable, with warnings: read the advice below.",
                   "fail": "Not converged: do not use these estimates yet; follow the advice below."}.get(
                       result.status, "")
        s.table = convergence_table(result)

    def per_chain(s: Section) -> None:
        s.intro = ("Where each chain's time went. Gradients: log-density gradient evaluations (leapfrog steps) while "
                   "sampling; a chain far slower than the others took more of them (a smaller step size, deeper "
                   "trees) or paid more per gradient.")
        s.table = frame_table(checks.chains(fit), "chain")

    def lme4(s: Section) -> None:
        s.text = tables.lme4_text(fit)

    def population(s: Section) -> None:
        s.intro = ("Posterior mean, sd and quantiles of the population-level parameters, with Monte Carlo standard "
                   "error, bulk and tail effective sample sizes and R-hat.")
        s.table = frame_table(tables.population(fit), "parameter")

    def quantities(s: Section) -> None:
        s.intro = ("ICC: share of the variance at each level (varying intercepts; latent scale for logit models). "
                   "pooling: how far group estimates are pulled toward their prediction (0 = none, 1 = complete). "
                   "design effect: 1 + (n̄ − 1)·ICC, how much the clustering inflates a mean's variance; effective N: "
                   "N / design effect. With AR errors, effective observations per series: 1ᵀC⁻¹1 of its error "
                   "correlation, ≈ n(1 − φ)/(1 + φ) for unit gaps.")
        s.table = frame_table(multilevel.quantities(fit), "quantity")

    def parameterization(s: Section) -> None:
        s.intro = ("How each level's group effects were sampled. Centered: each group's coefficients are parameters "
                   "(mixes well when groups have much data); noncentered: standardized effects scaled by the sds "
                   "(mixes well when they have little). `auto` decides from the data: centered when the median "
                   "information ratio n·τ²/σ² exceeds 1. Both give the same model; only the sampling differs. A level "
                   "with too few groups to tell (its ratio's 90% interval reaches below 1/2 and above 2) keeps its "
                   "estimate's choice, and the sampler's adapt_delta is raised to 0.9 unless the spec sets it. "
                   "Integrated: a parent level's effects are integrated out of the model (its only nested level "
                   "carries them) and drawn afterwards.")
        rows = [(c.level, [c.parameterization, "auto" if c.how == "auto" else "spec", c.reason])
                for c in fit.program.parameterization]
        s.table = Table("level", ["parameterization", "chosen by", "why"], rows)

    def program(s: Section) -> None:
        s.text = fit.program.code

    for id_, title, build in [("equations", "Model", equations), ("priors", "Priors", priors),
                              ("convergence", "Convergence checks", convergence),
                              ("chains", "Chains", per_chain),
                              ("lme4", "Summary (lme4 style)", lme4),
                              ("population", "Population-level parameters", population),
                              ("multilevel", "Multilevel quantities", quantities),
                              ("parameterization", "Sampling parameterization", parameterization),
                              ("program", "Stan program", program)]:
        sections[id_] = _section(errors, id_, title, build)

    plot_set = _plots.all_plots(fit, run_dir / PLOTS_DIR)
    entries = []
    for name, path in plot_set.paths.items():
        uri = "data:image/png;base64," + base64.b64encode(Path(path).read_bytes()).decode("ascii")
        entries.append(PlotEntry(name, plot_set.titles[name], f"{PLOTS_DIR}/{Path(path).name}", uri))
    notes = [(plot_set.titles[n], note) for n, note in plot_set.notes.items()]
    for name, err in plot_set.errors.items():
        notes.append((plot_set.titles[name], f"could not be drawn: {err}"))
        errors.append(f"plot {name}: {err}")

    info = fit.info or {}
    settings = info.get("settings", {})
    post = fit.posterior
    data = fit.program.data
    facts = [("observations", str(data.n) + (f" ({data.dropped.note()})" if data.dropped else ""))]
    facts += [(f"{lv.name} groups", str(len(data.labels[lv.name]))) for lv in desc.levels]
    facts.append(("sampler", f"{post.sizes['chain']} chains × {post.sizes['draw']} draws"
                  + (f" (warmup {settings['warmup']})" if "warmup" in settings else "")))
    for key in ("seed", "adapt_delta", "max_treedepth"):
        if settings.get(key) is not None:
            facts.append((key.replace("_", " "), str(settings[key])))
    if info.get("initial_metric") == "estimated":
        facts.append(("initial metric", "each parameter's approximate posterior variance, from the working fit "
                                        "(large data: a shorter warmup)"))
    if (settings.get("threads_per_chain") or 1) > 1:
        facts.append(("threads per chain", f"{settings['threads_per_chain']} (the likelihood summed by reduce_sum "
                                           "over slices of rows)"))
    if info.get("backend"):
        facts.append(("backend", f"{info['backend']} (Stan {info.get('stan_version', '?')})"))
    if info.get("sample_seconds") is not None:
        facts.append(("sampling time", f"{info['sample_seconds']:.1f} s"))
    banner = ("These draws are from the prior (fitted with --prior-only): the data were not used."
              if info.get("prior_only") else "")
    return Report(title=f"{spec.name or desc.name}", description=spec.describe(), facts=facts, banner=banner,
                  sections=sections, plots=entries, plot_notes=notes, equations_text=eq_holder["text"],
                  generated=f"{_dt.datetime.now().strftime('%Y-%m-%d %H:%M')} by stangen {VERSION}",
                  errors=errors)


# -- templates --------------------------------------------------------------------------------

def _template_dir() -> Path:
    try:
        from importlib import resources
        path = Path(str(resources.files("stangen.templates")))
        if (path / "report.html.j2").exists():
            return path
    except ModuleNotFoundError:
        pass
    return Path(__file__).resolve().parent.parent.parent / "templates"


def _code_spans(text: str) -> markupsafe.Markup:
    """Escape, then turn `code` into <code>code</code> (for notes that name commands)."""
    escaped = str(markupsafe.escape(text))
    return markupsafe.Markup(re.sub(r"`([^`]+)`", r"<code>\1</code>", escaped))


def _environment(html: bool) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(_template_dir())), autoescape=html,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.filters["code_spans"] = _code_spans
    return env


def render_html(report: Report) -> str:
    return _environment(True).get_template("report.html.j2").render(r=report, s=report.sections)


def render_markdown(report: Report) -> str:
    return _environment(False).get_template("report.md.j2").render(r=report, s=report.sections)


def _write(path: Path, text: str) -> None:
    """Write under a temporary name, then rename: a reader never sees half a report."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        tmp.write_text(text, encoding="utf-8")
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_report(fit: "Fit", run_dir: str | Path) -> tuple[Path, Path]:
    """Write run_dir/report.html and run_dir/report.md (and the plots into run_dir/plots/)."""
    path, md, _ = write_report_checked(fit, run_dir)
    return path, md


def write_report_checked(fit: "Fit", run_dir: str | Path) -> tuple[Path, Path, list[str]]:
    """As write_report, and the list of sections or plots that could not be produced."""
    run_dir = Path(run_dir)
    run_dir.mkdir(parents=True, exist_ok=True)
    report = build_report(fit, run_dir)
    html_path, md_path = run_dir / HTML_NAME, run_dir / MD_NAME
    _write(html_path, render_html(report))
    _write(md_path, render_markdown(report))
    return html_path, md_path, report.errors
