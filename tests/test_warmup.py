"""The initial inverse metric for large data (stangen/run/warmup.py): one variance per unconstrained parameter, in
the program's order, close to the posterior's; only for the structures and sizes it is made for; CmdStan
starts from it, the embedded backend cannot."""
from __future__ import annotations

import json
import re

import numpy as np
import pytest

import stangen
from stangen.run import warmup
from stangen.run.backends import SamplerSettings, get_backend
from stangen.run.backends._data import prepare_data
from stangen.run.backends.cmdstan import CmdStanBackend, find_cmdstan
from stangen.compiler.program import build
from stangen.run.warmup import initial_inverse_metric

from conftest import SPECS
from test_backend_cmdstan import PROGRAM, fake  # noqa: F401 - the fake CmdStan fixture

NO_CMDSTAN = "CmdStan is not installed here: set CMDSTAN (bash ../shared/cmdstan-offline/build.sh builds one offline)"
COVERED = ["penicillin", "pastes"]  # crossed centered levels; a centered level within an integrated one


def parameter_names(code: str) -> list[str]:
    block = re.search(r"^parameters \{\n(.*?)^\}", code, re.S | re.M).group(1)
    return re.findall(r"^\s+(?:real|vector|matrix)\S*(?:\[[^\]]*\])?\s+(\w+);", block, re.M)


def unconstrained_posterior_variances(fit, code: str) -> np.ndarray:
    """Each unconstrained parameter's posterior variance, from the draws (positive ones on the log scale)."""
    out = []
    for name in parameter_names(code):
        draws = fit.idata.posterior[name].values
        draws = draws.reshape(draws.shape[0] * draws.shape[1], -1)
        if name == "sigma" or name.startswith("sd_"):
            draws = np.log(draws)
        out += list(draws.var(axis=0))
    return np.asarray(out)


@pytest.mark.parametrize("name", COVERED)
def test_metric_is_near_the_posterior_variances(example_fit, name):
    program = build(SPECS / f"{name}.yaml")
    metric = initial_inverse_metric(program.description, program.stan_data, min_rows=0)
    posterior = unconstrained_posterior_variances(example_fit(name), program.code)
    assert metric.shape == posterior.shape
    ratio = metric / posterior
    # an initial metric needs the scales, not the digits: within 3× for most, 10× for all (the unit
    # metric is off by 30× to 1000× here)
    assert 1 / 2 < np.median(ratio) < 2, ratio
    assert np.mean((ratio > 1 / 3) & (ratio < 3)) >= 0.8, ratio
    assert np.all((ratio > 1 / 10) & (ratio < 10)), ratio


@pytest.mark.parametrize("name", COVERED)
def test_metric_has_one_entry_per_unconstrained_parameter(name):
    """Stan's own count: the compiled model refuses a parameter vector of any other length."""
    from stangen.run.backends.httpstan_api import load_module

    program = build(SPECS / f"{name}.yaml")
    metric = initial_inverse_metric(program.description, program.stan_data, min_rows=0)
    module = load_module(get_backend("pystan").compile(program.code).handle.module_path)
    data = prepare_data(program.stan_data)
    assert np.isfinite(module.log_prob(data, list(np.zeros(len(metric))), True))
    with pytest.raises(RuntimeError, match="number of parameters"):
        module.log_prob(data, list(np.zeros(len(metric) + 1)), True)


def parameter_sizes(code: str, stan_data: dict) -> dict[str, int]:
    """Each parameter's number of unconstrained values (scalars and vectors, as these programs declare them)."""
    block = re.search(r"^parameters \{\n(.*?)^\}", code, re.S | re.M).group(1)
    sizes = {}
    for size, name in re.findall(r"^\s+(?:real|vector)\S*?(?:<[^>]*>)?(?:\[([^\]]*)\])?\s+(\w+);", block, re.M):
        sizes[name] = int(eval(size, {}, dict(stan_data))) if size else 1
    return sizes


