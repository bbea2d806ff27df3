"""stangen pooling: complete, no and partial pooling of the students example (a)."""
import numpy as np
import pytest

from stangen import Spec
from stangen.cli import main
from stangen.workflows.pooling import complete_pooling_spec, no_pooling_spec

from conftest import SPECS, read_example


def test_variant_specs():
    spec = Spec.from_yaml(SPECS / "sleepstudy.yaml")
    complete = complete_pooling_spec(spec, "Subject")
    assert not complete.levels and complete.predictors == ("Days",)
    none = no_pooling_spec(spec, "Subject")
    assert none.predictors == ("Subject", "Days:Subject") and not none.intercept and "Subject" in none.categorical


def test_nested_level_is_refused(capsys):
    assert main(["pooling", str(SPECS / "pastes.yaml"), "--level", "cask"]) == 1
    assert "nested" in capsys.readouterr().err


@pytest.mark.sampling
def test_pooling_table_and_plot(tmp_path):
    out = tmp_path / "pool"
    assert main(["pooling", str(SPECS / "students.yaml"), "--level", "student", "--out", str(out), "--quiet",
                 "--warmup", "400", "--draws", "400", "--backend", "pystan"]) == 0
    import pandas as pd
    table = pd.read_csv(out / "pooling.csv", dtype={"group": str})
    assert len(table) == 100 and set(table.columns) == {"group", "coefficient", "n", "complete", "none", "partial"}
    assert (out / "pooling_intercept.png").stat().st_size > 10_000
    # partial pooling lies between no pooling and complete pooling for (nearly) every student
    between = ((table.partial - table.none) * (table.partial - table.complete) <= 1e-9).mean()
    assert between > 0.9
    # no pooling is each student's own estimate: close to the student's mean score minus 0.75 * mean hours
    df = read_example("students")
    own = df.groupby(df.student.astype(str)).apply(lambda g: (g.score - 0.75 * g.hours).mean())
    np.testing.assert_allclose(table.set_index("group").none.loc[own.index], own, atol=0.15)
