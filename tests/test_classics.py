"""Recovery on the simulated lecture examples (a), (b), (d), (e): every true population-level value, sd and
sigma lies inside its 95% posterior interval ((c) is tests/test_recovery.py). Data: examples/data/<name>.csv
from examples/simulate_classics.py, true values beside them. Seeds are fixed, so outcomes are deterministic."""
import pytest
import yaml

import stangen

from conftest import DATA, SPECS

pytestmark = pytest.mark.sampling
RUN = dict(chains=4, warmup=500, draws=500, seed=21, quiet=True, backend="pystan")


def truth_names(name: str) -> dict[str, float]:
    """The true values under the summary's display names."""
    truth = yaml.safe_load((DATA / f"{name}.truth.yaml").read_text())
    out = {"Intercept": truth["Intercept"]} if "Intercept" in truth else {}
    out |= truth.get("coefficients", {})
    for level, by_coef in (truth.get("effects") or {}).items():
        for coef, effects in by_coef.items():
            out |= {(w if coef == "intercept" else f"{coef}:{w}"): v for w, v in effects.items()}
    for level, sds in truth["sd"].items():
        out |= {f"sd({level}: {coef})": v for coef, v in sds.items()}
    for level, matrix in (truth.get("cor") or {}).items():
        coefs = list(truth["sd"][level])
        out[f"cor({level}: {coefs[0]}, {coefs[1]})"] = matrix[0][1]
    if "sigma" in truth:
        out["sigma"] = truth["sigma"]
    return out


def check_recovery(fit, truth):
    table = fit.summary()
    missed = {k: (v, round(table.loc[k, "q2.5%"], 3), round(table.loc[k, "q97.5%"], 3)) for k, v in truth.items()
              if not table.loc[k, "q2.5%"] < v < table.loc[k, "q97.5%"]}
    assert not missed, f"outside the 95% interval: {missed}\n{table}"
    # these runs are short (4 x 500): R-hat below 1.05 here; full-length fits are held to 1.01 by `stangen check`
    assert table["r_hat"].max() < 1.05, table["r_hat"]


@pytest.mark.parametrize("name", ["students", "voters", "legislators", "elections"])
def test_simulated_example_recovers_its_true_values(name):
    fit = stangen.fit(SPECS / f"{name}.yaml", **RUN)
    truth = truth_names(name)
    assert set(truth) <= set(fit.summary().index)
    check_recovery(fit, truth)


def test_group_mean_removes_the_bias_of_a_confounded_predictor():
    """Hours depend on the student effect: the plain random-intercept estimate of hours is biased upward (it
    mixes in the between-student slope); with the student mean of hours it is not. With 5 exams per student
    and sigma = 0.2 << sd(alpha) = 0.7 the random-intercept estimate is mostly within-student, so the bias is
    modest (seed 2: 0.778 vs 0.748); the contextual effect of the student mean shows the confounding plainly."""
    plain = stangen.fit(SPECS / "students_confounded.yaml", **RUN).summary()
    within = stangen.fit(SPECS / "students_within_between.yaml", **RUN).summary()
    bias_plain, bias_within = plain.loc["hours", "mean"] - 0.75, within.loc["hours", "mean"] - 0.75
    assert bias_plain > 0.02 and bias_plain > 3 * abs(bias_within), (bias_plain, bias_within)
    assert within.loc["hours", "q2.5%"] < 0.75 < within.loc["hours", "q97.5%"]
    assert within.loc["mean_hours", "q2.5%"] > 0.5  # the between-student slope is far above the within one
