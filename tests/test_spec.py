"""Spec format v1: loading, normalizing, round-tripping and validation messages."""
import subprocess
import sys

import pytest
import yaml

from stangen import Level, Spec, SpecError
from stangen.cli import main

from conftest import SPECS, write_spec


def test_yaml_and_python_give_the_same_spec():
    from_yaml = Spec.from_yaml(SPECS / "exam.yaml")
    in_python = Spec(
        name="exam", data="../examples/data/exam.csv", outcome="normexam", predictors=["standLRT"],
        levels={"school": Level(varying={"intercept": ["schavg"], "standLRT": ["schavg"]})})
    assert from_yaml == in_python


def test_intercept_predictors_and_mapping_form_are_the_same_model():
    a = Spec(outcome="y", predictors=["x"], levels={"g": Level(varying=["intercept", "x"], predictors=["w"])})
    b = Spec(outcome="y", predictors=["x"], levels={"g": Level(varying={"intercept": ["w"], "x": []})})
    assert a == b


@pytest.mark.parametrize("spec_file", sorted(SPECS.glob("*.yaml")), ids=lambda p: p.stem)
def test_to_yaml_round_trips(spec_file, tmp_path):
    spec = Spec.from_yaml(spec_file)
    again = Spec.from_yaml(write_spec(tmp_path, spec.to_yaml(), f"{spec_file.stem}.yaml"))
    assert again == spec


def test_spec_is_immutable():
    spec = Spec(outcome="y", levels={"g": Level()})
    with pytest.raises(Exception):
        spec.outcome = "z"
    with pytest.raises(TypeError):
        spec.levels["h"] = Level()


def test_defaults_are_filled_in():
    spec = Spec(outcome="y", levels={"g": Level()})
    level = spec.levels["g"]
    assert level.id == "g" and level.coefficients == ("intercept",) and level.correlated
    assert spec.family == "gaussian" and spec.intercept


MANY_MISTAKES = """\
family: gausian
outcome: y
predictors: [x, z]
levels:
  county:
    within: stat
    varying: [intercept, x, w]
    corelated: true
  state: {}
priors:
  sigma: normal(0, -1)
  sdd: exponential(1)
sampler: {chains: 0}
"""


def test_all_problems_are_reported_at_once_with_paths_and_lines(tmp_path):
    with pytest.raises(SpecError) as info:
        Spec.from_yaml(write_spec(tmp_path, MANY_MISTAKES))
    problems = {p.path: p for p in info.value.problems}
    assert set(problems) == {"family", "levels.county.within", "levels.county.varying[2]",
                             "levels.county.corelated", "priors.sigma", "priors.sdd", "sampler.chains"}
    assert "did you mean 'gaussian'" in problems["family"].message
    assert "did you mean 'state'" in problems["levels.county.within"].message
    assert "did you mean 'correlated'" in problems["levels.county.corelated"].message
    assert "did you mean 'sd'" in problems["priors.sdd"].message
    assert "scale must be > 0" in problems["priors.sigma"].message
    assert problems["family"].line == 1 and problems["levels.county.within"].line == 6
    assert problems["sampler.chains"].line == 13


def test_cli_validate_lists_every_problem_and_exits_1_without_traceback(tmp_path, capsys):
    path = write_spec(tmp_path, MANY_MISTAKES)
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "7 spec problems found" in err
    assert "levels.county.within (line 6): no level named 'stat'" in err
    assert "Traceback" not in err


