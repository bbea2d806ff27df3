"""`residuals:` — AR(1) / continuous-time AR(1) errors within a level's groups and one residual sd per value of a
column (nlme corAR1, corCAR1, varIdent): validation with places, the Markov factorization against the
multivariate normal, the program, and recovery on a simulated panel with uneven times and gaps."""
from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from scipy.stats import multivariate_normal, norm

from stangen import DataError, Level, Spec, SpecError
from stangen.compiler.program import build
from stangen.core.residuals import ar1_log_density, ar1_loo_log_density
from stangen.run.stanc import check


def panel(n_subjects=60, phi=0.6, sigma=0.8, seed=7, sd_by=None) -> pd.DataFrame:
    """Uneven integer times with gaps (5–9 of 0..14 per subject), varying intercept and slope, AR(1) errors.
    Named like sleepstudy (Reaction ~ Days + (Days | Subject)), so the fit without `residuals:` reuses the
    program the rest of the suite compiles."""
    rng = np.random.default_rng(seed)
    rows, effects = [], []
    for s in range(n_subjects):
        times = np.sort(rng.choice(15, size=rng.integers(5, 10), replace=False))
        u0, u1 = rng.multivariate_normal([0, 0], [[1.0, 0.3 * 1.0 * 0.2], [0.3 * 1.0 * 0.2, 0.04]])
        effects.append((u0, u1))
        group = s % 2
        sd = sigma * (1.0 if group == 0 or sd_by is None else sd_by)
        e, last = [], None
        for t in times:
            if last is None:
                e.append(rng.normal(0, 1))
            else:
                rho = phi ** (t - last)
                e.append(rho * e[-1] + rng.normal(0, np.sqrt(1 - rho ** 2)))
            last = t
        for t, err in zip(times, e):
            rows.append({"Subject": f"s{s}", "Days": int(t), "group": "ab"[group],
                         "Reaction": 1.0 + 0.5 * t + u0 + u1 * t + sd * err})
    df = pd.DataFrame(rows)
    drawn = np.array(effects)
    # the subjects' effects as drawn: the sds and correlation of this sample of 60 (what the data can show)
    df.attrs["drawn"] = {"sd(Subject: intercept)": drawn[:, 0].std(ddof=1), "sd(Subject: Days)": drawn[:, 1].std(ddof=1),
                         "cor(Subject: intercept, Days)": np.corrcoef(drawn.T)[0, 1]}
    df.attrs["effects"] = drawn.tolist()  # each subject's (intercept, Days) deviation, subjects in order s0, s1, …
    return df


def ar_spec(correlation="ar1", sd_by=None, **extra) -> Spec:
    res = {"correlation": correlation, "time": "Days"} | ({"sd_by": sd_by} if sd_by else {})
    return Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level(varying=["intercept", "Days"])},
                residuals=res | extra)


# ---- the likelihood ------------------------------------------------------------------------------

@pytest.mark.parametrize("phi", [0.6, -0.4, 0.95])
def test_markov_factorization_equals_the_multivariate_normal(phi):
    """The program's conditional density equals the joint normal with covariance sd_i sd_k phi^|t_i - t_k|."""
    rng = np.random.default_rng(3)
    for _ in range(5):
        n = 7
        times = np.sort(rng.choice(20, size=n, replace=False)).astype(float)
        sd = rng.uniform(0.5, 2.0, size=n)
        cov = np.outer(sd, sd) * phi ** np.abs(times[:, None] - times[None, :])
        r = rng.multivariate_normal(np.zeros(n), cov)
        shuffle = rng.permutation(n)  # the data's row order need not be the time order
        r_rows, sd_rows, t_rows = r[shuffle], sd[shuffle], times[shuffle]
        order = np.argsort(t_rows)
        first, nxt, prev = order[:1], order[1:], order[:-1]
        gap = t_rows[nxt] - t_rows[prev]
        expected = multivariate_normal(np.zeros(n), cov).logpdf(r)
        assert ar1_log_density(r_rows, sd_rows, phi, first, nxt, prev, gap) == pytest.approx(expected, rel=1e-10)


