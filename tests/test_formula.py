"""lme4 formulas in (stangen/spec/formula.py): `formula:` in a spec, `Spec.from_formula`, `stangen from-formula`,
and the round trip formula → spec → `render --as lme4` → formula. Nothing here compiles a program."""
from __future__ import annotations

import dataclasses
import os
import re

import numpy as np
import pandas as pd
import pytest
import yaml

from stangen.cli import main
from stangen.core.errors import SpecError
from stangen.compiler.peers import formula, lme4_code
from stangen.compiler.program import build, stan_data_json
from stangen.spec import Spec
from stangen.spec.formula import parse

from conftest import ROOT, SPECS, write_spec

DOCS = ROOT / "docs" / "from-lme4.md"


@pytest.fixture(scope="module")
def frame() -> pd.DataFrame:
    """Columns for every formula of the docs' table: x, z vary within g; w is constant within g; b is nested
    in a with labels that repeat (b1, b2, b3 in every a); f is text; s of n trials; log_e an offset."""
    rng = np.random.default_rng(1)
    g = np.repeat(np.arange(12), 8)
    n = len(g)
    return pd.DataFrame({
        "y": rng.normal(size=n), "x": rng.normal(size=n), "z": rng.normal(size=n),
        "w": rng.normal(size=12)[g], "g": [f"g{i}" for i in g],
        "a": [f"a{i // 3}" for i in g], "b": [f"b{i % 3}" for i in g],
        "f": rng.choice(["u", "v", "z"], size=n), "n": rng.integers(5, 10, size=n),
    }).assign(s=lambda d: (d["n"] * 0.4).astype(int), log_e=lambda d: np.log(d["n"]))


def docs_formulas() -> list[str]:
    """Every complete lme4 formula in the first column of docs/from-lme4.md's table (calls unwrapped:
    `ordinal::clmm(y ~ x + (1 | g))` → `y ~ x + (1 | g)`; rows with `...` say no formula)."""
    found = []
    for row in DOCS.read_text().splitlines():
        if not row.startswith("| `"):
            continue
        first = row.replace("\\|", "¦").split("|")[1].replace("¦", "|")
        for code in re.findall(r"`([^`]*)`", first):
            if "~" not in code or "..." in code or code.strip().startswith("~"):
                continue
            call = re.fullmatch(r"[\w.:]+\((.*)\)", code.strip())
            found.append(call.group(1).split(", family")[0] if call else code)
    return found


DOCS_FORMULAS = docs_formulas()


def test_the_docs_table_is_read():
    assert len(DOCS_FORMULAS) >= 18
    assert "y ~ x + (x || g)" in DOCS_FORMULAS and "y ~ 1 + (1 | a/b)" in DOCS_FORMULAS


@pytest.mark.parametrize("text", DOCS_FORMULAS)
def test_every_docs_formula_round_trips(text, frame):
    """formula → spec → the lme4 formula stangen renders: the same terms, the same spec from it again."""
    spec = Spec.from_formula(text, frame)
    program = build(spec, frame)
    back = formula(program.description, code=True)
    assert parse(back).term_sets() == parse(text).term_sets(), back
    again = Spec.from_formula(back, frame)
    if spec.reference:  # a reference category is R code beside the formula: d$f <- relevel(factor(d$f), ...)
        for var, ref in spec.reference.items():
            assert f'd${var} <- relevel(factor(d${var}), ref = "{ref}")' in lme4_code(program)
        again = Spec.from_formula(back, frame, reference=dict(spec.reference))
    assert again == spec


def test_column_names_that_need_backticks(frame):
    data = frame.rename(columns={"y": "reaction time", "x": "day.n", "g": "subject id"})
    text = "`reaction time` ~ day.n + (day.n | `subject id`)"
    spec = Spec.from_formula(text, data)
    assert (spec.outcome, spec.predictors, list(spec.levels)) == ("reaction time", ("day.n",), ["subject id"])
    back = formula(build(spec, data).description, code=True)
    assert back == text
    assert Spec.from_formula(back, data) == spec


def test_binomial_counts_round_trip(frame):
    spec = Spec.from_formula("cbind(s, n - s) ~ x + (1 | g)", frame)
    assert (spec.family, spec.outcome, spec.trials) == ("binomial", "s", "n")
    back = formula(build(spec, frame).description, code=True)
    assert back == "cbind(s, n - s) ~ x + (1 | g)"


