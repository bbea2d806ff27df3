"""R² of a multilevel fit (issue 29, first slice): Nakagawa's marginal and conditional R² per draw, agreeing with
performance::r2_nakagawa (tests/reference/r2.json, scripts/reference_r2.R; R is never called here), and the
Bayesian R² (Gelman et al. 2019), each checked against a brute-force computation over the draws."""
from __future__ import annotations

import json

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen import Level, Spec
from stangen.results.multilevel import quantities, r_squared

from conftest import ROOT, SPECS
from test_predict import fake_fit

REFERENCE = json.loads((ROOT / "tests" / "reference" / "r2.json").read_text())


def test_r2_is_the_variance_shares_computed_over_the_draws():
    """sleepstudy's correlated intercept and Days slope (Johnson's z' Σ z), with made-up draws."""
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    r2 = r_squared(fit)
    post = fit.posterior
    data = pd.read_csv(ROOT / "examples" / "data" / "sleepstudy.csv")
    days, y = data["Days"].to_numpy(float), data["Reaction"].to_numpy(float)
    intercept, beta = post["Intercept"].values.reshape(-1), post["beta_Days"].values.reshape(-1)
    sd, corr = post["sd_Subject"].values.reshape(-1, 2), post["corr_Subject"].values.reshape(-1, 2, 2)
    sigma = post["sigma"].values.reshape(-1)
    u = post["u_Subject"].values.reshape(len(sigma), -1, 2)
    subject = fit.program.stan_data["idx_Subject"] - 1
    for s in range(len(sigma)):
        var_f = np.var(intercept[s] + beta[s] * days)
        cov = corr[s] * np.outer(sd[s], sd[s])
        z = np.column_stack([np.ones_like(days), days])
        var_u = np.mean(np.einsum("ni,ij,nj->n", z, cov, z))
        total = var_f + var_u + sigma[s] ** 2
        assert r2["R2 marginal"][s] == pytest.approx(var_f / total, rel=1e-10)
        assert r2["R2 conditional"][s] == pytest.approx((var_f + var_u) / total, rel=1e-10)
        fitted = intercept[s] + beta[s] * days + u[s, subject, 0] + u[s, subject, 1] * days
        bayes = np.var(fitted) / (np.var(fitted) + np.var(y - fitted))
        assert r2["Bayes R2"][s] == pytest.approx(bayes, rel=1e-10)
    assert {"R2 marginal", "R2 conditional", "Bayes R2"} <= set(quantities(fit).index)
    assert "R2: marginal " in fit.lme4() and "(Nakagawa); Bayes R2 " in fit.lme4()


def test_large_data_thin_the_draws(monkeypatch):
    import stangen.results.multilevel as multilevel
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    monkeypatch.setattr(multilevel, "R2_BUDGET", 180 * 4)  # 10 draws of 180 rows: every 3rd draw of each chain
    assert len(r_squared(fit)["Bayes R2"]) == 2 * 2


@pytest.mark.sampling
@pytest.mark.parametrize("name", ["exam", "cbpp"])
def test_nakagawa_r2_agrees_with_performance(name):
    if name == "exam":
        spec = Spec(outcome="normexam", predictors=["standLRT", "intake"], levels={"school": Level()},
                    data=str(ROOT / "examples" / "data" / "exam.csv"))
    else:
        spec = SPECS / "cbpp.yaml"
    fit = stangen.fit(spec, quiet=True, backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    r2 = r_squared(fit)
    for kind in ("marginal", "conditional"):
        draws, reference = r2[f"R2 {kind}"], REFERENCE[name][kind]
        lo, hi = np.quantile(draws, [0.025, 0.975])
        assert lo < reference < hi or abs(draws.mean() - reference) < 0.02, (kind, reference, lo, hi)


# -- hypotheses (brms's hypothesis()) ------------------------------------------------------------------------

def test_hypotheses_are_computed_from_the_draws():
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    table = fit.hypothesis("Days > 0.05; Intercept - 2 * Days < 0; `sd(Subject: Days)` = 0.1")
    days = fit.posterior["beta_Days"].values.reshape(-1)
    intercept = fit.posterior["Intercept"].values.reshape(-1)
    sd = fit.posterior["sd_Subject"].values.reshape(-1, 2)[:, 1]
    first, second, third = table.itertuples()
    assert first.estimate == pytest.approx((days - 0.05).mean(), abs=1e-12)
    assert first.post_prob == pytest.approx((days > 0.05).mean())
    p = (intercept - 2 * days < 0).mean()
    assert second.post_prob == pytest.approx(p) and second.evid_ratio == pytest.approx(p / (1 - p))
    assert third.estimate == pytest.approx((sd - 0.1).mean()) and np.isnan(third.evid_ratio)
    assert list(table.index) == ["Days > 0.05", "Intercept - 2 * Days < 0", "`sd(Subject: Days)` = 0.1"]


@pytest.mark.parametrize("text, says", [
    ("Dayz > 5", "no parameter 'Dayz'; did you mean 'Days'?"),
    ("Days", "write one comparison"),
    ("Days ** 2 > 5", "only +, -, *, /"),
    ("sd(Subject: Days) > 1", "backticks"),
])
def test_a_hypothesis_stangen_cannot_read_is_named(text, says):
    from stangen.core.errors import UserError
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    with pytest.raises(UserError) as err:
        fit.hypothesis(text)
    assert any(says in p.message for p in err.value.problems), err.value.problems


# -- average slopes (marginaleffects' avg_slopes) -----------------------------------------------------------

def _logit_fit(tmp_path, seed: int, n: int, x_mean: float, x_sd: float, groups: str):
    """A logit model y ~ x + f + (1 | g) (f: 'lo' or 'hi') on random data, with made-up draws: (fit, data)."""
    rng = np.random.default_rng(seed)
    data = pd.DataFrame({"y": rng.integers(0, 2, n), "x": rng.normal(x_mean, x_sd, n), "g": rng.choice(list(groups), n),
                         "f": rng.choice(["lo", "hi"], n)})
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "logit.yaml").write_text("data: d.csv\nfamily: bernoulli\noutcome: y\npredictors: [x, f]\n"
                                         "levels: {g: {}}\n")
    return fake_fit(tmp_path / "logit.yaml"), data


