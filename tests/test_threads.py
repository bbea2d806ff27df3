"""Threads within a chain: the threaded program (the likelihood summed by reduce_sum over slices of rows) is the
same model as the plain one — the same log density and gradient at the same parameter values, the same
parameters and generated quantities — for every spec whose likelihood is a sum over rows; it is refused where
it is not, and where the backend cannot run threads; CmdStan builds it with STAN_THREADS and runs its chains
with num_threads."""
from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen import cli
from stangen.run.backends import BackendError, SamplerSettings, get_backend
from stangen.run.backends._data import prepare_data
from stangen.run.backends.cmdstan import CmdStanBackend, find_cmdstan
from stangen.compiler.standata import likelihood_grainsize
from stangen.core.errors import SpecError
from stangen.compiler.program import build
from stangen.spec import Spec
from stangen.run.stanc import check

from conftest import GOLDEN, SPECS, read_example
from test_backend_cmdstan import fake  # noqa: F401 - the fake CmdStan fixture

SPEC_FILES = sorted(SPECS.glob("*.yaml"))
# (correlated errors, the zero-inflated and hurdle families' likelihood split by the outcome's zeros, and
# sub-models for now, are refused: see tests/test_residuals.py, tests/test_zero_families.py, tests/test_submodels.py)
ROW_SEPARABLE = [p for p in SPEC_FILES if "correlation:" not in p.read_text() and
                 not re.search(r"^family: (zero_inflated|hurdle)_|^parameters:", p.read_text(), re.M)]
NO_CMDSTAN = "CmdStan is not installed here: set CMDSTAN (bash ../shared/cmdstan-offline/build.sh builds one offline)"


def block(code: str, name: str) -> str:
    """A top-level block of a Stan program, from its header to the closing brace at column 0."""
    m = re.search(rf"^{name} {{\n.*?^}}\n", code, re.S | re.M)
    assert m, f"no {name} block"
    return m.group(0)


def test_only_the_correlated_errors_and_zero_family_specs_are_left_out():
    assert {p.stem for p in SPEC_FILES} - {p.stem for p in ROW_SEPARABLE} == {
        "blackmore_car1", "owls_zinb", "salamanders_hurdle", "salamanders_zinb", "salamanders_zip", "sleepstudy_sigma",
        "wellbeing"}


@pytest.mark.stanc
@pytest.mark.parametrize("spec_file", ROW_SEPARABLE, ids=[p.stem for p in ROW_SEPARABLE])
def test_every_spec_has_a_threaded_program_of_the_same_model(spec_file):
    plain = build(spec_file, generated="y_rep,log_lik")
    threaded = build(spec_file, generated="y_rep,log_lik", threads_per_chain=2)
    assert "target += reduce_sum(partial_log_lik_lupmf, all_rows, grainsize," in threaded.code
    check(threaded.code)
    # results are read the same way: the same parameters and generated quantities, and the same data but one
    for name in ("parameters", "generated quantities"):
        assert block(threaded.code, name) == block(plain.code, name)
    # (a gaussian plain program's likelihood reads the design's cross-products instead of the rows)
    cross_products = {"P", "Cty", "yty", "CtC_diagonal", "CtC_nonzero", "CtC_w", "CtC_v", "CtC_u"}
    assert set(threaded.stan_data) - set(plain.stan_data) == {"grainsize"}
    assert set(plain.stan_data) - set(threaded.stan_data) == (cross_products if plain.description.cross_products
                                                              else set())
    assert all(np.array_equal(np.asarray(plain.stan_data[k]), np.asarray(threaded.stan_data[k]))
               for k in set(plain.stan_data) - cross_products)
    # the model block's priors and group values are untouched: only the likelihood moved into the function
    prior_lines = [line for line in block(plain.code, "model").splitlines() if "~" in line]
    assert all(line in block(threaded.code, "model") for line in prior_lines)


@pytest.mark.stanc
@pytest.mark.parametrize("raw", [
    # no levels: the GLM function on the pooled terms alone
    {"outcome": "lang_post", "predictors": ["iq_verb", "ses"]},
    # an ordinal outcome without levels (ordered_logistic_glm, no intercept)
    {"outcome": "grade", "family": "cumulative", "predictors": ["iq_verb"]},
    # a residual sd per group (sd_by): each slice reads its rows' sd groups
    {"outcome": "lang_post", "predictors": ["iq_verb"], "residuals": {"sd_by": "sex"},
     "levels": {"school": {"varying": ["intercept"]}}},
], ids=["no-levels", "cumulative-no-levels", "sd-by"])
def test_threaded_program_of_shapes_no_example_spec_has(raw):
    frame = read_example("language").assign(grade=lambda d: pd.cut(d.lang_post, 3, labels=False) + 1)
    program = build(Spec.from_dict(raw), frame, threads_per_chain=3)
    check(program.code)
    function = block(program.code, "functions")
    if "sd_by" in str(raw):
        assert "array[] int sigma_group," in function and "sigma[sigma_group[start:end]]" in function
    if raw.get("family") == "cumulative":
        assert "ordered_logistic_glm_lupmf(y[start:end] | X[start:end], beta, cutpoints_centered)" in function