@pytest.mark.parametrize("one, other", [
    ("y ~ x * w + (x | g)", "y ~ x + w + x:w + (1 + x | g)"),
    ("y ~ x + (x || g)", "y ~ x + (1 | g) + (0 + x | g)"),
    ("y ~ (1 | a/b)", "y ~ 1 + (1 | a) + (1 | a:b)"),
    ("y ~ x - 1", "y ~ 0 + x"),
    ("y ~ x*z", "y ~ x + z + x:z"),
])
def test_equivalent_formulas_give_one_spec(one, other, frame):
    assert parse(one).term_sets() == parse(other).term_sets()
    assert Spec.from_formula(one, frame) == Spec.from_formula(other, frame)


def test_placement_of_group_level_predictors(frame):
    spec = Spec.from_formula("y ~ x * w + (x | g)", frame)
    assert spec.predictors == ("x",)
    assert dict(spec.levels["g"].varying) == {"intercept": ("w",), "x": ("w",)}
    assert spec.formula_notes == ("w is constant within g: used as a g-level predictor",
                                  "x:w: w is a g-level predictor and x varies by g: a cross-level interaction")
    # a predictor that varies by a level is not placed anywhere, even where it is constant
    varying = Spec.from_formula("y ~ w + (1 | g) + (w | a)", frame)
    assert varying.predictors == ("w",) and not varying.formula_notes
    # without a varying intercept at the level there is nothing to predict: w stays a level-1 predictor
    assert Spec.from_formula("y ~ x + w + (0 + x | g)", frame).predictors == ("x", "w")
    # x varies within g: stays at level 1; x:w with x not varying by g stays a level-1 interaction
    plain = Spec.from_formula("y ~ x * w + (1 | g)", frame)
    assert plain.predictors == ("x", "x:w") and dict(plain.levels["g"].varying) == {"intercept": ("w",)}
    # constant within g and within its parent a? no: w differs between the g of one a
    nested = Spec.from_formula("y ~ w + (1 | a/b)", frame)
    assert dict(nested.levels["b"].varying) == {"intercept": ("w",)} and nested.levels["b"].within == "a"
    # ave(x, g) is the g mean of x
    means = Spec.from_formula("y ~ x + ave(x, g) + (1 | g)", frame)
    assert means.levels["g"].means == ("x",) and means.predictors == ("x",)


def test_factors_and_references(frame):
    spec = Spec.from_formula('y ~ C(f, Treatment("v")) + factor(n) + (1 | g)', frame)
    assert spec.predictors == ("f", "n") and dict(spec.reference) == {"f": "v"}
    assert spec.categorical == ("n",)  # f is text: categorical anyway
    assert dict(Spec.from_formula("y ~ relevel(f, ref = 'z')", frame).reference) == {"f": "z"}


FORMULA_SPECS = ["sleepstudy", "pastes", "penicillin", "exam", "language"]


@pytest.mark.parametrize("name", FORMULA_SPECS)
def test_formula_specs_are_the_long_forms(name):
    """specs/formula/NAME.yaml (one `formula:` line) is specs/NAME.yaml: the same spec, the same program."""
    long_form, short = Spec.from_yaml(SPECS / f"{name}.yaml"), Spec.from_yaml(SPECS / "formula" / f"{name}.yaml")
    assert short.data_path.resolve() == long_form.data_path.resolve()
    assert dataclasses.replace(short, data=long_form.data) == long_form  # `data:` is relative to each file
    one, other = build(long_form), build(short)
    assert other.code == one.code
    assert stan_data_json(other.stan_data) == stan_data_json(one.stan_data)


EXAMPLES = sorted(SPECS.glob("*.yaml"))
# the examples whose spec a formula states as written; the others differ in what a formula cannot say
# (soup names its level 'respondent' for the column RESP, cbpp lists a numeric column as categorical) or in where the data put a predictor (blackmore's group and epilepsy's zAge,
# zBase and Trt are constant within subject / patient, ticks' year within brood, salamanders' mined within
# site: group-level predictors from a formula), and sleepstudy_sigma pins its level's parameterization
NOT_AS_WRITTEN = {"blackmore", "blackmore_car1", "cbpp", "epilepsy", "salamanders_hurdle", "salamanders_zinb",
                  "salamanders_zip", "sleepstudy_sigma", "soup", "ticks"}


@pytest.mark.parametrize("spec_file", EXAMPLES, ids=[p.stem for p in EXAMPLES])
def test_every_example_through_its_formula(spec_file):
    """spec → its lme4 formula → spec: the same model (term sets) for every example, the same spec where a
    formula can say everything the spec says."""
    spec = Spec.from_yaml(spec_file)
    written = formula(build(spec).description, code=True)
    keep = {k: v for k, v in spec.to_dict().items()
            if k in ("name", "data", "family", "priors", "sampler", "missing", "order", "residuals", "parameters") and v}
    again = Spec.from_dict({"formula": written, **keep}, base_dir=spec.base_dir)
    assert parse(formula(build(again).description, code=True)).term_sets() == parse(written).term_sets()
    assert (again == spec) == (spec_file.stem not in NOT_AS_WRITTEN)


