"""Data preparation: group indices and labels, coding, centering, group-level predictors, and every data error."""
import numpy as np
import pandas as pd
import pytest

from stangen import DataError, Level, Spec
from stangen.cli import main
from stangen.compiler.program import build

from conftest import ROOT, SPECS, read_example, write_spec


def problems_of(spec, df):
    with pytest.raises(DataError) as info:
        build(spec, df)
    return info.value.problems


def one_problem(spec, df, path, *fragments):
    problems = problems_of(spec, df)
    matching = [p for p in problems if p.path == path and all(f in p.message for f in fragments)]
    assert matching, "\n".join(map(str, problems))
    return matching[0]


def simple_frame(n_groups=4, per=5, seed=0):
    rng = np.random.default_rng(seed)
    g = np.repeat([f"g{k}" for k in range(n_groups)], per)
    return pd.DataFrame({"y": rng.normal(size=n_groups * per), "x": rng.normal(size=n_groups * per), "g": g,
                         "w": np.repeat(np.arange(n_groups, dtype=float), per)})


# ---- structure -----------------------------------------------------------------------------

def test_nested_groups_are_identified_with_their_parent():
    program = build(SPECS / "pastes.yaml")
    labels = program.data.labels
    assert len(labels["batch"]) == 10 and len(labels["cask"]) == 30
    assert labels["cask"][:4] == ["A:a", "A:b", "A:c", "B:a"]
    df = read_example("pastes")
    idx = program.stan_data["idx_cask"]
    # every row's cask index points at the label 'batch:cask' of that row
    assert all(labels["cask"][j - 1] == f"{b}:{c}" for j, b, c in zip(idx, df.batch, df.cask))


def test_group_labels_sort_numerically_and_keep_their_text():
    program = build(SPECS / "sleepstudy.yaml")
    labels = program.data.labels["Subject"]
    assert labels[:3] == ["308", "309", "310"] and labels[-1] == "372"
    df = read_example("sleepstudy")
    assert [labels[j - 1] for j in program.stan_data["idx_Subject"][:11]] == [str(s) for s in df.Subject[:11]]


def test_categorical_treatment_coding_with_default_and_named_reference():
    df = read_example("cbpp")
    program = build(SPECS / "cbpp.yaml")
    assert program.data.columns["period"] == ["period2", "period3", "period4"]
    x = program.stan_data["X"] + program.stan_data["X_means"]
    np.testing.assert_array_equal(x[:, 0], (df.period == 2).astype(float))
    spec = Spec.from_dict({**Spec.from_yaml(SPECS / "cbpp.yaml").to_dict(), "reference": {"period": "4"}})
    assert build(spec, df).data.columns["period"] == ["period1", "period2", "period3"]


def test_without_intercept_the_first_factor_gets_every_level():
    df = read_example("cbpp")
    spec = Spec(outcome="incidence", family="binomial", trials="size", predictors=["period"],
                categorical=["period"], intercept=False, levels={"herd": Level()})
    program = build(spec, df)
    assert program.data.columns["period"] == ["period1", "period2", "period3", "period4"]
    np.testing.assert_array_equal(program.stan_data["X_means"], 0)  # no intercept, no centering