def test_an_average_slope_on_a_logit_model_is_the_brute_force_one(tmp_path):
    fit, data = _logit_fit(tmp_path, seed=3, n=120, x_mean=2, x_sd=1.5, groups="abcdef")
    table = fit.slopes("x")
    by_f = fit.slopes("x", by="f")
    post = fit.posterior
    intercept, beta_x = post["Intercept"].values.reshape(-1), post["beta_x"].values.reshape(-1)
    beta_f = post["beta_f"].values.reshape(len(intercept), -1)[:, 0]
    u = post["u_g"].values.reshape(len(intercept), -1)
    labels = fit.program.data.labels["g"]
    g = data["g"].map({label: k for k, label in enumerate(labels)}).to_numpy()
    hi = (data["f"] == fit.program.data.categories["f"][1]).to_numpy()  # the non-reference category
    h = 1e-4 * np.ptp(data["x"])
    eta = intercept[:, None] + beta_x[:, None] * data["x"].to_numpy()[None, :] + beta_f[:, None] * hi[None, :] + u[:, g]
    p0, p1 = 1 / (1 + np.exp(-eta)), 1 / (1 + np.exp(-(eta + beta_x[:, None] * h)))
    slope = ((p1 - p0) / h).mean(axis=1)
    assert table.loc["x", "estimate"] == pytest.approx(slope.mean(), abs=1e-10)
    for label in ("hi", "lo"):
        rows = (data["f"] == label).to_numpy()
        assert by_f.loc[label, "estimate"] == pytest.approx(((p1 - p0) / h)[:, rows].mean(axis=1).mean(), abs=1e-10)
    from stangen.core.errors import UserError
    with pytest.raises(UserError) as err:
        fit.slopes("f")
    assert err.value.problems[0].path == "--predictor"


def test_average_comparisons_are_the_brute_force_ones(tmp_path, capsys):
    """marginaleffects' avg_comparisons on a logit model: +1 in x, x from 0 to 2, f's category against its
    reference, by f; each the rows' mean of a difference of probabilities, per draw."""
    fit, data = _logit_fit(tmp_path, seed=5, n=90, x_mean=0, x_sd=1, groups="abcd")
    post = fit.posterior
    intercept, beta_x = post["Intercept"].values.reshape(-1), post["beta_x"].values.reshape(-1)
    beta_f = post["beta_f"].values.reshape(len(intercept), -1)[:, 0]
    u = post["u_g"].values.reshape(len(intercept), -1)
    g = data["g"].map({label: k for k, label in enumerate(fit.program.data.labels["g"])}).to_numpy()
    reference, other = fit.program.data.categories["f"]
    x, is_other = data["x"].to_numpy(), (data["f"] == other).to_numpy()

    def p(x_value, other_value):
        eta = intercept[:, None] + beta_x[:, None] * x_value + beta_f[:, None] * other_value + u[:, g]
        return 1 / (1 + np.exp(-eta))
    plus_one = (p(x + 1, is_other) - p(x, is_other)).mean(axis=1)
    table = fit.comparisons("x")
    assert table.loc[("x", "+1"), "estimate"] == pytest.approx(plus_one.mean(), abs=1e-12)
    assert table.loc[("x", "+1"), "P(>0)"] == pytest.approx((plus_one > 0).mean())
    span = fit.comparisons("x", values=(0, 2), by="f")
    for label in ("hi", "lo"):
        rows = (data["f"] == label).to_numpy()
        expected = (p(2.0, is_other) - p(0.0, is_other))[:, rows].mean(axis=1).mean()
        assert span.loc[(label, "2 - 0"), "estimate"] == pytest.approx(expected, abs=1e-12)
    category = fit.comparisons("f")
    expected = (p(x, 1.0) - p(x, 0.0)).mean(axis=1).mean()
    assert category.loc[("f", f"{other} - {reference}"), "estimate"] == pytest.approx(expected, abs=1e-12)
    from stangen.core.errors import UserError
    with pytest.raises(UserError) as err:
        fit.comparisons("f", values=("lo", "mid"), by="x")
    assert {p.path for p in err.value.problems} == {"--values", "--by"}