@pytest.mark.parametrize("phi", [0.6, -0.4, 0.95])
def test_log_lik_is_each_observations_density_given_the_rest_of_its_series(phi):
    """log_lik (for PSIS-LOO) is log p(y_i | y_-i): the multivariate normal's conditional, from its precision."""
    rng = np.random.default_rng(4)
    for _ in range(5):
        sizes = [1, 4, 6]  # a one-observation series, and two longer ones with gaps
        times = np.concatenate([np.sort(rng.choice(20, size=k, replace=False)) for k in sizes]).astype(float)
        series = np.repeat(np.arange(len(sizes)), sizes)
        n = len(times)
        sd = rng.uniform(0.5, 2.0, size=n)
        same = series[:, None] == series[None, :]
        cov = np.where(same, np.outer(sd, sd) * phi ** np.abs(times[:, None] - times[None, :]), 0.0)
        r = rng.multivariate_normal(np.zeros(n), cov)
        q = np.linalg.inv(cov)
        expected = [norm.logpdf(r[i], -(q[i] @ r - q[i, i] * r[i]) / q[i, i], 1 / np.sqrt(q[i, i])) for i in range(n)]
        following = np.r_[False, series[1:] == series[:-1]]
        nxt = np.flatnonzero(following)
        got = ar1_loo_log_density(r, sd, phi, nxt, nxt - 1, times[nxt] - times[nxt - 1])
        np.testing.assert_allclose(got, expected, rtol=1e-9)


def test_series_data_orders_each_series_by_time_whatever_the_row_order():
    df = panel(n_subjects=4).sample(frac=1, random_state=1).reset_index(drop=True)
    data = build(ar_spec(), df).stan_data
    assert data["N_first"] == 4 and data["N_first"] + data["N_next"] == len(df)
    first, nxt, prev, gap = (np.asarray(data[k]) for k in ("obs_first", "obs_next", "obs_prev", "gap"))
    subject, days = df.Subject.to_numpy(), df.Days.to_numpy()
    assert (subject[nxt - 1] == subject[prev - 1]).all()
    np.testing.assert_array_equal(gap, days[nxt - 1] - days[prev - 1])
    assert (gap > 0).all()
    seen = set(first)  # time order: every `prev` is a first or an earlier `next`
    for i, j in zip(nxt, prev):
        assert j in seen
        seen.add(i)


# ---- validation ----------------------------------------------------------------------------------

def test_spec_problems_have_places():
    with pytest.raises(SpecError) as caught:
        Spec(outcome="y", family="poisson", levels={"a": Level(), "b": Level()},
             residuals={"correlation": "ar2", "tme": "t"})
    paths = {p.path for p in caught.value.problems}
    assert paths == {"residuals.tme", "residuals.correlation", "residuals"}
    with pytest.raises(SpecError) as caught:
        Spec(outcome="y", levels={"a": Level(), "b": Level()}, residuals={"correlation": "car1", "time": "t"})
    assert [p.path for p in caught.value.problems] == ["residuals.level"]
    with pytest.raises(SpecError, match="no level named 'subjet'; did you mean 'subject'"):
        Spec(outcome="y", levels={"subject": Level()}, residuals={"correlation": "ar1", "time": "t", "level": "subjet"})
    # the only level is the default
    assert Spec(outcome="y", levels={"g": Level()}, residuals={"correlation": "ar1", "time": "t"}).residuals["level"] == "g"


def test_integrated_is_allowed_on_the_series_level_without_a_level_within_it():
    """`parameterization: integrated` also names the level of correlated error series: its effects are then
    integrated out of the likelihood (each series jointly normal). Not when a level is nested within it."""
    spec = Spec(outcome="Reaction", predictors=["Days"], residuals={"correlation": "ar1", "time": "Days"},
                levels={"Subject": Level(varying=["intercept", "Days"], parameterization="integrated")})
    assert build(spec, panel(n_subjects=6)).description.marginal_level.name == "Subject"
    with pytest.raises(SpecError, match=r"levels\.Subject\.parameterization: 'integrated' needs.*varies more"):
        Spec(outcome="y", predictors=["t"], residuals={"correlation": "ar1", "time": "t", "level": "Subject"},
             levels={"Subject": Level(varying=["intercept", "t"], parameterization="integrated"),
                     "visit": Level(within="Subject")})
    with pytest.raises(SpecError, match=r"levels\.clinic\.parameterization: 'integrated' needs"):
        Spec(outcome="y", residuals={"correlation": "ar1", "time": "t", "level": "Subject"},
             levels={"Subject": Level(), "clinic": Level(varying=["intercept", "t"], parameterization="integrated")})