def test_formula_key_in_a_spec_file(tmp_path, capsys):
    path = write_spec(tmp_path, "data: ../examples/data/exam.csv\n"
                                "formula: normexam ~ standLRT * schavg + (standLRT | school)\n")
    frame = pd.read_csv(ROOT / "examples" / "data" / "exam.csv")
    assert main(["validate", str(path), "--data", str(ROOT / "examples" / "data" / "exam.csv")]) == 0
    out = capsys.readouterr().out
    assert "formula: schavg is constant within school: used as a school-level predictor" in out
    spec = Spec.from_yaml(path, data=frame)
    assert spec.formula == "normexam ~ standLRT * schavg + (standLRT | school)"


def test_formula_is_exclusive_with_the_long_form(tmp_path, capsys):
    path = write_spec(tmp_path, f"data: {ROOT / 'examples/data/sleepstudy.csv'}\n"
                                "formula: Reaction ~ Days + (Days | Subject)\noutcome: Reaction\n"
                                "predictors: [Days]\n")
    assert main(["validate", str(path)]) == 1
    err = capsys.readouterr().err
    assert "formula (line 2): is given with `outcome:`, `predictors:`" in err


def test_problems_of_the_translated_spec_point_at_the_formula():
    # the formula reads; the spec it makes breaks a spec rule (a column named like the intercept)
    with pytest.raises(SpecError) as err:
        Spec.from_formula("y ~ intercept + (1 | g)")
    assert "formula: (as predictors[0]) the intercept is not a predictor" in str(err.value)


def test_from_formula_writes_a_commented_spec_that_reads_back(tmp_path, capsys):
    out = tmp_path / "specs" / "exam.yaml"
    out.parent.mkdir()
    data = ROOT / "examples" / "data" / "exam.csv"
    assert main(["from-formula", "normexam ~ standLRT * schavg + (standLRT | school)", "--data", str(data),
                 "-o", str(out)]) == 0
    err = capsys.readouterr().err
    assert "note: schavg is constant within school: used as a school-level predictor" in err
    text = out.read_text()
    assert text.startswith("# stangen spec written by `stangen from-formula`")
    assert "intercept: [schavg]  # schavg: constant within school, a school-level predictor" in text
    assert "standLRT: [schavg]  # standLRT:schavg: cross-level interaction" in text
    relative = os.path.relpath(data, out.parent)
    assert yaml.safe_load(text)["data"] == relative
    long_form = Spec.from_yaml(SPECS / "exam.yaml")
    assert Spec.from_yaml(out) == Spec.from_dict({**long_form.to_dict(), "data": relative}, base_dir=out.parent)
    written = Spec.from_yaml(out)
    assert build(written).code == build(SPECS / "exam.yaml").code


def test_from_formula_to_standard_output_with_a_family(capsys):
    data = ROOT / "examples" / "data" / "language.csv"
    assert main(["from-formula", "lang_post ~ iq_verb + ave(iq_verb, school) + (iq_verb || school)",
                 "--data", str(data), "--family", "student"]) == 0
    text = capsys.readouterr().out
    spec = yaml.safe_load(text)
    assert spec["family"] == "student"
    assert spec["levels"]["school"] == {"varying": ["intercept", "iq_verb"], "correlated": False,
                                        "means": ["iq_verb"]}
    assert "# (iq_verb || school): intercept and iq_verb slope, uncorrelated" in text


CONTRACEPTION = "use01 ~ age + age2 + urban01 + factor(livch) + (1 + urban01 | district)"


def test_factor_of_a_column_that_looks_numeric_makes_it_categorical(tmp_path, capsys):
    """The Bangladesh contraception formula (scripts/export_contraception.R): livch holds 0, 1, 2 and '3+',
    text that is mostly numbers; factor(livch) says it is categorical, as lme4 reads it."""
    data = ROOT / "examples" / "data" / "contraception.csv"
    out = tmp_path / "contraception.yaml"
    assert main(["from-formula", CONTRACEPTION, "--data", str(data), "--family", "bernoulli", "-o", str(out)]) == 0
    spec = Spec.from_yaml(out)
    assert "livch" in spec.categorical and spec.family == "bernoulli"
    assert main(["validate", str(out)]) == 0
    program = build(spec)
    assert program.data.categories["livch"] == ["0", "1", "2", "3+"]
    assert Spec.from_dict(spec.to_dict(), base_dir=spec.base_dir) == spec
    assert Spec.from_yaml(out) == spec  # the written YAML reads back as the same spec
    back = formula(program.description, code=True)
    assert parse(back).term_sets() == parse(CONTRACEPTION).term_sets()
    assert 'd$livch <- relevel(factor(d$livch), ref = "0")' in lme4_code(program)
    # as.factor() is factor(); a column of plain text is categorical with or without it
    assert Spec.from_formula(CONTRACEPTION.replace("factor(", "as.factor("), pd.read_csv(data)).categorical == ("livch",)


