"""How a fit shows itself in a notebook (`Fit._repr_html_`) and a console (`repr(fit)`): what `stangen fit`
prints on a terminal — the lme4-style summary and the verdict with its advice — so a notebook user sees the
same thing a terminal user does, plus the population table (the summary without group effects), compact."""
from __future__ import annotations

import html
from typing import TYPE_CHECKING

if TYPE_CHECKING:  # (the fit object lives in the layer above)
    from ..fitting.fit import Fit

COLORS = {"pass": "#1a7f37", "warn": "#9a6700", "fail": "#cf222e"}
COLUMNS = ["mean", "sd", "q2.5%", "q97.5%", "ess_bulk", "r_hat"]


def one_line(fit: "Fit") -> str:
    """'<stangen Fit: sleepstudy, gaussian model of Reaction, 180 rows; pystan, 4 chains x 1000 draws;
    convergence: pass>'."""
    posterior = fit.posterior
    name = fit.program.spec.name or "model"
    return (f"<stangen Fit: {name}, {fit.description.family} model of {fit.description.outcome}, "
            f"{fit.program.data.n} rows; {fit.info.get('backend', '?')}, {posterior.sizes['chain']} chains x "
            f"{posterior.sizes['draw']} draws; convergence: {fit.convergence().status}>")


def fit_html(fit: "Fit", digits: int = 3) -> str:
    """The fit as one HTML fragment: the verdict (and its advice when not a pass), the lme4-style summary, and
    the population-level table."""
    report = fit.convergence()
    color = COLORS.get(report.status, "#57606a")
    advice = "".join(f"<li>{html.escape(c.message)}: {html.escape(c.advice)}</li>"
                     for c in report.checks if c.status != "pass" and c.advice)
    table = fit.summary()
    shown = [c for c in COLUMNS if c in table.columns]
    rows = table[shown].to_html(float_format=lambda v: f"{v:.{digits}f}", border=0, classes="stangen-table")
    return (f'<div class="stangen-fit">'
            f'<p><b style="color:{color}">{html.escape(report.one_line())}</b></p>'
            + (f"<ul>{advice}</ul>" if advice else "")
            + f'<pre style="font-size:90%">{html.escape(fit.lme4())}</pre>'
            f"<details><summary>population-level parameters</summary>{rows}</details></div>")
