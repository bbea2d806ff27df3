"""The report (stangen/results/report.py), its plots and the model's equations.

The report tests use one real short fit of specs/sleepstudy.yaml (compiled once per machine; later runs only
sample) and are marked `sampling`. The equations tests build descriptions without sampling and are not marked,
so they also run under `-m "not sampling"`.
"""
import base64
import re

import markupsafe
import pytest

import stangen
from stangen import cli
from stangen.results import equations as eq
from stangen.results import plots
from stangen.results.report import write_report

from conftest import SPECS

sampling = pytest.mark.sampling
SHORT = dict(chains=2, warmup=300, draws=300, seed=5, quiet=True)
PNG = b"\x89PNG\r\n\x1a\n"
EMBEDDED = '<img src="data:image/png;base64,'


@pytest.fixture(scope="module")
def sleep_fit():
    return stangen.fit(SPECS / "sleepstudy.yaml", backend="pystan", **SHORT)


@pytest.fixture(scope="module")
def run(sleep_fit, tmp_path_factory):
    """A saved run with its report written by `stangen report RUN_DIR`."""
    run_dir = tmp_path_factory.mktemp("sleepstudy_run")
    sleep_fit.save(run_dir)
    assert cli.main(["report", str(run_dir)]) == 0
    return run_dir


@pytest.fixture(scope="module")
def html(run):
    return (run / "report.html").read_text(encoding="utf-8")


def _plot_files(run):
    return sorted((run / "plots").glob("*.png"))


@sampling
def test_every_plot_is_a_nonempty_png(run):
    names = {p.name for p in _plot_files(run)}
    assert names == {"trace.png", "caterpillar_Subject.png", "pairs.png", "prior_posterior.png", "effects_Days.png"}  # no ppc: no y_rep
    for path in _plot_files(run):
        data = path.read_bytes()
        assert len(data) > 5000 and data.startswith(PNG), path


@sampling
def test_html_embeds_every_plot_and_nothing_external(run, html):
    assert html.count(EMBEDDED) == len(_plot_files(run)) == 5
    for encoded in re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', html):
        assert base64.b64decode(encoded).startswith(PNG)
    assert not re.search(r'(src|href)="(https?:)?//', html)
    assert "<link" not in html and "<script" not in html and "@import" not in html


@sampling
def test_html_has_equations_priors_checks_tables_and_program(sleep_fit, html):
    equations = eq.from_fit(sleep_fit)
    assert equations.html() in html
    assert 'β<sub>0<i>j</i></sub>' in html.replace('<span class="sy">β</span>', "β")
    # the priors actually used, with their numbers
    priors = sleep_fit.program.data.priors
    assert priors["Intercept"]["family"] == "normal"
    location = priors["Intercept"]["args"]["location"]
    assert f"normal({location:.4g}, " in html
    for row in ("sd(Subject: intercept)", "sd(Subject: Days)", "cor(Subject: intercept, Days)", "lkj(2)",
                "exponential("):
        assert row in html, row
    # convergence checks, the lme4 printout, the population table, multilevel quantities
    for text in ("<th>advice</th>", "r_hat", "divergences", "e_bfmi", "Random effects", "Fixed effects", "ICC(Subject)",
                 "pooling(Subject: Days)", "ess_bulk", "q97.5%"):
        assert text in html, text
    assert str(markupsafe.escape(sleep_fit.program.code)) in html
    # no posterior predictive draws: the report says how to get them
    assert "--generated y_rep" in html


@sampling
def test_markdown_links_plots_that_exist(sleep_fit, run):
    md = (run / "report.md").read_text(encoding="utf-8")
    links = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", md)
    assert len(links) == len(_plot_files(run)) == 5
    for link in links:
        assert link.startswith("plots/") and (run / link).is_file(), link
    for line in eq.from_fit(sleep_fit).lines():
        assert line in md
    assert "y_ij = β0j + β1j·Days_ij + ε_ij" in md
    assert "```stan\n" + sleep_fit.program.code.rstrip() in md
    assert "--generated y_rep" in md


@sampling
def test_write_report_returns_paths_and_single_plots(sleep_fit, tmp_path):
    html_path, md_path = write_report(sleep_fit, tmp_path / "r")
    assert html_path.name == "report.html" and md_path.name == "report.md"
    assert html_path.stat().st_size > 10000
    assert plots.ppc(sleep_fit, tmp_path / "ppc.png") is None  # no posterior_predictive group
    out = plots.caterpillar(sleep_fit, "Subject", tmp_path / "c.png", scale="coefficient")
    assert out.read_bytes().startswith(PNG)


@sampling
def test_fit_command_writes_the_report_unless_told_not_to(tmp_path, capsys):
    settings = ["--backend", "pystan", "--chains", "2", "--warmup", "100", "--draws", "100", "--quiet"]
    spec = str(SPECS / "sleepstudy.yaml")
    assert cli.main(["fit", spec, "--out", str(tmp_path / "a"), *settings]) == 0
    assert (tmp_path / "a" / "report.html").is_file() and (tmp_path / "a" / "report.md").is_file()
    assert "report:" in capsys.readouterr().out
    assert cli.main(["fit", spec, "--out", str(tmp_path / "b"), "--no-report", *settings]) == 0
    assert not (tmp_path / "b" / "report.html").exists() and not (tmp_path / "b" / "plots").exists()


