"""No user text reaches the Stan program except inside a comment.

Every place a user's string can appear — outcome, trials, predictor, categorical level, level name, id
column, group label, group-level predictor, means column, spec name, prior text — gets a hostile value (a
newline and a statement, comment delimiters, #include, NUL, a line separator, a trailing backslash, a very
long or non-ASCII name). The program must then have exactly the statements of the same spec with clean
names, as stanc prints them with comments stripped, and pass stanc.
"""
import subprocess

import numpy as np
import pandas as pd
import pytest

from stangen import SpecError
from stangen.cli import main
from stangen.core.names import comment_text, sanitize
from stangen.compiler.program import build
from stangen.spec import Level, Spec
from stangen.run.stanc import check, stanc_path

pytestmark = pytest.mark.stanc

HOSTILE = {
    "outcome": "y\ntarget += 1e6;\n//",
    "x": "x*/ target += 1; /*",
    "f": "#include evil.stan",
    "school": "sch\x00ool",
    "school_id": "s\u2028target += 2;",
    "class": "C" * 500,
    "class_id": "cl\r\ntarget += 3; //",
    "w": "Größe_√\\",
    "m": "m\x1b[2J\u202ereversed",
    "trials": "n\n} model { target += 4; } data {",
}
# the same spec with clean names: names that sanitize to the same Stan identifiers, so the statements agree
CLEAN = {k: sanitize(v) for k, v in HOSTILE.items()}
HOSTILE_LABELS = ["a\ntarget += 5;", "b*/", "/*c", "d\\"]
HOSTILE_CATEGORIES = ["p\n//", "q\x00", "r\u2029s"]


