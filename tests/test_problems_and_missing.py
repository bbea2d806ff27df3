"""Every problem that can be known is reported in one run; `missing: drop` leaves out incomplete rows as
lme4's na.omit does, loudly."""
import json

import numpy as np
import pandas as pd
import pytest

from stangen import DataError, Level, Spec, SpecError
from stangen.cli import main
from stangen.compiler.program import build

from conftest import SPECS, read_example, write_spec


def school_frame(seed=1, n=40):
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"score": rng.normal(size=n), "x": rng.normal(size=n),
                         "z": rng.normal(size=n).astype(object), "school": np.repeat(list("abcd"), n // 4),
                         "w": np.repeat([1.0, 2.0, 3.0, 4.0], n // 4)})


MANY_PROBLEMS = """data: d.csv
family: gausian
outcome: scroe
predictors: [x, z, q]
levels:
  school:
    within: distrct
    predictors: [w, ww]
priors:
  sd: exponential(-1)
"""


def test_spec_and_data_problems_are_reported_together(tmp_path, capsys):
    df = school_frame()
    df.loc[3, "x"] = np.nan
    df.loc[5, "z"] = "oops"
    df.to_csv(tmp_path / "d.csv", index=False)
    spec = write_spec(tmp_path, MANY_PROBLEMS)
    with pytest.raises(SpecError) as caught:
        build(spec)
    found = {(p.path, p.message.split(":")[0].split(";")[0]) for p in caught.value.problems}
    assert {path for path, _ in found} == {
        "family", "levels.school.within", "priors.sd",                      # the spec's own
        "outcome", "predictors[2]", "levels.school.varying.intercept",      # columns not in the data
        "predictors[0]", "predictors[1]"}                                    # a missing value; text in numbers
    assert caught.value.render().startswith(f"{spec}: 8 problems found")
    # the command line prints them all, once, without a traceback
    assert main(["validate", str(spec)]) == 1
    err = capsys.readouterr().err
    assert err.count("\n  - ") == 8 and "Traceback" not in err
    assert "did you mean 'score'" in err and "did you mean 'gaussian'" in err and "row 4" in err


def test_problems_that_depend_on_an_earlier_one_are_skipped(tmp_path):
    """A misspelt varying term or an unknown categorical variable is one problem, not a missing column too."""
    school_frame().to_csv(tmp_path / "d.csv", index=False)
    spec = write_spec(tmp_path, "data: d.csv\noutcome: score\npredictors: [x]\ncategorical: [xx]\n"
                                "levels: {school: {varying: [intercept, xz]}}\n")
    with pytest.raises(SpecError) as caught:
        build(spec)
    assert {p.path for p in caught.value.problems} == {"categorical[0]", "levels.school.varying[1]"}


def test_problems_found_with_the_data_join_the_datas_own(tmp_path):
    """A categorical varying slope (known once the data show the column is text) and a missing column."""
    df = read_example("cbpp")
    spec = Spec(outcome="incidence", family="binomial", trials="size", predictors=["period", "season"],
                levels={"herd": Level(varying=["intercept", "period"])})
    with pytest.raises(SpecError) as caught:
        build(spec, df.assign(period="p" + df.period.astype(str)))
    assert {p.path for p in caught.value.problems} == {"levels.herd.varying", "predictors[1]"}


def test_data_problems_of_every_stage_come_in_one_error():
    """A missing column, a missing value, a bad outcome and a single-group level: no stage waits for another."""
    df = school_frame()
    df["score"] = (df.score > 0).astype(float)
    df.loc[2, "score"] = 3
    df.loc[7, "x"] = np.nan
    df["one"] = "only"
    spec = Spec(outcome="score", family="bernoulli", predictors=["x", "nope"],
                levels={"school": Level(), "one": Level()})
    with pytest.raises(DataError) as caught:
        build(spec, df)
    assert {p.path for p in caught.value.problems} == {"predictors[0]", "predictors[1]", "outcome", "levels.one"}


# ---- missing: drop ------------------------------------------------------------------------------

def sleepstudy_with_holes():
    df = read_example("sleepstudy")
    holes = df.copy()
    holes.loc[[3, 50], "Days"] = np.nan        # a predictor
    holes.loc[[50, 120], "Subject"] = np.nan   # the level's id (row 51 misses both)
    holes.loc[[7], "Reaction"] = np.nan        # the outcome
    return df, holes, [3, 50, 120, 7]


def test_missing_error_names_rows_and_the_drop_policy():
    _, holes, _ = sleepstudy_with_holes()
    with pytest.raises(DataError) as caught:
        build(SPECS / "sleepstudy.yaml", holes)
    text = caught.value.render()
    assert {p.path for p in caught.value.problems} == {"outcome", "predictors[0]", "levels.Subject.id"}
    assert "rows 4, 51" in text and "missing: drop" in text


def test_drop_gives_the_data_of_the_cleaned_frame_and_counts_per_column():
    df, holes, dropped = sleepstudy_with_holes()
    program = build(SPECS / "sleepstudy.yaml", holes, missing="drop")
    clean = build(SPECS / "sleepstudy.yaml", holes.dropna().reset_index(drop=True))
    assert program.code == clean.code
    assert program.stan_data.keys() == clean.stan_data.keys()
    for key, value in clean.stan_data.items():
        np.testing.assert_array_equal(program.stan_data[key], value, err_msg=key)
    assert program.data.n == len(df) - len(dropped)
    assert program.data.dropped.rows == tuple(sorted(i + 1 for i in dropped))
    assert dict(program.data.dropped.by_column) == {"Reaction": 1, "Days": 2, "Subject": 2}
    assert program.data.dropped.note() == "4 dropped: missing Reaction (1), Days (2), Subject (2)"
    assert clean.data.dropped is None


def test_drop_is_a_spec_key_too(tmp_path):
    _, holes, _ = sleepstudy_with_holes()
    holes.to_csv(tmp_path / "d.csv", index=False)
    spec = write_spec(tmp_path, (SPECS / "sleepstudy.yaml").read_text().replace(
        "data: ../examples/data/sleepstudy.csv", "data: d.csv") + "missing: drop\n")
    assert Spec.from_yaml(spec).missing == "drop"
    assert build(spec).data.n == 176
    with pytest.raises(SpecError, match="unknown missing-value policy 'omit'"):
        build(spec, missing="omit")


def test_group_level_predictor_missing_for_a_whole_group_is_an_error_under_either_policy():
    df = school_frame()
    df.loc[df.school == "c", "w"] = np.nan
    df.loc[1, "w"] = np.nan  # one row of school a: dropped under `drop`
    spec = Spec(outcome="score", levels={"school": Level(predictors=["w"])})
    for policy in ("error", "drop"):
        with pytest.raises(DataError) as caught:
            build(spec, df, missing=policy)
        text = caught.value.render()
        assert "missing for every row of 1 'school' group(s): 'c'" in text, policy
    df.loc[df.school == "c", "w"] = 3.0
    assert build(spec, df, missing="drop").data.dropped.rows == (2,)


def test_drop_of_every_row_is_an_error():
    df = school_frame()
    df["x"] = np.nan
    with pytest.raises(DataError, match="every row has a missing value"):
        build(Spec(outcome="score", predictors=["x"], levels={"school": Level()}), df, missing="drop")


def test_cli_validate_and_render_report_dropped_rows(tmp_path, capsys):
    _, holes, _ = sleepstudy_with_holes()
    holes.to_csv(tmp_path / "d.csv", index=False)
    spec = SPECS / "sleepstudy.yaml"
    assert main(["validate", str(spec), "--data", str(tmp_path / "d.csv")]) == 1
    capsys.readouterr()
    assert main(["validate", str(spec), "--data", str(tmp_path / "d.csv"), "--missing", "drop"]) == 0
    out = capsys.readouterr().out
    assert "176 rows (4 dropped: missing Reaction (1), Days (2), Subject (2))" in out
    assert main(["render", str(spec), "--data", str(tmp_path / "d.csv"), "--missing", "drop",
                 "-o", str(tmp_path / "m.stan")]) == 0
    assert "4 dropped" in capsys.readouterr().err


@pytest.mark.sampling
def test_drop_fit_equals_the_fit_of_the_cleaned_frame(tmp_path):
    """Same seed, same data after the drop: identical draws; the run records and shows what was dropped."""
    import stangen
    from stangen.fitting import Fit

    _, holes, _ = sleepstudy_with_holes()
    settings = dict(chains=2, warmup=200, draws=100, seed=5, quiet=True, backend="pystan")
    dropped = stangen.fit(SPECS / "sleepstudy.yaml", holes, missing="drop", **settings)
    clean = stangen.fit(SPECS / "sleepstudy.yaml", holes.dropna().reset_index(drop=True), **settings)
    for var in ("Intercept", "beta_Days", "sigma", "sd_Subject"):
        np.testing.assert_array_equal(dropped.posterior[var].values, clean.posterior[var].values)
    assert "Number of obs: 176 (4 dropped: missing Reaction (1), Days (2), Subject (2))" in dropped.lme4()
    run = dropped.save(tmp_path / "run")
    record = json.loads((run / "run.json").read_text())
    assert record["dropped"]["by_column"] == {"Reaction": 1, "Days": 2, "Subject": 2}
    assert record["info"]["missing"] == "drop"
    loaded = Fit.load(run)
    assert loaded.program.data.dropped == dropped.program.data.dropped
    assert "4 dropped" in loaded.lme4()


@pytest.mark.sampling
def test_design_effect_of_a_nested_level_counts_its_ancestors(example_fit):
    """Two observations in one cask share its batch too: the cask level's design effect uses ICC(cask) +
    ICC(batch), not ICC(cask) alone."""
    from stangen.results.multilevel import design_effects, icc

    fit = example_fit("pastes")
    shares, draws = icc(fit), design_effects(fit)
    sizes = np.bincount(np.asarray(fit.program.stan_data["idx_cask"]) - 1)
    np.testing.assert_allclose(draws["design effect(cask)"],
                               1 + (sizes.mean() - 1) * (shares["ICC(cask)"] + shares["ICC(batch)"]))
    batch = np.bincount(np.asarray(fit.program.stan_data["idx_batch"]) - 1)
    np.testing.assert_allclose(draws["design effect(batch)"], 1 + (batch.mean() - 1) * shares["ICC(batch)"])
