"""Hostile or careless input is refused with a spec error, never taken down the machine (issue 25): YAML aliases
that expand beyond a bound (billion laughs), self-referencing YAML, deep nesting, oversized files, and
formulas too long, too deeply nested or not closed; numbers that are not numbers, in the sampler's settings and
in the data."""
from __future__ import annotations

import time

import numpy as np
import pandas as pd
import pytest

from stangen import DataError, Spec, SpecError
from stangen.compiler.program import build
from stangen.spec.formula import parse


def laughs(levels: int = 9) -> str:
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    for k in range(1, levels):
        lines.append(f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 10) + "]")
    lines.append(f"outcome: y\npriors: {{sd: *a{levels - 1}}}")
    return "\n".join(lines) + "\n"


def test_a_billion_laughs_is_refused_quickly(tmp_path):
    path = tmp_path / "laughs.yaml"
    path.write_text(laughs())
    start = time.perf_counter()
    with pytest.raises(SpecError, match="expands to more than 100,000 values"):
        Spec.from_yaml(path)
    assert time.perf_counter() - start < 10


def test_a_spec_that_refers_to_itself_is_refused(tmp_path):
    path = tmp_path / "self.yaml"
    path.write_text("outcome: y\npriors: &me {sd: *me}\n")
    with pytest.raises(SpecError, match="refers to itself"):
        Spec.from_yaml(path)


@pytest.mark.parametrize("depth", [60, 20_000])
def test_deep_nesting_is_refused(tmp_path, depth):
    path = tmp_path / "deep.yaml"
    path.write_text("outcome: y\npriors: " + "[" * depth + "]" * depth + "\n")
    with pytest.raises(SpecError, match="nested too deeply"):
        Spec.from_yaml(path)


def test_an_oversized_spec_file_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("outcome: y\n" + "# padding\n" * 200_000)
    with pytest.raises(SpecError, match="the spec file has 2,000,011 bytes; at most 1,000,000"):
        Spec.from_yaml(path)


def test_an_ordinary_spec_with_aliases_still_reads(tmp_path):
    path = tmp_path / "ok.yaml"
    path.write_text("outcome: y\npredictors: &p [x]\nlevels: {g: {varying: [intercept]}}\n")
    assert list(Spec.from_yaml(path).predictors) == ["x"]


@pytest.mark.parametrize("formula, message", [
    ("y ~ " + "(" * 3000 + "x" + ")" * 3000, "nested more than 30 deep"),
    ("y ~ " + " + ".join(f"x{k}" for k in range(15_000)), "characters; at most 10,000"),
])
def test_formulas_too_deep_or_too_long_are_refused(formula, message):
    with pytest.raises(SpecError, match=message):
        parse(formula)


@pytest.mark.parametrize("formula, message", [
    ("Reaction ~ Days + Days | Subject))", r"the '\)' at character 33 closes no '\('"),
    ("Reaction ~ Days + (Days | Subject", r"the '\(' at character 19 is never closed"),
    ("y ~ x | g", "from character 7 on is not part of the formula: '| g' — a grouping term is written in parentheses"),
    ("y ~ x + (1 | g) z", "from character 17 on is not part of the formula: 'z' — terms are joined with"),
    ("y ~ x + (x || g) | h", "from character 18 on is not part of the formula: '| h'"),
])
def test_unbalanced_parentheses_and_unread_text_are_errors_naming_the_position(formula, message):
    with pytest.raises(SpecError, match=message):
        parse(formula)


def test_parentheses_inside_quoted_names_are_text():
    assert [c.column for (c,) in parse("y ~ x + `a(b`").terms] == ["x", "a(b"]


# -- every number checked -------------------------------------------------------------------------------------

@pytest.mark.parametrize("setting, value", [("adapt_delta", float("nan")), ("init", float("inf")),
                                            ("draws", float("inf")), ("init", 1e6), ("seed", -1)])
def test_sampler_numbers_must_be_finite_and_in_range(setting, value):
    with pytest.raises(SpecError, match=f"sampler.{setting}"):
        Spec(outcome="y", sampler={setting: value})


def test_the_command_lines_numbers_are_checked_like_the_specs(capsys):
    from conftest import SPECS
    from stangen.cli import main
    assert main(["fit", str(SPECS / "sleepstudy.yaml"), "--init", "inf", "--out", "runs/never"]) == 1
    err = capsys.readouterr().err
    assert "sampler.init" in err and "finite" in err and "Traceback" not in err


def test_levels_given_as_an_empty_list_is_an_error():
    with pytest.raises(SpecError, match="levels: must be a mapping"):
        Spec.from_dict({"outcome": "y", "levels": []})


# -- numbers in the data --------------------------------------------------------------------------------------

def _school_spec():
    return Spec(outcome="score", predictors=["x"], levels={"school": {"varying": ["intercept"],
                                                                       "predictors": ["w"]}})


@pytest.mark.parametrize("column, row, value, message", [
    ("x", 3, np.inf, r"predictors\[0\]: column 'x' has infinite values at row 4"),
    ("score", 0, -np.inf, r"outcome: column 'score' has infinite values at row 1"),
    ("score", 7, 1e308, r"outcome: column 'score' has values beyond ±1e150 at row 8"),
    ("x", 9, -1e301, r"column 'x' has values beyond ±1e150 at row 10"),
    ("w", 0, np.inf, r"levels.school.*: column 'w' has infinite values at row 1"),
    ("x", 2, "inf", r"column 'x' has infinite values at row 3"),   # text, as a CSV may hold it
])
def test_infinite_and_huge_values_are_data_problems_naming_rows(column, row, value, message):
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"score": rng.normal(size=40), "x": rng.normal(size=40),
                       "school": np.repeat(list("abcd"), 10), "w": np.repeat([1.0, 2.0, 3.0, 4.0], 10)})
    df[column] = df[column].astype(object)
    df.loc[row, column] = value
    with pytest.raises(DataError, match=message):
        build(_school_spec(), df)


def test_an_infinite_value_is_not_dropped_as_missing_but_a_nan_is():
    rng = np.random.default_rng(3)
    df = pd.DataFrame({"score": rng.normal(size=40), "x": rng.normal(size=40),
                       "school": np.repeat(list("abcd"), 10), "w": np.repeat([1.0, 2.0, 3.0, 4.0], 10)})
    spec = Spec.from_dict({**_school_spec().to_dict(), "missing": "drop"})
    df.loc[5, "x"] = np.nan
    assert build(spec, df).data.stan_data["N"] == 39
    df.loc[6, "x"] = np.inf
    with pytest.raises(DataError, match="row 7"):   # named as the data's row, before the NaN row is dropped
        build(spec, df)
