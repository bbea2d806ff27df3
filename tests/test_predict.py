"""Predictions for new data (stangen.results.predict): exact against the program on the training rows, calibrated on
held-out rows and new groups, the plumbing for every example spec, and the errors for bad new data."""
from __future__ import annotations

import arviz as az
import numpy as np
import pandas as pd
import pytest

import stangen
from stangen.cli import main
from stangen.fitting import Fit
from stangen.compiler.program import build
from stangen.workflows.simulate import simulate

from conftest import SPECS, read_example

SPEC_FILES = sorted(SPECS.glob("*.yaml"))
BOTH = ("y_rep", "log_lik")


# -- the plumbing, on draws made up with the right shapes (nothing is compiled) ------------------------

def fake_fit(spec_file, seed: int = 0) -> Fit:
    """A Fit of the spec's program and data whose draws are made up (2 chains x 5 draws) with the shapes and
    names of the program's: enough to run predict on any rows."""
    program = build(spec_file)
    d, prepared = program.description, program.data
    rng = np.random.default_rng(seed)
    shape = (2, 5)

    def normal(*size):
        return rng.normal(0, 0.3, shape + size)

    post = {}
    if d.intercept:
        post["Intercept"] = normal()
    for t in d.terms:
        post[f"beta_{t.stan}"] = normal(len(prepared.columns[t.name])) if t.categorical else normal()
    for sub in d.submodels:  # a sub-model's intercept and coefficients (its levels' with the model's below)
        post[sub.intercept_name] = normal()
        for t in sub.terms:
            post[t.param] = normal(len(prepared.columns[t.columns_key])) if t.categorical else normal()
    for lv in d.all_levels:
        J, q = len(prepared.labels[lv.name]), lv.n_coef
        for c in lv.coefficients:
            for e in c.effects:
                width = len(prepared.group_columns[(lv.name, e.predictor.name)])
                post[e.name] = normal(width) if e.predictor.categorical else normal()
        post[f"u_{lv.stan}"] = normal(J) if lv.kind == "intercept" else normal(J, q)
        post[f"sd_{lv.stan}"] = np.abs(normal()) if lv.kind == "intercept" else np.abs(normal(q))
        if lv.kind == "correlated":
            post[f"corr_{lv.stan}"] = np.broadcast_to(np.eye(q) * 0.8 + 0.2, shape + (q, q)).copy()
    for aux in d.scalar_aux:
        if aux.size:
            post[aux.name] = np.sort(normal(d.family.aux_length(aux, prepared.stan_data)), axis=-1)
        elif aux.name == "sigma" and prepared.sigma_labels:
            post[aux.name] = 1 + np.abs(normal(len(prepared.sigma_labels)))
        else:
            post[aux.name] = 2 + np.abs(normal())
    stats = {"lp": normal(), "diverging": np.zeros(shape, dtype=bool), "tree_depth": np.full(shape, 3),
             "energy": normal()}  # (made up too: enough for the convergence checks to run)
    return Fit(program, az.from_dict(posterior=post, sample_stats=stats), {})


def with_new_groups(spec_file) -> tuple[pd.DataFrame, dict[str, str]]:
    """The spec's data with the rows of one group of each level given a new label (a nested level's new group
    sits under its known parent)."""
    spec = stangen.Spec.from_yaml(spec_file)
    frame = pd.read_csv(spec.data_path)
    new = {}
    for name, level in spec.levels.items():
        column = level.id or name
        first = frame[column].iloc[0]
        frame[column] = frame[column].astype(object)
        frame.loc[frame[column] == first, column] = f"new-{name}"
        new[name] = f"new-{name}"
    return frame, new


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_every_example_predicts_its_own_rows_and_new_groups(spec_file):
    fit = fake_fit(spec_file)
    own = pd.read_csv(fit.spec.data_path).drop(columns=[fit.spec.outcome])
    for kind in ("link", "mean", "response"):
        table = fit.predict(own, kind=kind, seed=1)
        assert len(table) == len(own) and np.isfinite(table["mean"]).all(), kind
    if not fit.spec.levels:
        return
    frame, _ = with_new_groups(spec_file)
    with pytest.raises(stangen.DataError, match="the model was not fitted on"):
        fit.predict(frame)
    for mode in ("sample", "population"):
        draws = fit.predict(frame, kind="response", new_groups=mode, draws=True, seed=2)
        assert draws.shape == (2, 5, len(frame)) and np.isfinite(draws.values).all()


