"""Per-level parameterization: the auto rule's estimate, the spec's override, and that centered and
noncentered programs give the same posterior (they are one model sampled two ways)."""
import dataclasses
import re

import numpy as np
import pandas as pd
import pytest

import stangen
from stangen.run.settings import sampler_settings
from stangen.compiler.parameterization import THRESHOLD, Choice, information, suggested_adapt_delta
from stangen.compiler.program import build
from stangen.spec import Spec

from conftest import SHORT_RUN, SPECS, assert_same_posterior


def _random_intercepts(groups: int, per_group: int, tau: float, sigma: float, seed: int = 1) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=groups * per_group)
    y = 1.0 + 0.5 * x + rng.normal(0, tau, groups)[g] + rng.normal(0, sigma, g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y})


SPEC = Spec(outcome="y", predictors=["x"], levels={"g": {}})


@pytest.mark.parametrize("per_group, tau, sigma", [(5, 0.7, 0.2), (3, 0.3, 1.0), (20, 1.0, 2.0)])
def test_information_ratio_estimates_n_tau2_over_sigma2(per_group, tau, sigma):
    program = build(SPEC.with_parameterization("noncentered"), _random_intercepts(2000, per_group, tau, sigma))
    ratio = information(program.description, program.stan_data)["g"]
    truth = per_group * tau ** 2 / sigma ** 2
    assert np.median(ratio) == pytest.approx(truth, rel=0.35)


def test_auto_centers_data_rich_levels_and_not_data_poor_ones():
    rich = build(SPEC, _random_intercepts(100, 5, 0.7, 0.2))  # n·τ²/σ² ≈ 61: lecture example (a)
    poor = build(SPEC, _random_intercepts(100, 3, 0.3, 1.0))  # ≈ 0.27
    assert [c.parameterization for c in rich.parameterization] == ["centered"]
    assert [c.parameterization for c in poor.parameterization] == ["noncentered"]
    assert "b_g ~ normal(m_g, sd_g);" in rich.code and "z_g ~ std_normal();" in poor.code
    assert rich.parameterization[0].information > THRESHOLD > poor.parameterization[0].information


def test_nested_parent_counts_its_childrens_spread_as_noise():
    """Pastes: each batch's 6 strengths are mostly cask-to-cask spread, so batch is data-poor although
    the residual sd is small (ratio 0.4); each cask's 2 strengths pin it down (25). A data-poor
    intercept-only parent over a centered intercept-only child is integrated out."""
    program = build(SPECS / "pastes.yaml")
    choices = {c.level: c for c in program.parameterization}
    assert choices["batch"].information < THRESHOLD < choices["cask"].information
    assert {k: c.parameterization for k, c in choices.items()} == {"batch": "integrated", "cask": "centered"}
    assert "z_batch" not in program.code.split("parameters {")[1].split("}")[0]
    assert "- (J_cask - J_batch) * log(sd_cask) - 0.5 * sum(log(D));" in program.code
    assert "u_cask = b_cask - m_cask - u_batch[parent_cask];" in program.code
    # a parent with a group-level predictor (turnout's state) is not integrated out
    assert "integrated" not in {c.parameterization for c in build(SPECS / "turnout.yaml").parameterization}


def test_the_spec_overrides_auto():
    spec = Spec.from_yaml(SPECS / "students.yaml")
    assert build(spec).parameterization[0].parameterization == "centered"
    forced = build(spec.with_parameterization("noncentered")).parameterization[0]
    assert (forced.parameterization, forced.how) == ("noncentered", "spec")


def test_unknown_parameterization_is_a_spec_error():
    with pytest.raises(stangen.SpecError) as info:
        Spec(outcome="y", levels={"g": {"parameterization": "centred"}})
    assert "levels.g.parameterization" in str(info.value) and "did you mean 'centered'" in str(info.value)


@pytest.mark.parametrize("name, first, second", [
    ("sleepstudy", "centered", "noncentered"),   # correlated intercept and slope, at the mean of Days
    ("pastes", None, "centered"),                # nested: auto (batch integrated out) vs both centered
    ("sleepstudy", "centered", "partial"),       # partial: the intercept centered, Days standardized given it
])
def test_centered_and_noncentered_programs_give_the_same_posterior(example_fit, name, first, second):
    spec = Spec.from_yaml(SPECS / f"{name}.yaml")
    a = example_fit(name) if first is None or build(spec).parameterization[0].parameterization == first else \
        stangen.fit(spec.with_parameterization(first), backend="pystan", **SHORT_RUN)
    b = stangen.fit(spec.with_parameterization(second), backend="pystan", **SHORT_RUN)
    assert a.program.code != b.program.code
    assert_same_posterior(a, b, group_effects=True)


