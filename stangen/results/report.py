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
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import jinja2
import markupsafe

from ..core import files
from ..core.version import VERSION
from . import plots as _plots
from .sections import SECTIONS, Section

if TYPE_CHECKING:
    from ..fitting import Fit

PLOTS_DIR = "plots"
HTML_NAME = "report.html"
MD_NAME = "report.md"
STATUS_ORDER = {"pass": 0, "warn": 1, "fail": 2}


# -- the report -------------------------------------------------------------------------------

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


def build_report(fit: "Fit", run_dir: str | Path) -> Report:
    """Compute every part of the report and draw the plots into run_dir/plots/."""

    run_dir = Path(run_dir)
    errors: list[str] = []
    spec, desc = fit.spec, fit.description
    sections: dict[str, Section] = {}
    for entry in SECTIONS:  # the registry of stangen.results.sections, in report order
        sections[entry.id] = entry.build_for(fit, errors)
    equations_text = sections["equations"].text if "equations" in sections else ""

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
    if info.get("start") == "working fit":
        facts.append(("start", "intercept, coefficients and group-level sds near the working fit, each chain "
                               "apart; the rest uniform in (-2, 2)"))
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
                  sections=sections, plots=entries, plot_notes=notes, equations_text=equations_text,
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
    files.write_text(html_path, render_html(report))
    files.write_text(md_path, render_markdown(report))
    return html_path, md_path, report.errors