def test_interaction_columns_and_names():
    df = simple_frame()
    df["sex"] = np.tile(["f", "m"], len(df) // 2)
    program = build(Spec(outcome="y", predictors=["x", "sex", "x:sex"], levels={"g": Level()}), df)
    assert program.data.columns["x:sex"] == ["x:sexm"]
    x = program.stan_data["X"] + program.stan_data["X_means"]
    np.testing.assert_allclose(x[:, 2], df.x * (df.sex == "m"))
    assert "vector[K_sex] beta_sex;" in program.code and "real beta_x_x_sex;" not in program.code


def test_predictors_are_centered_and_slopes_use_raw_values():
    spec = Spec.from_yaml(SPECS / "sleepstudy.yaml").with_parameterization("noncentered")
    program = build(spec)
    data, df = program.stan_data, read_example("sleepstudy")
    assert data["X_means"][0] == pytest.approx(df.Days.mean())
    np.testing.assert_allclose(data["X"][:, 0], df.Days - df.Days.mean())
    np.testing.assert_array_equal(data["x_Days"], df.Days)


def test_a_centered_level_takes_the_pooled_coefficients_out_of_X():
    """Centered, the Subject coefficients are drawn around (Intercept, beta_Days): Days leaves X, and the
    default priors stay those of the noncentered program (the model is the same)."""
    spec = Spec.from_yaml(SPECS / "sleepstudy.yaml")
    centered, noncentered = build(spec.with_parameterization("centered")), build(spec.with_parameterization("noncentered"))
    assert "X" not in centered.stan_data and "K" not in centered.stan_data
    assert "rep_vector(beta_Days, J_Subject)" in centered.code
    # the slopes enter the likelihood as the Subject block of the design (C'C of the cross-products)
    assert "= b_Subject[:, 2];  // Subject Days slopes (with the pooled coefficient)" in centered.code
    assert centered.stan_data["P"] == 2 * centered.stan_data["J_Subject"]  # no pooled intercept, no X
    for key, value in noncentered.stan_data.items():
        if key.startswith("prior_"):
            np.testing.assert_allclose(centered.stan_data[key], value, err_msg=key)


def test_nested_centered_level_gets_each_groups_parent():
    program = build(Spec.from_yaml(SPECS / "pastes.yaml").with_parameterization("centered"))
    labels = program.data.labels
    parents = program.stan_data["parent_cask"]
    assert len(parents) == len(labels["cask"]) == 30
    for j, label in enumerate(labels["cask"]):
        assert labels["batch"][parents[j] - 1] == label.split(":")[0]
    assert "m_cask = b_batch[parent_cask];" in program.code


def test_group_means_are_contextual_predictors():
    program = build(SPECS / "language.yaml")
    df = read_example("language")
    means = df.groupby(df.school.astype(str)).iq_verb.mean()
    labels = program.data.labels["school"]
    w = program.stan_data["W_school_mean_iq_verb"] + program.stan_data["W_school_mean_iq_verb_center"]
    np.testing.assert_allclose(w, means.reindex(labels).to_numpy())
    assert program.stan_data["W_school_mean_iq_verb"].mean() == pytest.approx(0, abs=1e-12)


def test_categorical_group_predictor_becomes_group_level_columns():
    df = read_example("language")
    spec = Spec(outcome="lang_post", predictors=["iq_verb"], categorical=["denomination"],
                levels={"school": Level(predictors=["denomination"])})
    program = build(spec, df)
    assert program.data.group_columns[("school", "denomination")] == ["denomination2", "denomination3",
                                                                       "denomination4"]
    assert program.stan_data["W_school_denomination"].shape == (131, 3)
    assert "matrix[J_school, K_W_school_denomination] W_school_denomination;" in program.code


def test_program_is_data_independent():
    df = read_example("sleepstudy")
    spec = Spec.from_yaml(SPECS / "sleepstudy.yaml")
    small = build(spec, df[df.Subject < 340])
    full = build(spec, df)
    rescaled = build(Spec.from_dict({**spec.to_dict(), "priors": {"sigma": "exponential(0.1)"}}), df)
    assert small.code == full.code == rescaled.code
    assert small.stan_data["J_Subject"] < full.stan_data["J_Subject"]
    assert rescaled.stan_data["prior_sigma_rate"] == 0.1 != full.stan_data["prior_sigma_rate"]


def test_default_priors_scale_with_the_data():
    program = build(SPECS / "sleepstudy.yaml")
    data, df = program.stan_data, read_example("sleepstudy")
    s_y = df.Reaction.std(ddof=0)
    assert data["prior_Intercept_location"] == pytest.approx(df.Reaction.mean())
    assert data["prior_Intercept_scale"] == pytest.approx(2.5 * s_y)
    assert data["prior_beta_Days_scale"] == pytest.approx(2.5 * s_y / df.Days.std(ddof=0))
    np.testing.assert_allclose(data["prior_sd_Subject_rate"], [1 / s_y, df.Days.std(ddof=0) / s_y])
    assert data["prior_sigma_rate"] == pytest.approx(1 / s_y)
    assert program.data.priors["sigma"]["source"] == "default"


def test_default_coefficient_priors_on_a_log_scale_are_gelman_s():
    """Owls' poisson model: 2.5 per two sds of each column (Gelman et al. 2008), so a balanced 0/1 column gets
    normal(0, 2.5), not rstanarm's 2.5 / s_x = 5; the intercept keeps scale 2.5 (at the log of the mean count
    per unit of exposure)."""
    program = build(SPECS / "owls.yaml")
    data, df = program.stan_data, pd.read_csv(ROOT / "examples" / "data" / "owls.csv")
    satiated = (df["food"] == "Satiated").astype(float)
    assert data["prior_beta_food_scale"] == pytest.approx([1.25 / satiated.std(ddof=0)])
    assert 2.4 < data["prior_beta_food_scale"][0] < 2.6
    assert data["prior_Intercept_scale"] == pytest.approx(2.5)
    assert data["prior_Intercept_location"] == pytest.approx(np.log(df["calls"].mean()) - df["log_brood"].mean())


# ---- errors ----------------------------------------------------------------------------------

def test_missing_column_names_the_spec_path_and_suggests():
    df = simple_frame().rename(columns={"x": "xx"})
    one_problem(Spec(outcome="y", predictors=["x"], levels={"g": Level()}), df,
                "predictors[0]", "column 'x' is not in the data", "did you mean 'xx'")


def test_several_missing_columns_are_reported_together():
    problems = problems_of(Spec(outcome="yy", predictors=["a"], levels={"h": Level()}), simple_frame())
    assert {p.path for p in problems} == {"outcome", "predictors[0]", "levels.h.id"}


def test_mostly_numeric_text_column_is_an_error_not_a_category():
    df = simple_frame()
    df["x"] = df.x.astype(object)
    df.loc[[2, 7], "x"] = "n/a"
    problem = one_problem(Spec(outcome="y", predictors=["x"], levels={"g": Level()}), df,
                          "predictors[0]", "numeric except 'n/a'", "rows 3, 8", "categorical")
    assert problem


def test_missing_values_are_counted_with_their_rows():
    df = simple_frame()
    df.loc[[0, 4, 9], "x"] = np.nan
    one_problem(Spec(outcome="y", predictors=["x"], levels={"g": Level()}), df,
                "predictors[0]", "3 missing value(s)", "rows 1, 5, 10")


def test_bernoulli_outcome_must_be_0_or_1():
    df = simple_frame()
    df["y"] = (df.y > 0).astype(int)
    df.loc[3, "y"] = 2
    one_problem(Spec(outcome="y", family="bernoulli", levels={"g": Level()}), df, "outcome", "0 or 1", "row 4")


@pytest.mark.parametrize("bad, shown", [(-1, "-1"), (2.5, "2.5")])
def test_counts_must_be_non_negative_integers(bad, shown):
    df = simple_frame()
    df["y"] = 3.0
    df.loc[5, "y"] = bad
    one_problem(Spec(outcome="y", family="poisson", levels={"g": Level()}), df,
                "outcome", "non-negative integer", shown, "row 6")


def test_successes_cannot_exceed_trials():
    df = read_example("cbpp")
    df.loc[[10, 20], "incidence"] = 99
    one_problem(SPECS / "cbpp.yaml", df, "outcome", "exceed trials", "rows 11, 21")


def test_group_level_predictor_must_be_constant_within_groups():
    df = simple_frame()
    df.loc[6, "w"] = 42.0
    one_problem(Spec(outcome="y", levels={"g": Level(predictors=["w"])}), df,
                "levels.g.predictors", "varies within 1 group(s)", "'g1'", "means: [w]")


def test_nested_group_under_two_parents_with_unique_labels():
    df = read_example("pastes")
    spec = Spec(outcome="strength", levels={"batch": Level(), "cask": Level(within="batch", unique_labels=True)})
    one_problem(spec, df, "levels.cask.unique_labels", "group 'a'", "appears under 10 different 'batch' groups")


def test_level_with_a_single_group():
    df = simple_frame()
    df["one"] = "only"
    one_problem(Spec(outcome="y", levels={"g": Level(), "one": Level()}), df,
                "levels.one", "single group ('only')")


def test_reference_level_must_exist():
    df = read_example("cbpp")
    spec = Spec.from_dict({**Spec.from_yaml(SPECS / "cbpp.yaml").to_dict(), "reference": {"period": "9"}})
    one_problem(spec, df, "reference.period", "'9' is not a value of 'period'")


def test_constant_predictor_is_reported():
    df = simple_frame()
    df["x"] = 1.0
    one_problem(Spec(outcome="y", predictors=["x"], levels={"g": Level()}), df, "predictors[0]", "constant")


def test_categorical_varying_slope_is_reported_as_unsupported():
    df = read_example("cbpp")
    spec = Spec(outcome="incidence", family="binomial", trials="size", predictors=["period"],
                categorical=["period"], levels={"herd": Level(varying=["intercept", "period"])})
    from stangen import SpecError
    with pytest.raises(SpecError, match="not supported yet"):
        build(spec, df)


def test_cli_data_error_exits_1_without_traceback(tmp_path, capsys):
    df = simple_frame()
    df.loc[0, "y"] = np.nan
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = write_spec(tmp_path, "data: d.csv\noutcome: y\nlevels: {g: {}}\n")
    assert main(["validate", str(spec)]) == 1
    err = capsys.readouterr().err
    assert "outcome: column 'y' has 1 missing value(s): row 1" in err and "Traceback" not in err


def test_render_writes_program_and_data_json(tmp_path):
    out, data = tmp_path / "m.stan", tmp_path / "d.json"
    assert main(["render", str(SPECS / "sleepstudy.yaml"), "-o", str(out), "--data-json", str(data)]) == 0
    import json
    stan_data = json.loads(data.read_text())
    assert stan_data["N"] == 180 and stan_data["J_Subject"] == 18 and "vector[N] y;" in out.read_text()
    assert not list(tmp_path.glob(".*"))  # no temporary files left behind


def test_factor_coding_follows_r_marginality_rule():
    df = simple_frame()
    df["sex"] = np.tile(["f", "m"], len(df) // 2)
    # x:sex without x → a slope column for every level of sex (like R's `y ~ sex + x:sex`)
    program = build(Spec(outcome="y", predictors=["sex", "x:sex"], levels={"g": Level()}), df)
    assert program.data.columns == {"sex": ["sexm"], "x:sex": ["x:sexf", "x:sexm"]}
    # without an intercept: every level for the first factor, contrasts for the next
    df["arm"] = np.repeat(["a", "b"], len(df) // 2)
    program = build(Spec(outcome="y", predictors=["sex", "arm"], intercept=False, levels={"g": Level()}), df)
    assert program.data.columns == {"sex": ["sexf", "sexm"], "arm": ["armb"]}