def test_crossed_levels_give_the_intercept_to_the_least_certain_mean():
    """Penicillin: the 6 samples' mean (sd 1.9) is far less certain than the 24 plates' (sd 0.85): samples
    are drawn around the intercept, plates around 0. Legislators (8 parties × 6 chambers): the two means are
    about as uncertain, so centering would leave a ridge between them and the intercept: noncentered."""
    penicillin = build(SPECS / "penicillin.yaml")
    assert [c.parameterization for c in penicillin.parameterization] == ["centered", "centered"]
    assert "m_sample = rep_vector(Intercept, J_sample)" in penicillin.code
    assert "b_plate ~ normal(0, sd_plate);" in penicillin.code
    legislators = build(SPECS / "legislators.yaml")
    assert [c.parameterization for c in legislators.parameterization] == ["noncentered", "noncentered"]
    assert "ridge" in legislators.parameterization[0].reason


def test_information_interval_covers_the_ratio_at_its_nominal_rate():
    """The interval is derived for balanced groups and a moment estimate; checked here against the EM
    estimate stangen uses, on 200 simulated data sets of 10 groups × 6 (true n·τ²/σ² = 1.5)."""
    truth, covered = 6 * 0.5 ** 2 / 1.0, 0
    for seed in range(200):
        choice = build(SPEC, _random_intercepts(10, 6, 0.5, 1.0, seed=seed)).parameterization[0]
        covered += choice.interval[0] <= truth <= choice.interval[1]
    assert 0.83 <= covered / 200 <= 0.97


def test_a_level_with_too_few_groups_to_decide_raises_adapt_delta():
    """10 groups × 6 with n·τ²/σ² = 0.4 (like pastes' batches): the ratio's 90% interval reaches from below
    1/2 to above 2, so both forms have a bad region in the posterior. Levels with a clear ratio (exam's 65
    schools, sleepstudy's 18 subjects, language's 131 schools) do not."""
    small = build(SPEC, _random_intercepts(10, 6, 0.26, 1.0, seed=3)).parameterization[0]
    assert small.undecided and small.interval[0] < 0.5 < 2 < small.interval[1]
    assert "adapt_delta is raised to 0.9" in small.reason
    assert suggested_adapt_delta([small]) == 0.9
    for name in ("exam", "sleepstudy", "language"):
        choices = build(SPECS / f"{name}.yaml").parameterization
        assert not any(c.undecided for c in choices) and suggested_adapt_delta(choices) is None, name


def test_a_level_with_few_groups_raises_adapt_delta_to_095():
    """Fewer than 10 groups (legislators' 8 parties and 6 chambers, penicillin's 6 samples): 0.95, above an
    undecided level's 0.9; 10 groups or more (pastes' 10 batches, integrated anyway; sleepstudy's 18) do not."""
    for name in ("legislators", "penicillin"):
        choices = build(SPECS / f"{name}.yaml").parameterization
        few = [c for c in choices if c.few_groups]
        assert few and all(c.groups < 10 for c in few), name
        assert "adapt_delta is raised to 0.95" in few[0].reason
        assert suggested_adapt_delta(choices) == 0.95
    for name in ("pastes", "sleepstudy"):
        choices = build(SPECS / f"{name}.yaml").parameterization
        assert not any(c.few_groups for c in choices) and all(c.groups >= 10 for c in choices), name
    undecided = build(SPEC, _random_intercepts(10, 6, 0.26, 1.0, seed=3)).parameterization[0]
    few = dataclasses.replace(undecided, groups=9)
    assert few.few_groups and suggested_adapt_delta([undecided, few]) == 0.95
    assert not dataclasses.replace(few, parameterization="integrated").few_groups
    assert Choice.from_dict(few.to_dict()) == few


def test_the_spec_and_the_caller_override_the_suggested_adapt_delta():
    suggested = {"adapt_delta": 0.9}
    assert sampler_settings(SPEC, suggested).adapt_delta == 0.9
    assert sampler_settings(SPEC, suggested, adapt_delta=0.85).adapt_delta == 0.85
    assert sampler_settings(Spec(outcome="y", levels={"g": {}}, sampler={"adapt_delta": 0.8}),
                            suggested).adapt_delta == 0.8


@pytest.mark.sampling
def test_auto_samples_pastes_without_divergences(example_fit):
    """Pastes (60 rows, 10 batches, 30 casks) is the classic funnel: brms's always-noncentered program gives
    about 145 divergences at adapt_delta 0.8. auto (batch integrated out, cask centered) at 0.8: none.
    (Batch noncentered gave divergences in 10 of 20 seeds of 4 × 1000 draws at 0.8, 1 of 60 at 0.9.)"""
    fit = example_fit("pastes")
    assert fit.info["settings"]["adapt_delta"] == 0.8
    assert int(fit.idata.sample_stats["diverging"].values.sum()) == 0
    assert "Sampled: batch integrated (auto), cask centered (auto)" in fit.lme4()