def test_auto_integrates_the_series_level_out_however_long_its_series():
    """The integrated likelihood costs O(N) (each series whitened, a Cholesky factor of the effects' size per
    series), so long series are integrated out too."""
    df = panel(n_subjects=6)
    choice = build(ar_spec(), df).parameterization[0]
    assert choice.parameterization == "integrated" and "series of the AR(1) errors" in choice.reason
    long = pd.DataFrame({"Subject": np.repeat(["a", "b", "c"], 400), "Days": np.tile(np.arange(400), 3)})
    long["Reaction"] = np.random.default_rng(1).normal(size=len(long)).cumsum()
    assert build(ar_spec(), long).parameterization[0].parameterization == "integrated"
    plain = Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level(varying=["intercept", "Days"])})
    assert build(plain, df).description.marginal_level is None


def test_data_problems_name_the_group_and_time():
    df = panel(n_subjects=4)
    df.loc[3, "Days"] = df.loc[2, "Days"]  # a repeated time in subject s0
    with pytest.raises(DataError, match=r"'s0' at Days \d+ \(rows 3 and 4\)"):
        build(ar_spec(), df)
    frac = panel(n_subjects=4).astype({"Days": float})
    frac.loc[5, "Days"] += 0.5
    with pytest.raises(DataError, match="ar1` needs integer times.*row 6.*car1"):
        build(ar_spec(), frac)
    assert build(ar_spec("car1"), frac).stan_data["N_first"] == 4  # car1 takes real-valued times
    holes = panel(n_subjects=4)
    holes.loc[2, "Days"] = np.nan
    with pytest.raises(DataError, match="residuals.time: column 'Days' has 1 missing"):
        build(Spec(outcome="Reaction", levels={"Subject": Level()}, residuals={"correlation": "ar1", "time": "Days"}),
              holes)
    one = panel(n_subjects=4)
    one.loc[0, "group"] = "c"
    with pytest.raises(DataError, match="'c' of 'group' has a single observation"):
        build(ar_spec(sd_by="group"), one)
    with pytest.raises(DataError, match="'Reaction2' is not in the data"):
        build(ar_spec(sd_by="Reaction2"), panel(n_subjects=4))


@pytest.mark.stanc
@pytest.mark.parametrize("correlation, sd_by, generated", [
    ("ar1", None, ()), ("car1", "group", ("y_rep", "log_lik")), (None, "group", ("y_rep", "log_lik"))])
def test_programs_pass_stanc(correlation, sd_by, generated):
    res = {"sd_by": sd_by} | ({"correlation": correlation, "time": "Days"} if correlation else {})
    spec = Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level(varying=["intercept", "Days"])},
                residuals=res)
    program = build(spec, panel(n_subjects=6, sd_by=1.5), generated=generated)
    check(program.code)
    assert ("real<lower=-1, upper=1> phi" in program.code) == (correlation == "ar1")
    assert ("real<lower=0, upper=1> phi" in program.code) == (correlation == "car1")
    assert ("vector<lower=0>[K_sigma] sigma" in program.code) == bool(sd_by)


# ---- recovery ------------------------------------------------------------------------------------

@pytest.mark.sampling
def test_recovery_of_ar1_errors_on_an_uneven_panel():
    import stangen

    df = panel()
    settings = dict(chains=4, warmup=500, draws=500, seed=3, quiet=True, backend="pystan")
    fit = stangen.fit(ar_spec(), df, **settings)
    assert fit.convergence().ok, fit.convergence().text()
    # population values of the fixed effects and the error process; the group-level sds and correlation as
    # drawn for these 60 subjects (the population's 1.0, 0.2, 0.3 give 0.91, 0.17, 0.25 here)
    truth = {"Intercept": 1.0, "Days": 0.5, "sigma": 0.8, "phi (AR(1), Days within Subject)": 0.6} | df.attrs["drawn"]
    table = fit.summary()
    for name, value in truth.items():
        lo, hi = table.loc[name, "q2.5%"], table.loc[name, "q97.5%"]
        assert lo < value < hi, f"{name}: {value} outside [{lo:.3f}, {hi:.3f}]"
    assert "Correlation Structure: AR(1)" in fit.lme4() and "Formula: ~Days | Subject" in fit.lme4()
    assert "phi" not in fit.fixef().index.str.cat()
    # the subjects' effects are integrated out of the likelihood and drawn given the data afterwards: their
    # draws must be the conditional posterior's. Too wide (drawn from the prior) would cover every true effect
    # but not follow them; too narrow or off-centre would miss many
    assert fit.program.description.marginal_level.name == "Subject"
    u = fit.idata.posterior["u_Subject"].values.reshape(-1, 60, 2)
    labels = [f"s{k}" for k in range(60)]
    order = [fit.program.data.labels["Subject"].index(label) for label in labels]
    u, truth_u = u[:, order, :], np.asarray(df.attrs["effects"])
    lo, hi = np.quantile(u, [0.025, 0.975], axis=0)
    covered = float(np.mean((lo < truth_u) & (truth_u < hi)))
    assert 0.85 <= covered <= 1.0, covered
    follows = [np.corrcoef(u.mean(axis=0)[:, k], truth_u[:, k])[0, 1] for k in range(2)]
    assert min(follows) > 0.6, follows
    assert np.mean(hi - lo, axis=0)[0] < 0.8 * 2 * 1.96 * 0.91, "intercepts no narrower than their prior"