def test_cli_validate_ok_prints_one_line():
    done = subprocess.run([sys.executable, "-m", "stangen.cli", "validate", str(SPECS / "pastes.yaml")],
                          capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    out = done.stdout.strip()
    assert "\n" not in out and "cask within batch" in out and "30 cask groups" in out


@pytest.mark.parametrize("text, path, fragment", [
    ("outcome: y\nlevels: {g: {}}\nlevels: {h: {}}\n", "levels", "duplicate key (first given on line 2)"),
    ("outcome: y\npredictors: [x\n", "", "not valid YAML"),
    ("- outcome\n", "", "a spec is a mapping"),
    ("predictors: [x]\n", "outcome", "is required"),
    ("outcome: y\nfamily: binomial\n", "trials", "needs `trials:`"),
    ("outcome: y\ntrials: n\n", "trials", "only family binomial"),
    ("outcome: y\npredictors: [y]\n", "predictors[0]", "is the outcome"),
    ("outcome: y\npredictors: [x, 'x:']\n", "predictors[1]", "empty part"),
    ("outcome: y\npredictors: ['a:b', 'b:a']\n", "predictors[1]", "duplicates an earlier term"),
    ("outcome: y\nlevels: {g: {within: g}}\n", "levels.g.within", "within itself"),
    ("outcome: y\nlevels: {a: {within: b}, b: {within: a}}\n", "levels.a.within", "circle"),
    ("outcome: y\nlevels: {g: {varying: [x]}}\n", "levels.g.varying[0]", "neither 'intercept' nor"),
    ("outcome: y\nlevels: {g: {varying: [], predictors: [w]}}\n", "levels.g.varying", "at least 'intercept'"),
    ("outcome: y\npredictors: [x]\nlevels: {g: {varying: [x], means: [x]}}\n", "levels.g.means", "add 'intercept'"),
    ("outcome: y\nlevels: {g: {correlated: maybe}}\n", "levels.g.correlated", "true or false"),
    ("outcome: y\ncategorical: [q]\n", "categorical[0]", "not used by any predictor"),
    ("outcome: y\npredictors: [x]\nreference: {z: a}\n", "reference.z", "not used"),
    ("outcome: y\npriors: {correlation: 'normal(0, 1)'}\n", "priors.correlation", "not allowed here"),
    ("outcome: y\npriors: {sd: exponential(a)}\n", "priors.sd", "non-numeric"),
    ("outcome: y\npriors: {sd: 'exponential(1, 2)'}\n", "priors.sd", "takes 1 argument"),
    ("outcome: y\npriors: {sd: normal(0, 1)}\n", "priors.sd", "quote the prior"),
    ("outcome: y\nsampler: {adapt_delta: 1.5}\n", "sampler.adapt_delta", "between 0 and 1"),
    ("outcome: y\nsampler: {draws: 10.5}\n", "sampler.draws", "an integer"),
])
def test_each_spec_mistake_is_named(tmp_path, text, path, fragment):
    with pytest.raises(SpecError) as info:
        Spec.from_yaml(write_spec(tmp_path, text))
    assert any(p.path == path and fragment in p.message for p in info.value.problems), info.value


def test_python_api_reports_the_same_problems():
    with pytest.raises(SpecError) as info:
        Spec(outcome="y", predictors="x", levels={"g": Level(within="h")}, family="normal")
    paths = {p.path for p in info.value.problems}
    assert paths == {"family", "levels.g.within"}


def test_priors_by_class_level_and_coefficient_are_accepted():
    spec = Spec(outcome="y", predictors=["x"], levels={"g": Level(varying=["intercept", "x"], predictors=["w"])},
                priors={"intercept": "normal(0, 10)", "coefficients": "student_t(3, 0, 2.5)", "x": "normal(0, 1)",
                        "w": "cauchy(0, 1)", "sd": "exponential(1)", "sd_g": "normal(0, 3)", "sigma": "exponential(2)",
                        "correlation": "lkj(2)", "correlation_g": "lkj(4)"})
    assert yaml.safe_load(spec.to_yaml())["priors"]["sd_g"] == "normal(0, 3)"


def test_yaml_booleans_get_a_quoting_hint(tmp_path):
    with pytest.raises(SpecError, match="quote the name"):
        Spec.from_yaml(write_spec(tmp_path, "outcome: yes\n"))