def test_new_groups_population_is_the_fitted_population_line():
    """With new_groups='population' a new group's linear predictor is the population's alone (its effects 0),
    and 'sample' spreads it by the fitted sds."""
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    frame = read_example("sleepstudy").head(10).assign(Subject="someone new")
    link = fit.predict(frame, kind="link", new_groups="population", draws=True).values
    population = fit.posterior["Intercept"].values[..., None] + fit.posterior["beta_Days"].values[..., None] \
        * frame["Days"].to_numpy()
    assert np.allclose(link, population)
    sampled = fit.predict(frame, kind="link", new_groups="sample", draws=True, seed=3).values
    assert not np.allclose(sampled, population)


def test_a_new_nested_group_keeps_its_known_parent():
    fit = fake_fit(SPECS / "pastes.yaml")
    frame = read_example("pastes")
    known = fit.predict(frame.head(2), kind="link", draws=True).values
    frame = frame.head(2).assign(cask="z")  # a new cask in batch A
    new = fit.predict(frame, kind="link", new_groups="population", draws=True).values
    u_batch = fit.posterior["u_batch"].values[..., 0]
    assert np.allclose(new, fit.posterior["Intercept"].values[..., None] + u_batch[..., None])
    assert not np.allclose(new, known)


def test_bad_new_data_name_the_column_value_or_group():
    fit = fake_fit(SPECS / "exam.yaml")
    exam = read_example("exam")
    with pytest.raises(stangen.DataError, match=r"predictors\[0\]: column 'standLRT' is not in the new data"):
        fit.predict(exam.drop(columns=["standLRT"]))
    fit = fake_fit(SPECS / "cbpp.yaml")
    cbpp = read_example("cbpp")
    with pytest.raises(stangen.DataError, match=r"categorical 'period' has value\(s\) the model was not fitted on: "
                                                r"'5' at rows 1, 2"):
        fit.predict(cbpp.assign(period=[5, 5] + list(cbpp["period"][2:])))
    with pytest.raises(stangen.DataError, match=r"trials: column 'size' is not in the new data"):
        fit.predict(cbpp.drop(columns=["size"]), kind="mean")
    assert len(fit.predict(cbpp.drop(columns=["size", "incidence"]), kind="link")) == len(cbpp)
    fit = fake_fit(SPECS / "exam.yaml")
    spec = fit.spec
    new = exam.head(6).assign(school="new school")
    predictor = next(p for lv in spec.levels.values() for c in lv.coefficients for p in lv.predictors_of(c))
    with pytest.raises(stangen.DataError, match=rf"'{predictor}' is not in the new data; new 'school' groups "
                                                r"\('new school'\) need"):
        fit.predict(new.drop(columns=[predictor]), new_groups="sample")
    varying = new.assign(**{predictor: np.arange(6.0)})
    with pytest.raises(stangen.DataError, match=rf"'{predictor}' varies within new 'school' group\(s\) 'new school'"):
        fit.predict(varying, new_groups="sample")
    two_new = pd.concat([new, new.assign(school="another")])
    with pytest.raises(stangen.DataError, match=r"2 'school' group\(s\) the model was not fitted on: 'another', "
                                                r"'new school'"):
        fit.predict(two_new)


def test_ordinal_mean_gives_each_categorys_probability():
    fit = fake_fit(SPECS / "soup.yaml")
    table = fit.predict(read_example("soup").head(4), kind="mean")
    probabilities = table[[f"P({k})" for k in range(1, 7)]].to_numpy()
    assert np.allclose(probabilities.sum(axis=1), 1)
    assert np.allclose(table["mean"], probabilities @ np.arange(1, 7), atol=1e-9)
    response = fit.predict(read_example("soup").head(4), kind="response", draws=True, seed=1).values
    assert set(np.unique(response)) <= set(range(1, 7))


# -- against the program, and calibration (sampled) -----------------------------------------------------