def statements(program: str, tmp_path) -> str:
    """The program as stanc prints it without comments."""
    source = tmp_path / "program.stan"
    source.write_text(program, encoding="utf-8")
    done = subprocess.run([str(stanc_path()), "--auto-format", "--canonicalize", "strip-comments", str(source)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    return done.stdout


def frame(names: dict, labels: list[str], categories: list[str], seed: int = 3) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    n = 96
    school = np.repeat(np.arange(4), n // 4)
    klass = np.repeat(np.arange(12), n // 12)
    return pd.DataFrame({
        names["outcome"]: rng.normal(size=n),
        names["x"]: rng.normal(size=n),
        names["f"]: [categories[i % 3] for i in range(n)],
        names["school_id"]: [labels[s] for s in school],
        names["class_id"]: [labels[c % 4] for c in klass],  # repeating labels within schools
        names["w"]: np.array([0.3, -1.2, 0.8, 2.0])[school],
        names["m"]: rng.normal(size=n),
    })


def spec(names: dict, spec_name: str, prior: str) -> Spec:
    return Spec(
        name=spec_name, outcome=names["outcome"], predictors=[names["x"], names["f"], names["m"]],
        categorical=[names["f"]],
        levels={names["school"]: Level(id=names["school_id"], varying={"intercept": [names["w"]], names["x"]: []},
                                       means=[names["m"]]),
                names["class"]: Level(id=names["class_id"], within=names["school"])},
        priors={names["x"]: prior, "sd": "exponential(1)"})


def test_comment_text_cannot_end_open_or_close_a_comment():
    for text in [*HOSTILE.values(), *HOSTILE_LABELS, *HOSTILE_CATEGORIES, "a//b", "a/*b", "a*/b", "///***///"]:
        safe = comment_text(text)
        assert not any(ch in safe for ch in "\n\r\x00\u2028\u2029\x0b\x0c\x85\u202e"), safe
        assert "//" not in safe and "/*" not in safe and "*/" not in safe, safe
        assert len(safe) <= 90
    # different texts stay different (the templates compare names)
    texts = ["a\nb", "a\\nb", "a//b", "a/\\/b", "*/", "* /", "C" * 500, "C" * 499 + "D"]
    assert len({comment_text(t) for t in texts}) == len(texts)
    assert comment_text("iq_verb:sex") == "iq_verb:sex" and comment_text("beta_x * W") == "beta_x * W"


@pytest.mark.parametrize("centered", [False, True], ids=["noncentered", "centered"])
def test_hostile_names_in_every_position_leave_the_statements_unchanged(tmp_path, centered):
    choice = "centered" if centered else "noncentered"
    hostile_spec = spec(HOSTILE, "spec } model { target += 9; }", "normal(\t0 ,\t5 )").with_parameterization(choice)
    clean_spec = spec(CLEAN, "spec", "normal(0, 5)").with_parameterization(choice)
    hostile = build(hostile_spec, frame(HOSTILE, HOSTILE_LABELS, HOSTILE_CATEGORIES))
    clean = build(clean_spec, frame(CLEAN, ["a", "b", "0c", "d"], ["p", "q", "r"]))  # labels in the same order
    check(hostile.code)
    assert statements(hostile.code, tmp_path) == statements(clean.code, tmp_path)
    # the user's names are still there for a reader, escaped
    assert comment_text(HOSTILE["outcome"]) in hostile.code
    # and the data agree too (labels and categories never enter the program, only the results)
    assert hostile.stan_data.keys() == clean.stan_data.keys()
    for key, value in clean.stan_data.items():
        np.testing.assert_array_equal(hostile.stan_data[key], value, err_msg=key)


def test_hostile_trials_column(tmp_path):
    def binomial(names):
        return Spec(outcome=names["outcome"], family="binomial", trials=names["trials"], predictors=[names["x"]],
                    levels={names["school"]: Level(id=names["school_id"])})
    hostile, clean = build(binomial(HOSTILE)), build(binomial(CLEAN))
    check(hostile.code)
    assert statements(hostile.code, tmp_path) == statements(clean.code, tmp_path)


def test_render_command_with_a_newline_in_a_csv_header(tmp_path, capsys):
    """The issue's case: `stangen render` of a spec whose predictor column name holds a newline and a statement."""
    name = "x\ntarget += 1e6;\n//"
    for label, column in (("hostile", name), ("clean", sanitize(name))):
        folder = tmp_path / label
        folder.mkdir()
        rng = np.random.default_rng(1)
        pd.DataFrame({"y": rng.normal(size=40), column: rng.normal(size=40),
                      "g": np.repeat(list("abcd"), 10)}).to_csv(folder / "d.csv", index=False)
        quoted = column.replace("\\", "\\\\").replace("\n", "\\n").replace('"', '\\"')
        (folder / "spec.yaml").write_text(
            f'data: d.csv\noutcome: y\npredictors: ["{quoted}"]\nlevels:\n  g: {{}}\n', encoding="utf-8")
        assert main(["render", str(folder / "spec.yaml"), "-o", str(folder / "model.stan")]) == 0
    hostile = (tmp_path / "hostile" / "model.stan").read_text(encoding="utf-8")
    clean = (tmp_path / "clean" / "model.stan").read_text(encoding="utf-8")
    assert hostile != clean  # the comments name the column as the user wrote it
    assert statements(hostile, tmp_path) == statements(clean, tmp_path)


def test_hostile_residual_columns(tmp_path):
    """`residuals:` names a time column and an sd_by column: both only in comments too."""
    rng = np.random.default_rng(2)

    def build_with(names, labels):
        df = pd.DataFrame({names["outcome"]: rng.normal(size=40), names["x"]: rng.normal(size=40),
                           names["school_id"]: np.repeat(labels, 10), names["class_id"]: np.tile(np.arange(10), 4),
                           names["w"]: np.tile(["a", "b"], 20)})
        spec = Spec(outcome=names["outcome"], predictors=[names["x"]],
                    levels={names["school"]: Level(id=names["school_id"])},
                    residuals={"correlation": "ar1", "time": names["class_id"], "sd_by": names["w"]})
        return build(spec, df, generated=("y_rep", "log_lik"))

    hostile, clean = build_with(HOSTILE, HOSTILE_LABELS), build_with(CLEAN, ["a", "b", "0c", "d"])
    check(hostile.code)
    assert statements(hostile.code, tmp_path) == statements(clean.code, tmp_path)


def test_a_name_that_would_break_out_of_its_line_is_refused():
    """A spec's name never reaches the program; a newline in it is refused with the other path-like names."""
    with pytest.raises(SpecError, match="name: must be a name, not a path"):
        spec(HOSTILE, "spec\n} model { target += 9; }", "normal(0, 5)")