# -- equations (no sampling) ------------------------------------------------------------------

def _equations(name):
    program = stangen.build(SPECS / f"{name}.yaml")
    return eq.equations(program.description, program.data.columns, program.data.group_columns)


def test_equations_two_levels_with_contextual_effect():
    e = _equations("language")
    assert e.lines() == [
        "y_ij = β0j + β1j·iq_verb_ij + ε_ij",
        "ε_ij ~ N(0, σ²)",
        "β0j = γ00 + γ01·mean_iq_verb_j + u0j",
        "β1j = γ10 + u1j",
        "(u0j, u1j) ~ N(0, Σ_school)",
    ]
    assert [s.title for s in e.sections] == ["Level 1 (observations i)", "Level 2 (school j)"]
    assert "y: lang_post" in e.where
    html = e.html()
    assert '<span class="sy">β</span><sub>0<i>j</i></sub>' in html
    assert '<span class="sy">σ</span><sup>2</sup>' in html
    assert '<span class="nm">iq_verb</span><sub><i>ij</i></sub>' in html
    assert '<span class="sy">Σ</span><sub class="nm-sub">school</sub>' in html
    tau = _equations("penicillin").html()  # τ² over its subscript
    assert '<span class="sy">τ</span><span class="subsup"><sup>2</sup><sub class="nm-sub">plate</sub></span>' in tau


def test_equations_three_nested_levels():
    e = _equations("turnout")  # precincts i in counties j in states k
    assert e.lines() == [
        "y_ijk = β0jk + β1jk·urban_ijk + ε_ijk",
        "ε_ijk ~ N(0, σ²)",
        "β0jk = γ00 + γ01·county_income_jk + γ02·state_margin_k + u0jk + v0k",
        "β1jk = γ10",
        "u0jk ~ N(0, τ²_county)",
        "v0k ~ N(0, τ²_state)",
    ]
    assert "i: observation in county j in state k" in e.where
    assert e.sections[1].title == "Levels 2–3 (county j within state k)"


def test_equations_crossed_levels():
    e = _equations("penicillin")
    assert e.lines() == [
        "y_i(jk) = β0jk + ε_i(jk)",
        "ε_i(jk) ~ N(0, σ²)",
        "β0jk = γ00 + u0j + v0k",
        "u0j ~ N(0, τ²_plate)",
        "v0k ~ N(0, τ²_sample)",
    ]
    assert "crossed" in e.sections[1].title
    assert "i: observation in plate j and sample k" in e.where


def test_equations_links_and_categorical_predictors():
    e = _equations("cbpp")  # binomial, logit link, period as three indicator columns
    assert e.lines()[:2] == ["y_ij ~ Binomial(size_ij, p_ij)",
                             "logit(p_ij) = β0j + β1j·period2_ij + β2j·period3_ij + β3j·period4_ij"]
    assert "β3j = γ30" in e.lines()
    # without the data's columns, a categorical predictor is one symbol with a note
    bare = eq.equations(stangen.build(SPECS / "cbpp.yaml").description)
    assert "logit(p_ij) = β0j + β1j·period_ij" in bare.lines()
    assert any("period is categorical" in n for n in bare.notes)


def test_equations_cross_level_interaction_and_other_families():
    e = _equations("exam")
    assert "β1j = γ10 + γ11·schavg_j + u1j" in e.lines()
    poisson = stangen.Spec(outcome="y", family="poisson", predictors=["x"],
                           levels={"g": stangen.Level(varying=["intercept", "x"], correlated=False)})
    lines = eq.equations(stangen.compiler.model.describe(poisson)).lines()
    assert lines[:2] == ["y_ij ~ Poisson(λ_ij)", "log(λ_ij) = β0j + β1j·x_ij"]
    assert "u0j ~ N(0, τ²_g,0); u1j ~ N(0, τ²_g,1), independent" in lines
    bernoulli = stangen.Spec(outcome="vote", family="bernoulli", predictors=["age"])
    lines = eq.equations(stangen.compiler.model.describe(bernoulli)).lines()
    assert lines == ["y_i ~ Bernoulli(p_i)", "logit(p_i) = β0 + β1·age_i"]


def test_equations_nested_and_crossed_together():
    spec = stangen.Spec(outcome="y", levels={"batch": stangen.Level(), "cask": stangen.Level(within="batch"),
                                             "sample": stangen.Level()})
    e = eq.equations(stangen.compiler.model.describe(spec))
    assert e.lines()[0] == "y_i(jkl) = β0jkl + ε_i(jkl)"
    assert "β0jkl = γ00 + u0jk + v0k + w0l" in e.lines()
    assert "i: observation in cask j in batch k and sample l" in e.where