def test_threaded_program_golden():
    """The threaded InstEval program, pinned like the plain ones (tests/golden/insteval.threads.stan)."""
    program = build(SPECS / "insteval.yaml", threads_per_chain=2)
    golden = GOLDEN / "insteval.threads.stan"
    if not golden.exists():
        golden.write_text(program.code)
        pytest.fail(f"no golden file: wrote {golden}; read it, then rerun")
    assert program.code == golden.read_text()


def test_slice_size_is_data_four_slices_per_thread():
    one = build(SPECS / "sleepstudy.yaml", threads_per_chain=2)
    four = build(SPECS / "sleepstudy.yaml", threads_per_chain=4)
    assert one.code == four.code  # the thread count is not in the program
    assert one.stan_data["grainsize"] == 23 and four.stan_data["grainsize"] == 12  # 180 rows
    assert likelihood_grainsize(73421, 2) == 9178 and likelihood_grainsize(3, 8) == 1
    assert "grainsize" not in build(SPECS / "sleepstudy.yaml").stan_data
    assert build(SPECS / "sleepstudy.yaml", threads_per_chain=1).code == build(SPECS / "sleepstudy.yaml").code


def test_spec_sampler_key_asks_for_the_threaded_program(tmp_path):
    text = (SPECS / "sleepstudy.yaml").read_text().replace("../examples", str(SPECS.parent / "examples"))
    spec = tmp_path / "threads.yaml"
    spec.write_text(text.replace("seed: 1}", "seed: 1, threads_per_chain: 2}"))
    assert "reduce_sum" in build(spec).code
    assert "reduce_sum" not in build(spec, threads_per_chain=1).code  # the caller's value wins
    spec.write_text(text.replace("seed: 1}", "seed: 1, threads_per_chain: 0}"))
    with pytest.raises(SpecError, match=r"sampler\.threads_per_chain"):
        build(spec)


def test_correlated_errors_are_refused_naming_the_setting(capsys):
    with pytest.raises(SpecError) as info:
        build(SPECS / "blackmore_car1.yaml", threads_per_chain=2)
    text = str(info.value)
    assert "sampler.threads_per_chain" in text and "continuous AR(1)" in text and "subject series" in text
    assert cli.main(["render", str(SPECS / "blackmore_car1.yaml"), "--threads-per-chain", "2"]) == 1
    assert "threads_per_chain: 1" in capsys.readouterr().err


def test_embedded_backend_refuses_threads_before_compiling(monkeypatch):
    backend = get_backend("pystan")
    monkeypatch.setattr(type(backend), "compile", lambda *a, **k: pytest.fail("compiled"))
    with pytest.raises(BackendError, match="needs the CmdStan backend"):
        stangen.fit(SPECS / "sleepstudy.yaml", backend="pystan", threads_per_chain=2)
    with pytest.raises(BackendError, match="needs the CmdStan backend"):
        backend.sample(None, {}, SamplerSettings(threads_per_chain=2))


def test_a_plain_program_is_not_sampled_with_threads():
    program = build(SPECS / "sleepstudy.yaml")
    with pytest.raises(SpecError, match=r"build\(\.\.\., threads_per_chain=2\)"):
        stangen.fit(program, backend="pystan", threads_per_chain=2)


@pytest.mark.stanc
def test_cmdstan_builds_with_stan_threads_and_runs_num_threads(fake):  # noqa: F811
    threaded = """\
functions {
  real part_lpdf(array[] real slice, int start, int end, real mu) { return normal_lupdf(slice | mu, 1); }
}
data { int<lower=0> N; vector[N] y; }
parameters { real mu; real<lower=0> sigma; matrix[2, 3] m; }
model { target += reduce_sum(part_lupdf, to_array_1d(y), 1, mu); to_vector(m) ~ std_normal(); }
"""
    backend = CmdStanBackend()
    model = backend.compile(threaded)
    assert model.handle["threads"]
    assert json.loads((Path(model.handle["exe_file"]).parent / "build.json").read_text())["stan_threads"] is True
    backend.sample(model, {"N": 2, "y": [1.0, 2.0]}, SamplerSettings(chains=2, warmup=3, draws=2, threads_per_chain=2,
                                                                    quiet=True))
    calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
    assert [c[0] for c in calls] == ["num_threads=2"] * 2 and {c[1] for c in calls} == {"id=1", "id=2"}


# -- the same log density, computed ------------------------------------------------------------------

