"""Agreement with ordinal::clmm on ordered ratings: ordinal's soup data, SURENESS ~ PROD + GENDER + (1 | RESP),
cumulative logit (tests/reference/soup.json, computed by scripts/reference_ordinal.R; R is never called here)."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, SPECS

REFERENCE = json.loads((ROOT / "tests" / "reference" / "soup.json").read_text())


@pytest.mark.sampling
def test_cumulative_agrees_with_clmm():
    import stangen

    # y_rep and log_lik are unused here: with them the program is the one tests/test_predict.py compiles
    fit = stangen.fit(SPECS / "soup.yaml", chains=4, warmup=1000, draws=1000, seed=4, quiet=True, backend="pystan",
                      generated=("y_rep", "log_lik"))
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    estimates = REFERENCE["fixef"] | {f"cutpoint[{name}]": ref for name, ref in REFERENCE["cutpoints"].items()}
    assert len(estimates) == 7
    for name, ref in estimates.items():
        est, sd = table.loc[name, "mean"], table.loc[name, "sd"]
        assert abs(est - ref["estimate"]) < 0.5 * sd, (name, est, ref)
    lo, hi = table.loc["sd(respondent: intercept)", "q2.5%"], table.loc["sd(respondent: intercept)", "q97.5%"]
    assert lo < REFERENCE["sd_RESP"] < hi, f"clmm's sd {REFERENCE['sd_RESP']:.3f} outside [{lo:.3f}, {hi:.3f}]"
    text = fit.lme4()
    assert "SURENESS ~ PROD + GENDER + (1 | respondent), family = cumulative" in text
    assert "1|2" in text and "5|6" in text