@pytest.mark.sampling
def test_ignoring_the_autocorrelation_understates_the_slopes_uncertainty():
    """The lecture's warning. With a varying intercept only, the fit without `residuals:` reports a fixed
    Days slope far more certain than the AR(1) fit does (0.011 against 0.021 here). (With a varying Days slope
    as well, as in the recovery test, the between-subject slope variance dominates and both give 0.022.) The AR
    fit also gives each `group` its own residual sd (equal in these data), so that its program is the next
    test's."""
    import stangen

    df = panel()
    settings = dict(chains=4, warmup=500, draws=500, seed=3, quiet=True, backend="pystan")
    sd = {}
    # the plain fit's y_rep and log_lik are unused: with them its program is one the suite compiles anyway
    for name, res, generated in (("plain", None, ("y_rep", "log_lik")),
                                 ("ar1", {"correlation": "ar1", "time": "Days", "sd_by": "group"}, ())):
        fit = stangen.fit(Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level()}, residuals=res),
                          df, generated=generated, **settings)
        sd[name] = fit.summary().loc["Days", "sd"]
    assert sd["plain"] < 0.8 * sd["ar1"], sd


@pytest.mark.sampling
def test_simulate_draws_the_structure_and_a_fit_recovers_it():
    """`stangen simulate` draws AR(1) errors with one sd per value of `sd_by`; fitting the spec to them recovers
    the true values (99% intervals: six of them at once). The time is the predictor too (0, 1, … in each
    series), named as the previous test's data, so the program is the same."""
    import stangen
    from stangen.workflows.simulate import simulate

    spec = Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level()},
                residuals={"correlation": "ar1", "time": "Days", "sd_by": "group"})
    truth = {"Intercept": 1, "coefficients": {"Days": 0.5}, "sd": {"Subject": 0.5}, "sigma": {"a": 1.0, "b": 2.0},
             "phi": 0.8}
    sim = simulate(spec, truth, data=False, groups={"Subject": 40}, per_group=15, seed=3)
    assert list(sim.data.groupby("Subject").Days.apply(list).iloc[0]) == list(range(15))
    fit = stangen.fit(spec, sim.data, chains=4, warmup=500, draws=500, seed=1, quiet=True, backend="pystan")
    expected = {"Intercept": 1.0, "Days": 0.5, "sd(Subject: intercept)": 0.5, "sigma(group: a)": 1.0,
                "sigma(group: b)": 2.0, "phi (AR(1), Days within Subject)": 0.8}
    for name, value in expected.items():
        lo, hi = np.quantile(fit.parameter_draws(name), [0.005, 0.995])
        assert lo < value < hi, f"{name}: {value} outside [{lo:.3f}, {hi:.3f}]"
    with pytest.raises(SpecError, match="params.phi"):
        simulate(spec, {**truth, "phi": 1.5}, data=False, groups={"g": 5}, per_group=4)
    with pytest.raises(SpecError, match="params.sigma"):
        simulate(spec, {**truth, "sigma": {"a": 1.0}}, data=False, groups={"g": 5}, per_group=4)