def _log_density_pairs(spec_name: str, points: int = 5):
    """(plain, threaded) log density and gradient at `points` parameter values from a short fit of the plain
    program, on the embedded backend's compiled modules. The threaded program's slices are small (7 rows) so
    that many slices and a short last one are summed."""
    from stangen.run.backends.httpstan_api import load_module

    backend = get_backend("pystan")
    plain = build(SPECS / f"{spec_name}.yaml")
    threaded = build(SPECS / f"{spec_name}.yaml", threads_per_chain=2)
    threaded.stan_data["grainsize"] = 7
    fit = stangen.fit(plain, backend="pystan", chains=1, warmup=150, draws=points, seed=3, quiet=True)
    modules = [load_module(backend.compile(p.code).handle.module_path) for p in (plain, threaded)]
    data = [prepare_data(p.stan_data) for p in (plain, threaded)]
    parameters = list(backend.compile(plain.code).handle.info["parameters"])
    posterior = fit.idata.posterior
    out = []
    for k in range(points):
        values = {name: posterior[name].isel(chain=0, draw=k).values.tolist() for name in parameters}
        theta = modules[0].transform_inits(data[0], values)
        out.append([(m.log_prob(d, theta, True), np.asarray(m.log_prob_grad(d, theta, True)))
                    for m, d in zip(modules, data)])
    return out


def test_a_threaded_run_is_saved_and_read_back(tmp_path):
    """A run of the threaded program is read back with its own program (the embedded backend runs it with
    httpstan's default threads, the program already compiled by the log-density test)."""
    program = build(SPECS / "language.yaml", threads_per_chain=2)
    fit = stangen.fit(program, backend="pystan", chains=2, warmup=100, draws=50, seed=1, quiet=True)
    assert fit.info["threaded"]
    fit.save(tmp_path / "run")
    again = stangen.fitting.Fit.load(tmp_path / "run")
    assert again.program.code == program.code and again.program.description.threads
    assert again.summary().equals(fit.summary())


@pytest.mark.parametrize("spec_name", ["language", "cbpp"])
def test_threaded_program_has_the_plain_programs_log_density(spec_name):
    """language: pooled terms (the GLM function), a noncentered level with a group-level predictor, slopes at
    their means — and the plain program's likelihood from the design's cross-products against the threaded
    one's pass over the rows; cbpp: a binomial outcome with trials, a centered level."""
    for (lp_plain, grad_plain), (lp_threaded, grad_threaded) in _log_density_pairs(spec_name):
        assert np.isfinite(lp_plain)
        assert lp_threaded == pytest.approx(lp_plain, rel=1e-12, abs=1e-9)
        np.testing.assert_allclose(grad_threaded, grad_plain, rtol=1e-10, atol=1e-9)


@pytest.mark.skipif(find_cmdstan() is None, reason=NO_CMDSTAN)
def test_cmdstan_threaded_fit_gives_the_plain_fits_posterior():
    """Two threads per chain on real CmdStan: the same posterior as the plain program (the sums' order differs,
    so the draws do not match one for one)."""
    settings = dict(backend="cmdstan", chains=2, warmup=500, draws=1000, seed=5, quiet=True)
    plain = stangen.fit(SPECS / "sleepstudy.yaml", **settings)
    threaded = stangen.fit(SPECS / "sleepstudy.yaml", threads_per_chain=2, **settings)
    assert threaded.info["settings"]["threads_per_chain"] == 2
    a, b = plain.summary(), threaded.summary()
    for name in a.index:  # Intercept, Days, the sds, the correlation, sigma
        se = np.hypot(a.loc[name, "mcse_mean"], b.loc[name, "mcse_mean"])
        assert abs(a.loc[name, "mean"] - b.loc[name, "mean"]) < 4 * se, name
    assert threaded.convergence().ok
    assert threaded.info["threaded"] and not plain.info["threaded"]


def test_chains_at_once_leave_room_for_their_threads(monkeypatch):
    monkeypatch.setattr("os.cpu_count", lambda: 8)
    assert SamplerSettings(chains=4).effective_parallel_chains() == 4
    assert SamplerSettings(chains=4, threads_per_chain=2).effective_parallel_chains() == 4
    assert SamplerSettings(chains=4, threads_per_chain=4).effective_parallel_chains() == 2
    assert SamplerSettings(chains=4, threads_per_chain=16).effective_parallel_chains() == 1
    assert SamplerSettings(chains=4, threads_per_chain=4, parallel_chains=3).effective_parallel_chains() == 3


@pytest.mark.stanc
def test_threaded_program_of_a_mixed_level():
    """A mixed level's values are assembled in the model block and passed to the slices whole."""
    from test_large_crossed import CROSSED, insteval_like

    program = build(CROSSED, insteval_like(), threads_per_chain=2)
    assert {c.level: c.parameterization for c in program.parameterization}["s"] == "mixed"
    check(program.code)
    assert "vector b_s," in block(program.code, "functions")