# -- marginal means and contrasts (emmeans) ------------------------------------------------------------------

EMMEANS = json.loads((ROOT / "tests" / "reference" / "emmeans.json").read_text())


def test_marginal_means_average_the_grid_with_equal_or_proportional_weights(tmp_path):
    """A logit model with two factors: each mean is the average over the other factor's categories of the
    population-level probability, computed by hand from the draws."""
    rng = np.random.default_rng(4)
    n = 150
    data = pd.DataFrame({"y": rng.integers(0, 2, n), "x": rng.normal(1, 1, n), "g": rng.choice(list("abcde"), n),
                         "f": rng.choice(["a", "b", "c"], n), "h": rng.choice(["u", "v"], n, p=[0.8, 0.2])})
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.yaml").write_text("data: d.csv\nfamily: bernoulli\noutcome: y\npredictors: [x, f, h]\n"
                                     "levels: {g: {}}\n")
    fit = fake_fit(tmp_path / "m.yaml")
    post = fit.posterior
    S = post.sizes["chain"] * post.sizes["draw"]
    b0, bx = post["Intercept"].values.reshape(-1), post["beta_x"].values.reshape(-1)
    bf, bh = post["beta_f"].values.reshape(S, -1), post["beta_h"].values.reshape(S, -1)
    xbar = data["x"].mean()

    def p(f_index, h_index):
        eta = b0 + bx * xbar + (bf[:, f_index - 1] if f_index else 0) + (bh[:, h_index - 1] if h_index else 0)
        return 1 / (1 + np.exp(-eta))
    equal = [(p(k, 0) + p(k, 1)) / 2 for k in range(3)]
    share_v = (data["h"] == "v").mean()
    proportional = [(1 - share_v) * p(k, 0) + share_v * p(k, 1) for k in range(3)]
    means, contrasts = fit.means("f", contrast="pairwise")
    assert np.allclose(means["estimate"], [e.mean() for e in equal], atol=1e-12)
    assert np.allclose(fit.means("f", weights="proportional")[0]["estimate"], [e.mean() for e in proportional],
                       atol=1e-12)
    assert list(contrasts.index) == ["a - b", "a - c", "b - c"]
    assert contrasts.loc["a - c", "P(>0)"] == pytest.approx((equal[0] > equal[2]).mean())
    link, _ = fit.means("f", scale="link", at={"x": 0.0})
    assert link.loc["b", "estimate"] == pytest.approx((b0 + bf[:, 0] + bh[:, 0] / 2).mean(), abs=1e-12)
    from stangen.core.errors import UserError
    with pytest.raises(UserError) as err:
        fit.means("x", contrast="all", at={"f": 1})
    assert {p.path for p in err.value.problems} == {"--by", "--contrast", "--at"}


def test_marginal_means_over_new_groups_integrate_their_effects(tmp_path):
    """groups='sample': each draw's mean averages the probability over new groups' intercepts drawn from
    N(0, sd²); with sd 2 that is the Gauss–Hermite integral of the logistic, well below the population-level
    (u = 0) probability at eta = 2."""
    rng = np.random.default_rng(6)
    n = 80
    data = pd.DataFrame({"y": rng.integers(0, 2, n), "g": rng.choice(list("abcd"), n),
                         "f": rng.choice(["a", "b"], n)})
    data.to_csv(tmp_path / "d.csv", index=False)
    (tmp_path / "m.yaml").write_text("data: d.csv\nfamily: bernoulli\noutcome: y\npredictors: [f]\n"
                                     "levels: {g: {}}\n")
    fit = fake_fit(tmp_path / "m.yaml")
    fit.posterior["Intercept"] = fit.posterior["Intercept"] + 2.0
    fit.posterior["sd_g"] = fit.posterior["sd_g"] * 0 + 2.0
    population, _ = fit.means("f")
    sampled, contrasts = fit.means("f", groups="sample", contrast="pairwise")
    nodes, weights = np.polynomial.hermite_e.hermegauss(40)
    b0 = fit.posterior["Intercept"].values.reshape(-1)
    bf = fit.posterior["beta_f"].values.reshape(len(b0), -1)[:, 0]
    for label, eta in (("a", b0), ("b", b0 + bf)):
        integral = (1 / (1 + np.exp(-(eta[:, None] + 2.0 * nodes[None, :])))) @ weights / np.sqrt(2 * np.pi)
        assert sampled.loc[label, "estimate"] == pytest.approx(integral.mean(), abs=0.025)
        assert population.loc[label, "estimate"] == pytest.approx((1 / (1 + np.exp(-eta))).mean(), abs=1e-12)
        assert population.loc[label, "estimate"] - sampled.loc[label, "estimate"] > 0.08
    # the same new groups in every cell of a draw: with no effect of f, its contrast is 0 in every draw
    fit.posterior["beta_f"] = fit.posterior["beta_f"] * 0
    _, contrasts = fit.means("f", groups="sample", contrast="pairwise")
    assert contrasts.loc["a - b", "estimate"] == 0 and contrasts.loc["a - b", "est_error"] == 0