def test_integrated_can_be_set_where_the_structure_allows_it():
    """`parameterization: integrated` on a spec: the nested level is then centered, whatever auto says; on a
    level that is not a top-level intercept-only parent of one centered intercept-only level, a spec error
    naming the level and what is missing."""
    pastes = Spec.from_yaml(SPECS / "pastes.yaml")
    program = build(pastes.with_parameterization("integrated", levels=["batch"]))
    assert [(c.parameterization, c.how) for c in program.parameterization] == [("integrated", "spec"),
                                                                               ("centered", "auto")]
    for spec, level, why in [
        (lambda: pastes.with_parameterization("integrated", levels=["cask"]), "cask", "nested within 'batch'"),
        (lambda: pastes.with_parameterization("integrated", levels=["batch"]).with_parameterization(
            "noncentered", levels=["cask"]), "batch", "'cask' is noncentered"),
        (lambda: Spec.from_yaml(SPECS / "turnout.yaml").with_parameterization("integrated", levels=["state"]),
         "state", "group-level predictors"),
        (lambda: Spec(outcome="y", levels={"g": {"parameterization": "integrated"}}), "g", "0 levels nested"),
    ]:
        with pytest.raises(stangen.SpecError) as info:
            spec()
        assert f"levels.{level}.parameterization" in str(info.value) and why in str(info.value)


# -- the information ratio of the non-normal families: the family's own Fisher information ----------------
# (family, intercept, τ, rows per group, the family's other parameters); J groups of random intercepts
FISHER_CASES = [
    ("poisson", 1.0, 0.5, 5, {}),
    ("negbinomial", 1.5, 0.5, 4, {"phi": 3.0}),  # epilepsy-like: the moment fit of the pooled data was 10× low
    ("gamma", 1.0, 0.3, 5, {"shape": 3.0}),
    ("beta", 0.5, 0.3, 5, {"phi": 10.0}),
    ("bernoulli", 0.0, 1.0, 10, {}),
    ("binomial", -0.5, 0.5, 4, {}),
    ("cumulative", 0.0, 1.0, 6, {"cutpoints": np.array([-1.0, 0.5, 2.0])}),
]


def _fisher_information(family, eta_grid, aux, trials, rng, draws=4000, step=1e-4):
    """I(η) = E[(d/dη log p(y | η))²] by Monte Carlo on the family's own numpy density (not its working
    response): draws of y at each η, the score by central differences."""
    out = []
    for eta in eta_grid:
        eta_rows = np.full(draws, eta)
        n = np.full(draws, trials) if family.takes_trials else None
        y = family.draw(eta_rows, aux, n, lambda: rng.normal(0, 1, draws), rng)
        score = (family.log_density(y, eta_rows + step, aux, n) - family.log_density(y, eta_rows - step, aux, n)) / (2 * step)
        out.append(np.mean(score ** 2))
    return np.array(out)


@pytest.mark.parametrize("name, intercept, tau, per_group, aux", FISHER_CASES, ids=[c[0] for c in FISHER_CASES])
def test_information_ratio_of_every_family_uses_its_fisher_information(name, intercept, tau, per_group, aux):
    """The working fit's median n·τ²·I against the truth: τ² times the sum over a group's rows of the Fisher
    information at the true linear predictor, computed from the family's density."""
    from stangen.core.families import get_family
    family = get_family(name)
    rng = np.random.default_rng(7)
    groups, trials = 400, 10
    g = np.repeat(np.arange(groups), per_group)
    eta = intercept + rng.normal(0, tau, groups)[g]
    n = np.full(g.size, trials) if family.takes_trials else None
    y = family.draw(eta, aux, n, lambda: rng.normal(0, 1, g.size), rng)
    frame = pd.DataFrame({"g": g, "y": y} | ({"n": n} if n is not None else {}))
    spec = Spec(outcome="y", family=name, levels={"g": {"parameterization": "noncentered"}},
                **({"trials": "n"} if n is not None else {}))
    program = build(spec, frame)
    estimated = np.median(information(program.description, program.stan_data)["g"])
    grid = np.linspace(eta.min(), eta.max(), 25)
    per_row = np.interp(eta, grid, _fisher_information(family, grid, aux, trials, rng))
    truth = np.median(tau ** 2 * np.bincount(g, per_row))
    assert estimated == pytest.approx(truth, rel=0.35)


def _rich_intercepts_poor_slopes(groups=100, per_group=10, seed=3) -> pd.DataFrame:
    """Intercepts vary widely (n·τ²/σ² = 10), slopes hardly (10 · 0.05² = 0.025)."""
    rng = np.random.default_rng(seed)
    g = np.repeat(np.arange(groups), per_group)
    x = rng.normal(size=g.size)
    y = 1.0 + rng.normal(0, 1.0, groups)[g] + (0.5 + rng.normal(0, 0.05, groups)[g]) * x + rng.normal(0, 1, g.size)
    return pd.DataFrame({"g": g, "x": x, "y": y})


