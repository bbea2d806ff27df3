"""Where the chains start (stangen/compiler/start.py): the population-level parameters near the working fit, by
the program's own names and shapes under every parameterization, each chain apart and reproducibly; fit()
passes them to the backend unless `init` is set."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest
import yaml

import stangen
from stangen.compiler.program import build
from stangen.compiler.start import LOG_SD_SPREAD, SE_SPREAD
from stangen.core.errors import SpecError

from conftest import ROOT, SPECS

DECLARATION = re.compile(r"^\s+(real|vector|matrix|cholesky_factor_corr|array)(<[^>]*>)?(?:\[([^\]]*)\])?\s+(\w+);",
                         re.M)
FORMS = ["auto", "noncentered", "centered", "partial"]


def declared(code: str) -> dict[str, tuple[str, str, str]]:
    """The parameters block's declarations: name → (type, constraint, sizes)."""
    block = re.search(r"^parameters \{\n(.*?)^\}", code, re.S | re.M).group(1)
    return {m.group(4): (m.group(1), m.group(2) or "", m.group(3) or "") for m in DECLARATION.finditer(block)}


def size(expression: str, stan_data: dict) -> int:
    return int(expression) if expression.isdigit() else int(stan_data[expression])


def programs():
    for path in sorted(SPECS.glob("*.yaml")):
        if path.stem == "insteval":  # its working fit over 73k rows is slow; the crossed structure is penicillin's
            continue
        for form in FORMS:
            yield pytest.param(path.stem, form, id=f"{path.stem}-{form}")


@pytest.mark.parametrize("name, form", list(programs()))
def test_start_names_and_shapes_are_the_programs(name, form):
    """Every started parameter is declared in the program with the start's shape (a vector of its size, or a
    scalar), and positive where the program constrains it so: a wrong name or size would stop Stan."""
    spec = stangen.Spec.from_yaml(SPECS / f"{name}.yaml")
    if form != "auto":
        try:
            spec = spec.with_parameterization(form)
            program = build(spec)
        except SpecError:  # a form this spec's levels cannot take
            pytest.skip(f"{name} cannot be sampled {form}")
    else:
        program = build(spec)
    if not spec.levels:
        assert program.start is None
        return
    params = declared(program.code)
    values = program.start.chain(seed=1, chain_id=1)
    assert values, "no population-level parameter started"
    assert program.description.intercept_param in values or not program.description.intercept
    for pname, value in values.items():
        assert pname in params, f"{pname} is not a parameter of the program"
        kind, constraint, sizes = params[pname]
        if kind == "real":
            assert isinstance(value, float), pname
        else:
            assert kind == "vector" and isinstance(value, list), pname
            assert len(value) == size(sizes, program.stan_data), pname
        if "lower=0" in constraint:
            assert np.all(np.asarray(value) > 0), pname
        assert np.all(np.isfinite(value)), pname


def test_each_chain_starts_apart_reproducibly_within_its_spread():
    program = build(SPECS / "sleepstudy.yaml")
    start = program.start
    first, again, second = start.chain(7, 1), start.chain(7, 1), start.chain(7, 2)
    assert first == again
    assert first != second and first != start.chain(8, 1)
    for v in start.values:
        center, spread = np.asarray(v.value), np.asarray(v.spread)
        for chain in range(1, 21):
            drawn = np.atleast_1d(start.chain(3, chain)[v.name])
            if v.positive:
                assert np.all(np.abs(np.log(drawn / center)) <= spread + 1e-12), v.name
            else:
                assert np.all(np.abs(drawn - center) <= spread + 1e-9), v.name


def test_start_is_near_lme4_on_sleepstudy():
    """The centers against lme4's REML fit: the coefficients within a standard error, the sds within 30%,
    and each chain's spread about SE_SPREAD standard errors (LOG_SD_SPREAD on the log of an sd)."""
    reference = json.loads((ROOT / "tests" / "reference" / "sleepstudy.json").read_text())["REML"]
    fixef = reference["fixef"]
    sd = {(r["var1"], r["var2"]): r["sdcor"] for r in reference["varcorr"] if r["group"] == "Subject"}
    days = float(np.mean(stangen.build(SPECS / "sleepstudy.yaml").stan_data["x_Days"]))
    start = {v.name: v for v in build(SPECS / "sleepstudy.yaml").start.values}
    # the program samples the intercept and its sd at the mean of Days
    intercept_at_mean = fixef["(Intercept)"]["estimate"] + days * fixef["Days"]["estimate"]
    assert abs(start["Intercept_centered"].value[0] - intercept_at_mean) < fixef["(Intercept)"]["se"]
    assert abs(start["beta_Days"].value[0] - fixef["Days"]["estimate"]) < fixef["Days"]["se"]
    assert start["beta_Days"].spread[0] == pytest.approx(SE_SPREAD * fixef["Days"]["se"], rel=0.3)
    s0, s1, r = sd[("(Intercept)", None)], sd[("Days", None)], sd[("(Intercept)", "Days")]
    sd_at_mean = [np.sqrt(s0 ** 2 + 2 * r * s0 * s1 * days + (s1 * days) ** 2), s1]
    np.testing.assert_allclose(start["sd_Subject_at_mean"].value, sd_at_mean, rtol=0.3)
    assert start["sd_Subject_at_mean"].spread == (LOG_SD_SPREAD, LOG_SD_SPREAD)


def test_start_is_near_the_truth_of_a_gamma_simulation():
    """claims (gamma, log link), simulated: the working fit's centers near the true values, on the link scale."""
    truth = yaml.safe_load((ROOT / "examples" / "data" / "claims.truth.yaml").read_text())
    program = build(SPECS / "claims.yaml")
    start = {v.name: v for v in program.start.values}
    assert abs(start["beta_vehicle_age"].value[0] - truth["coefficients"]["vehicle_age"]) < 0.03
    assert abs(start["gamma_region_intercept_urban"].value[0] - truth["effects"]["region"]["intercept"]["urban"]) < 0.3
    assert 0.02 < start["sd_region_at_mean"].value[1] < 0.08  # the slope's sd (truth 0.04)


def test_no_start_for_the_prior():
    """Sampling the prior starts as Stan does: the working fit describes the data's posterior, not the prior."""
    assert build(SPECS / "sleepstudy.yaml", prior_only=True).start is None


@pytest.mark.sampling
def test_fit_starts_there_unless_init_is_set(example_fit):
    """The run records where its chains started; `init` asks for Stan's uniform start everywhere."""
    assert example_fit("sleepstudy").info["start"] == "working fit"
    uniform = stangen.fit(SPECS / "sleepstudy.yaml", backend="pystan", chains=1, warmup=20, draws=10, init=2,
                          quiet=True)
    assert uniform.info["start"] == "uniform"