def test_an_ordinal_outcome_s_means_are_its_category_probabilities():
    """soup's SURENESS (6 categories) by PROD: P(y = k) at each product, population level, the respondent's
    gender predictor at the reference; they sum to 1, and contrasts compare each category's probability."""
    fit = fake_fit(SPECS / "soup.yaml")
    means, contrasts = fit.means("PROD", contrast="pairwise")
    cuts = fit.posterior["cutpoints"].values.reshape(-1, 5)
    beta = fit.posterior["beta_PROD"].values.reshape(len(cuts), -1)[:, 0]
    categories = fit.program.data.outcome_categories
    assert list(means.index.names) == ["PROD", "SURENESS"] and len(means) == 2 * 6
    for label, eta in (("Ref", np.zeros(len(cuts))), ("Test", beta)):
        below = 1 / (1 + np.exp(-(cuts - eta[:, None])))
        p = np.diff(np.column_stack([np.zeros(len(cuts)), below, np.ones(len(cuts))]), axis=1)
        assert np.allclose(means.loc[label, "estimate"].to_numpy(), p.mean(axis=0), atol=1e-12)
    assert means.groupby(level="PROD")["estimate"].sum().to_numpy() == pytest.approx([1, 1])
    assert list(contrasts.index)[0] == ("Ref - Test", categories[0]) and len(contrasts) == 6
    link, _ = fit.means("PROD", scale="link")
    assert link.loc["Test", "estimate"] == pytest.approx(beta.mean(), abs=1e-12)


@pytest.mark.sampling
def test_marginal_means_agree_with_emmeans(tmp_path, capsys):
    from stangen.cli import main
    exam = stangen.fit(Spec(outcome="normexam", predictors=["standLRT", "intake"], levels={"school": Level()},
                            data=str(ROOT / "examples" / "data" / "exam.csv")), quiet=True, backend="pystan")
    means, contrasts = exam.means("intake", contrast="pairwise")
    for table, reference in ((means, EMMEANS["exam"]["means"]), (contrasts, EMMEANS["exam"]["contrasts"])):
        for name, ref in reference.items():
            row = table.loc[name]
            assert abs(row["estimate"] - ref["estimate"]) < 0.5 * row["est_error"], (name, row, ref)
    cbpp = stangen.fit(SPECS / "cbpp.yaml", quiet=True, backend="pystan")
    means, _ = cbpp.means("period")
    for name, ref in EMMEANS["cbpp"]["means"].items():  # probabilities per animal
        row = means.loc[name]
        assert abs(row["estimate"] - ref["estimate"]) < 0.5 * row["est_error"], (name, row, ref)
    run = tmp_path / "cbpp"
    cbpp.save(run)
    assert main(["means", str(run), "--by", "period", "--contrast", "trt.vs.ctrl", "-o", str(tmp_path / "m.csv")]) == 0
    out = capsys.readouterr().out
    assert "Marginal means of E[incidence] per trial by period: population level" in out and "2 - 1" in out
    assert len(pd.read_csv(tmp_path / "m.csv")) == 4 + 3
    assert main(["means", str(run), "--by", "period", "--groups", "sample"]) == 0
    assert "averaged over new groups (effects drawn from the fitted distribution, 100 per cell" in \
        capsys.readouterr().out
    assert main(["comparisons", str(run), "--predictor", "period", "-o", str(tmp_path / "c.csv")]) == 0
    out = capsys.readouterr().out
    assert "Average change in E[incidence] per trial when period changes" in out and "4 - 1" in out
    assert list(pd.read_csv(tmp_path / "c.csv")["contrast"]) == ["2 - 1", "3 - 1", "4 - 1"]