SLEEP = str(ROOT / "examples" / "data" / "sleepstudy.csv")


@pytest.mark.parametrize("text, expected", [
    ("Reaction ~ Dayz + (1 | Subject)", "'Dayz' is not a column of the data; did you mean 'Days'?"),
    ("Reaction ~ Days + (1 | Subjects)", "'Subjects' is not a column of the data; did you mean 'Subject'?"),
    ("Reaction ~ Days + offset(log(Days))", "'offset(log(Days))': an offset names one column: add log(Days) to the data"),
    ("Reaction ~ poly(Days, 2)", "'poly(Days, 2)': write the powers as columns"),
    ("Reaction ~ s(Days)", "'s(Days)': smooth terms"),
    ("Reaction ~ I(Days^2)", "I(): arithmetic inside a formula is not read: add a column"),
    ("Reaction ~ log(Days)", "'log(Days)': transformations are not done inside a spec"),
    ("log(Reaction) ~ Days", "outcome 'log(Reaction)': the outcome is a column name"),
    ("cbind(Reaction, Days) ~ 1", "a binomial outcome is written cbind(successes, trials - successes)"),
    ("Reaction ~ Days + (1 | Subject + Days)", "the right side of | must name the grouping"),
    ("Reaction ~ Days + (1 | Subject:h)", "'h' is not a column of the data"),
    ("Reaction ~ Days + (1 | Days:Subject)", "write (1 | Days/Subject) to add Days's effects too"),
    ("Reaction ~ 1 + (Days | Subject)", "'Days' varies by Subject but is not a population term"),
    ("Reaction ~ Days + (1 + Days | Subject) + (0 + Days | Subject)", "Days varies by Subject twice"),
    ("Reaction ~ Days + (1 | Subject) + (Days || Subject)", "intercept varies by Subject twice"),
    ("Reaction ~ Days + ave(Days, Days2) + (1 | Subject)", "'Days2' is not a column"),
    ("Reaction ~ Days * ave(Days, Subject) + (1 | Subject)", "an interaction with a group mean is not supported"),
    ("Reaction ~ relevel(Subject)", 'write the reference category as relevel(f, "b")'),
    ("Reaction ~ Days +", "cannot read 'Reaction ~ Days +'"),
    ("Reaction Days", "an lme4 formula is 'outcome ~ terms'"),
])
def test_unsupported_and_misspelt_terms(text, expected, capsys):
    assert main(["from-formula", text, "--data", SLEEP]) == 1
    err = capsys.readouterr().err
    assert expected in err
    assert "Traceback" not in err


def test_correlated_blocks_of_one_level_must_be_all_or_nothing(frame):
    with pytest.raises(SpecError) as err:
        Spec.from_formula("y ~ x + z + (1 + x | g) + (0 + z | g)", frame)
    assert "write (1 + x + z | g) or (1 + x + z || g)" in str(err.value)


def test_several_problems_at_once(capsys):
    assert main(["from-formula", "Reaction ~ Dayz + log(Days) + (1 | Subjet)", "--data", SLEEP]) == 1
    err = capsys.readouterr().err
    assert "3 formula problems found" in err
    assert "'log(Days)'" in err and "'Subjet'" in err


def test_without_data_nothing_is_placed():
    spec = Spec.from_formula("y ~ x * w + (x | g)")
    assert spec.predictors == ("x", "w", "x:w") and not spec.formula_notes
    with pytest.raises(SpecError):
        Spec.from_formula("y ~ x + poly(x, 2)")


def test_formula_text_with_a_line_break_stays_inside_its_comment():
    """from-formula writes the formula into the spec's header comment: a line break in it must not start a
    YAML key (`name: /somewhere` would write the run elsewhere)."""
    import yaml
    from stangen.spec.formula import commented_yaml
    text = commented_yaml("outcome: y\n", {"outcome": "the column\nname: /x"}, ["y ~ x\nname: /somewhere"])
    assert yaml.safe_load(text) == {"outcome": "y"}