SHORT = dict(chains=4, warmup=300, draws=300, seed=7, quiet=True, backend="pystan")


@pytest.mark.sampling
@pytest.mark.parametrize("name", ["sleepstudy", "exam", "pastes", "soup"])
def test_training_rows_match_the_programs_log_lik_draw_by_draw(name, tmp_path):
    """The predicted linear predictor, put through the family's density, is Stan's own log_lik of every
    training row in every draw (so the linear predictor is Stan's); response draws match y_rep."""
    fit = stangen.fit(SPECS / f"{name}.yaml", generated=BOTH, **SHORT)
    frame = fit.training_data()
    link = fit.predict(frame, kind="link", draws=True).values.reshape(-1, len(frame))
    aux = {a.name: fit.posterior[a.name].values.reshape(link.shape[0], -1) for a in fit.description.family.aux}
    y = np.asarray(fit.program.stan_data["y"])
    trials = fit.program.stan_data.get("trials")
    ours = fit.description.family.log_density(y[None, :], link, aux, trials)
    stans = fit.idata.log_likelihood["y"].values.reshape(link.shape)
    assert np.abs(ours - stans).max() < 1e-8
    response = fit.predict(frame, kind="response", draws=True, seed=1).values.reshape(link.shape)
    y_rep = fit.idata.posterior_predictive["y"].values.reshape(link.shape)
    scale = np.maximum(y_rep.std(axis=0), 1e-9)
    assert np.abs(response.mean(axis=0) - y_rep.mean(axis=0)).max() / scale.min() < 0.25 or \
        np.median(np.abs(response.mean(axis=0) - y_rep.mean(axis=0)) / scale) < 0.05
    ratio = response.std(axis=0) / scale
    assert 0.85 < np.median(ratio) < 1.15
    fitted = fit.fitted()
    assert np.allclose(fitted["mean"], fit.description.family.expected(link, aux, trials).mean(axis=0))
    # the CLI: a run directory, new rows with a new group, exit codes
    run = fit.save(tmp_path / "run")
    new_rows = frame.head(3).copy()
    first = fit.description.levels[0]
    new_rows[first.id_column] = "nobody"
    new_rows.drop(columns=[fit.spec.outcome]).to_csv(tmp_path / "new.csv", index=False)
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv")]) == 1
    assert main(["predict", str(run), "--data", str(tmp_path / "new.csv"), "-o", str(tmp_path / "p.csv"),
                 "--new-groups", "sample", "--kind", "mean"]) == 0
    assert len(pd.read_csv(tmp_path / "p.csv")) == 3
    from stangen.results.effects import numeric_predictors
    numeric = numeric_predictors(fit)
    if numeric:
        assert main(["effects", str(run), "--predictor", numeric[0], "--groups", "5"]) == 0
        assert (run / "plots" / f"effects_{numeric[0]}.png").exists()
    assert main(["effects", str(run), "--predictor", "no such thing"]) == 1


@pytest.mark.sampling
def test_intervals_cover_held_out_rows_and_new_groups():
    """Simulated with a correlated intercept and slope: 90% intervals of new outcomes cover about 90% of
    held-out rows of fitted groups and of rows of new groups (new_groups='sample'); with 'population' a new
    group's intervals leave out its own effect and are too narrow."""
    spec = stangen.Spec(outcome="Reaction", predictors=["Days"], name="sleepstudy",  # sleepstudy's program
                        levels={"Subject": stangen.Level(varying=["intercept", "Days"], parameterization="centered")})
    truth = {"Intercept": 250.0, "coefficients": {"Days": 10.0}, "sd": {"Subject": {"intercept": 25.0, "Days": 6.0}},
             "cor": {"Subject": 0.2}, "sigma": 20.0}
    data = simulate(spec, truth, data=False, groups={"Subject": 200}, per_group=15, seed=11).data
    data["Days"] = data["Days"] * 3 + 4.5
    data = simulate(spec, truth, data=data.drop(columns=["Reaction"]), seed=12).data
    subjects = data["Subject"].unique()
    known = subjects[:100]  # the other 100 subjects are new groups
    in_known = data["Subject"].isin(known)
    position = data.groupby("Subject").cumcount()
    train = data[in_known & (position < 10)]
    held_out, new_rows = data[in_known & (position >= 10)], data[~in_known & (position < 5)]
    fit = stangen.fit(spec, train, chains=4, warmup=500, draws=500, seed=3, quiet=True, backend="pystan")

    def coverage(rows, mode):
        table = fit.predict(rows, kind="response", new_groups=mode, seed=4, quantiles=(0.05, 0.95))
        inside = (rows["Reaction"].to_numpy() > table["q5%"]) & (rows["Reaction"].to_numpy() < table["q95%"])
        return inside.mean(), (table["q95%"] - table["q5%"]).mean()

    known_cover, _ = coverage(held_out, "error")
    new_cover, new_width = coverage(new_rows, "sample")
    population_cover, population_width = coverage(new_rows, "population")
    assert 0.85 <= known_cover <= 0.95, known_cover
    assert 0.85 <= new_cover <= 0.95, new_cover
    assert population_cover < 0.82 and population_width < 0.8 * new_width, (population_cover, population_width)