def test_a_text_time_column_and_a_malformed_family_are_reported_not_raised():
    df = panel(n_subjects=4)
    df["visit"] = "v" + df.Days.astype(str)  # a time column of text that is no predictor
    with pytest.raises(DataError, match="residuals.time: 'visit' must hold numbers.*'v"):
        build(Spec(outcome="Reaction", levels={"Subject": Level()},
                   residuals={"correlation": "ar1", "time": "visit"}), df)
    with pytest.raises(SpecError, match="unknown family"):
        Spec(outcome="y", family=["gaussian"], levels={"g": Level()}, residuals={"correlation": "ar1", "time": "t"})


# -- residual structures are objects: nothing outside stangen/core/residuals.py asks which one it has ----------

ROOT = __import__("pathlib").Path(__file__).resolve().parents[1]
KIND_ATTRIBUTES = {"series", "sd_by", "correlation", "parts"}  # what would tell the structures apart
KIND_KEYS = {"sd_by", "correlation", "time"}  # the same, read off the spec's `residuals:` mapping


def residual_kind_reads(source: str) -> list[int]:
    """Lines that branch on the kind of residual structure: `res.sd_by`, `d.residuals.correlation`,
    `residuals["sd_by"]`, `res.get("correlation")`, or a comparison with a correlation's name ("ar1")."""
    import ast
    from stangen.core.residuals import CORRELATIONS

    def about_residuals(node) -> bool:
        return (isinstance(node, ast.Name) and node.id in {"res", "residuals", "r"}) or \
            (isinstance(node, ast.Attribute) and node.attr == "residuals") or \
            (isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Constant) and node.slice.value == "residuals")

    lines = []
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Attribute) and node.attr in KIND_ATTRIBUTES and about_residuals(node.value):
            lines.append(node.lineno)
        elif isinstance(node, ast.Subscript) and about_residuals(node.value) and \
                isinstance(node.slice, ast.Constant) and node.slice.value in KIND_KEYS:
            lines.append(node.lineno)
        elif isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute) and node.func.attr == "get" and \
                about_residuals(node.func.value) and node.args and isinstance(node.args[0], ast.Constant) and \
                node.args[0].value in KIND_KEYS:
            lines.append(node.lineno)
        elif isinstance(node, ast.Compare):
            for operand in [node.left, *node.comparators]:
                values = operand.elts if isinstance(operand, (ast.Tuple, ast.List, ast.Set)) else [operand]
                if any(isinstance(v, ast.Constant) and v.value in CORRELATIONS for v in values):
                    lines.append(node.lineno)
    return lines


def test_no_residual_structure_kind_is_read_outside_its_module():
    import re
    found = []
    for path in sorted((ROOT / "stangen").rglob("*.py")):
        if path.name != "residuals.py":
            found += [f"{path.relative_to(ROOT)}:{n}" for n in residual_kind_reads(path.read_text())]
    read = re.compile(r"residuals\.(series|sd_by|correlation|parts)\b|\bres\.(series|sd_by|correlation)\b")
    for path in sorted((ROOT / "templates").glob("*.j2")):
        if path.name == "residuals.stan.j2":
            continue
        for n, line in enumerate(path.read_text().splitlines(), start=1):
            if read.search(line):
                found.append(f"{path.relative_to(ROOT)}:{n}: {line.strip()}")
    assert not found, "residual structures told apart outside stangen/core/residuals.py:\n" + "\n".join(found)


def test_the_residual_kind_check_can_fail():
    assert residual_kind_reads("if res is not None and res.sd_by: pass") == [1]
    assert residual_kind_reads("x = d.residuals.correlation") == [1]
    assert residual_kind_reads('if spec["residuals"]["sd_by"]: pass') == [1]
    assert residual_kind_reads('t = res.get("correlation")') == [1]
    assert residual_kind_reads('ok = kind == "car1"') == [1]
    assert residual_kind_reads("sd = d.residuals.sd_of('i')") == []  # asking the object is the way


def test_every_correlation_kind_renders_and_passes_stanc():
    """Each kind the module lists (and sd_by with it) gives a program Stan accepts, with y_rep and log_lik."""
    from stangen.core.residuals import CORRELATIONS
    frame = panel(n_subjects=8)
    for kind in CORRELATIONS:
        spec = Spec(outcome="Reaction", predictors=["Days"], levels={"Subject": Level(varying=["intercept", "Days"])},
                    residuals={"correlation": kind, "time": "Days", "sd_by": "group"})
        check(build(spec, frame, generated=("y_rep", "log_lik")).code)