SLOPES = Spec(outcome="y", predictors=["x"], levels={"g": {"varying": {"intercept": [], "x": []}}})


def test_auto_centers_a_data_rich_intercept_and_not_its_data_poor_slope():
    program = build(SLOPES, _rich_intercepts_poor_slopes())
    choice = program.parameterization[0]
    assert (choice.parameterization, choice.centered_coefficients) == ("partial", 1)
    assert choice.label == "g partial (intercept centered; x noncentered)"
    ratios = dict(re.findall(r"(intercept|x) ([\d.]+)", choice.reason))
    assert 6 < float(ratios["intercept"]) < 15 and float(ratios["x"]) < 0.5  # 10 and 0.025 simulated
    assert "matrix[J_g, 1] b_g_centered;" in program.code and "matrix[1, J_g] z_g_noncentered;" in program.code
    # the same data with slopes as rich as the intercepts: still partial (auto never centers slopes: centered,
    # they diverged where standardized they did not), with both ratios above 1 in the reason
    rich = _rich_intercepts_poor_slopes()
    rich["y"] += np.random.default_rng(4).normal(0, 1.0, 100)[rich["g"]] * rich["x"]
    both = build(SLOPES, rich).parameterization[0]
    assert (both.parameterization, both.centered_coefficients) == ("partial", 1)
    assert all(float(r) > 1 for r in dict(re.findall(r"(intercept|x) ([\d.]+)", both.reason)).values())
    assert "slopes are not centered" in both.reason
    # the spec can still center them
    assert build(SLOPES.with_parameterization("centered"), rich).parameterization[0].parameterization == "centered"
    # the choice survives a run's record
    from stangen.compiler.parameterization import Choice
    assert Choice.from_dict(choice.to_dict()) == choice


def test_partial_in_the_spec_takes_its_split_from_the_data_and_needs_two_coefficients():
    spec = SLOPES.with_parameterization("partial")
    choice = build(spec, _rich_intercepts_poor_slopes()).parameterization[0]
    assert (choice.parameterization, choice.how, choice.centered_coefficients) == ("partial", "spec", 1)
    with pytest.raises(stangen.SpecError, match=r"levels\.g\.parameterization: 'partial' .* needs a level varying "
                                                 r"at least two coefficients"):
        build(SPEC.with_parameterization("partial"), _random_intercepts(10, 3, 1.0, 1.0))


def _nested(parents=300, children=(2, 2), rows=4, tau_child=0.6, tau_parent=0.8, seed=5) -> pd.DataFrame:
    """Gaussian intercepts of children within parents (unique child labels), σ = 1."""
    rng = np.random.default_rng(seed)
    out = []
    child = 0
    for p in range(parents):
        effect = rng.normal(0, tau_parent)
        for _ in range(rng.integers(children[0], children[1] + 1)):
            child += 1
            mean = effect + rng.normal(0, tau_child)
            out += [{"p": f"p{p}", "c": f"c{child}", "y": mean + rng.normal()} for _ in range(rows)]
    return pd.DataFrame(out)


def test_the_working_fit_splits_nested_variances_by_moments():
    """Two children per parent: the EM sweeps alone gave the children most of the parents' variance."""
    from stangen.compiler.parameterization import working_fit
    spec = Spec(outcome="y", levels={"p": {"parameterization": "noncentered"},
                                      "c": {"within": "p", "parameterization": "noncentered"}})
    program = build(spec, _nested())
    tau = working_fit(program.description, program.stan_data).tau
    assert tau["c"][0, 0] == pytest.approx(0.36, rel=0.3) and tau["p"][0, 0] == pytest.approx(0.64, rel=0.3)


def test_parents_holding_a_single_child_put_both_levels_noncentered():
    # data-rich children (ratio ≈ 4 · 0.36 = 1.4) and parents; half the parents hold one child
    data = _nested(parents=200, children=(1, 2), rows=4)
    crossed = Spec(outcome="y", levels={"c": {}, "p": {}})  # crossed in the spec, nested in the data
    choices = {c.level: c for c in build(crossed, data).parameterization}
    assert choices["c"].parameterization == choices["p"].parameterization == "noncentered"
    assert "hold a single c group" in choices["c"].reason and choices["c"].nested_in == "p"
    # every parent with two children: the ratio decides again
    two = {c.level: c for c in build(crossed, _nested(parents=200, children=(2, 2), rows=4)).parameterization}
    assert "single" not in two["c"].reason and two["p"].parameterization != "noncentered"