# -- conditional effects --------------------------------------------------------------------------------

def test_effects_population_line_is_intercept_plus_slope(tmp_path):
    from stangen.results.effects import effects_table
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    table = effects_table(fit, "Days", groups=3, points=5)
    population = table[table["kind"] == "population"]
    expected = (fit.posterior["Intercept"].values[..., None]
                + fit.posterior["beta_Days"].values[..., None] * population["Days"].to_numpy()).reshape(-1, 5)
    assert np.allclose(population["mean"], expected.mean(axis=0))
    assert (population["q2.5%"] <= population["q25%"]).all() and (population["q75%"] <= population["q97.5%"]).all()
    assert table[table["kind"] == "group"]["line"].nunique() == 3
    assert fit.plot_effects("Days", tmp_path / "e.png", groups=3).stat().st_size > 1000


@pytest.mark.parametrize("name, predictor, by", [("language", "iq_verb", None), ("exam", "standLRT", None),
                                                  ("blackmore", "age", "group"), ("cbpp", None, None),
                                                  ("turnout", None, None), ("pastes", None, None)])
def test_effects_for_other_structures(name, predictor, by, tmp_path):
    from stangen.results.effects import effects_table, numeric_predictors
    fit = fake_fit(SPECS / f"{name}.yaml")
    predictor = predictor or (numeric_predictors(fit) or [None])[0]
    if predictor is None:  # no numeric level-1 predictor: a clear error
        with pytest.raises(stangen.StangenError, match="is not a numeric level-1 predictor"):
            effects_table(fit, "x")
        return
    table = effects_table(fit, predictor, by=by, groups=4)
    assert np.isfinite(table["mean"]).all()
    if by:
        assert table[table["kind"] == "population"]["line"].nunique() == len(fit.program.data.categories[by])
    assert fit.plot_effects(predictor, tmp_path / "e.png", by=by, groups=4).exists()


@pytest.mark.parametrize("spec_file", SPEC_FILES, ids=[p.stem for p in SPEC_FILES])
def test_the_training_rows_encode_as_the_program_saw_them(spec_file):
    """Training and prediction share the coding: the training rows, encoded as new rows, give the program's
    design matrix (before centering), slope values and group indices."""
    from stangen.compiler.new_rows import encode_rows
    program = build(spec_file)
    frame = pd.read_csv(program.spec.data_path)
    rows = encode_rows(program, frame)
    data, d = program.stan_data, program.description
    spans = np.cumsum([0] + [len(program.data.columns[t.name]) for t in d.terms])
    pooled = [i for k, t in enumerate(d.terms) if t in d.pooled_terms for i in range(spans[k], spans[k + 1])]
    if pooled:
        assert np.allclose(rows.design[:, pooled], np.asarray(data["X"]) + np.asarray(data["X_means"]))
    for t in d.slope_terms:
        assert np.allclose(rows.slopes[t.name], data[f"x_{t.stan}"])
    for lv in d.levels:
        assert (rows.group[lv.name] + 1 == np.asarray(data[f"idx_{lv.stan}"])).all()
        assert rows.new_labels[lv.name] == []
