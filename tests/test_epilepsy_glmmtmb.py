"""Agreement with glmmTMB on overdispersed counts: brms's epilepsy seizure counts, count ~ zAge + zBase * Trt +
(1 | patient), family nbinom2 (tests/reference/epilepsy.json, computed by scripts/reference_glmmtmb.R; R is
never called here)."""
from __future__ import annotations

import json

import pytest

from conftest import ROOT, SPECS

REFERENCE = json.loads((ROOT / "tests" / "reference" / "epilepsy.json").read_text())["ML"]


@pytest.mark.sampling
def test_negative_binomial_agrees_with_glmmtmb():
    import stangen

    fit = stangen.fit(SPECS / "epilepsy.yaml", chains=4, warmup=1000, draws=1000, seed=4, quiet=True,
                      backend="pystan")
    assert fit.convergence().ok, fit.convergence().text()
    table = fit.summary()
    for name, ref in REFERENCE["fixef"].items():
        ours = "Intercept" if name == "(Intercept)" else name
        est, sd = table.loc[ours, "mean"], table.loc[ours, "sd"]
        assert abs(est - ref["estimate"]) < 0.5 * sd, (name, est, ref)
    for name, value in (("sd(patient: intercept)", REFERENCE["sd_patient"]), ("phi", REFERENCE["phi"])):
        lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
        assert lo < value < hi, f"glmmTMB's {name} {value:.3f} outside [{lo:.3f}, {hi:.3f}]"
    assert "Family parameter (negbinomial family): phi" in fit.lme4()