def test_mixed_level_entries_follow_its_split():
    """A mixed level: its centered groups' variances, then its noncentered groups' divided by τ²."""
    from stangen.compiler.parameterization import working_fit
    from test_large_crossed import CROSSED, insteval_like  # students rating 1 to 60 lectures: s is mixed

    program = build(CROSSED, insteval_like())
    assert {c.level: c for c in program.parameterization}["s"].parameterization == "mixed"
    data = program.stan_data
    metric = initial_inverse_metric(program.description, data, min_rows=0)
    sizes = parameter_sizes(program.code, data)
    assert len(metric) == sum(sizes.values())
    names = list(sizes)
    start = sum(sizes[n] for n in names[:names.index("z_s_noncentered")])
    fit = working_fit(program.description, data)
    noncentered = np.asarray(data["noncentered_s"]) - 1
    expected = fit.group_variance["s"][noncentered, 0] / fit.tau["s"][0, 0]
    np.testing.assert_allclose(metric[start:start + len(noncentered)], expected)
    start = sum(sizes[n] for n in names[:names.index("b_s_centered")])
    centered = np.asarray(data["centered_s"]) - 1
    np.testing.assert_allclose(metric[start:start + len(centered)], fit.group_variance["s"][centered, 0])


def test_only_large_data_of_covered_structures():
    big = build(SPECS / "insteval.yaml")
    assert big.data.n >= warmup.LARGE_DATA and initial_inverse_metric(big.description, big.stan_data) is not None
    small = build(SPECS / "penicillin.yaml")
    assert initial_inverse_metric(small.description, small.stan_data) is None  # 144 rows: Stan's start
    for name in ("sleepstudy", "cbpp", "language", "blackmore"):  # slopes, binomial, group predictors, …
        program = build(SPECS / f"{name}.yaml")
        assert not warmup.covered(program.description), name
        assert initial_inverse_metric(program.description, program.stan_data, min_rows=0) is None
    prior = build(SPECS / "insteval.yaml", prior_only=True)
    assert initial_inverse_metric(prior.description, prior.stan_data) is None  # no data to scale by


def test_embedded_backend_starts_from_the_unit_metric(monkeypatch):
    monkeypatch.setattr(warmup, "LARGE_DATA", 0)
    fit = stangen.fit(SPECS / "penicillin.yaml", backend="pystan", chains=1, warmup=50, draws=20, quiet=True)
    assert fit.info["initial_metric"] == "unit" and "inv_metric" not in fit.info["settings"]


@pytest.mark.stanc
def test_cmdstan_is_given_the_metric_file(fake):  # noqa: F811
    backend = CmdStanBackend()
    model = backend.compile(PROGRAM)
    seen = {}
    original = CmdStanBackend._run

    def run(self, chains, exe, data_file, settings, threads, record):
        seen["metric"] = json.loads((data_file.parent / "metric.json").read_text())
        return original(self, chains, exe, data_file, settings, threads, record)

    CmdStanBackend._run = run
    try:
        backend.sample(model, {"N": 2, "y": [1.0, 2.0]},
                       SamplerSettings(chains=1, warmup=3, draws=2, quiet=True, inv_metric=(0.5, 0.25) + (1.0,) * 6))
    finally:
        CmdStanBackend._run = original
    call = json.loads((fake / "calls.jsonl").read_text().splitlines()[0])
    assert "metric=diag_e" in call and any(a.startswith("metric_file=") and a.endswith("metric.json") for a in call)
    assert call.index("metric=diag_e") > call.index("engine=nuts") and call.index("metric=diag_e") < call.index("adapt")
    assert seen["metric"] == {"inv_metric": [0.5, 0.25] + [1.0] * 6}


@pytest.mark.skipif(find_cmdstan() is None, reason=NO_CMDSTAN)
def test_cmdstan_samples_from_the_estimated_metric(monkeypatch):
    monkeypatch.setattr(warmup, "LARGE_DATA", 0)
    fit = stangen.fit(SPECS / "pastes.yaml", backend="cmdstan", chains=2, warmup=300, draws=300, seed=2, quiet=True)
    assert fit.info["initial_metric"] == "estimated"
    assert fit.summary()["r_hat"].max() < 1.05
