"""Simulate the data of the lecture examples (a), (b), (d) and (e) into examples/data/.

    python examples/simulate_classics.py

(b), (d) and (e) come from `stangen simulate` (each spec's own model, true values in examples/params/).
(a) is written here because in its second part the predictor depends on the group effect, which a
spec's generative model cannot express: hours = 0.5 * alpha_i + uniform(-0.7, 0.7).
True values are written beside each CSV as <name>.truth.yaml.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stangen.workflows.simulate import simulate

HERE = Path(__file__).resolve().parent
DATA, PARAMS, SPECS = HERE / "data", HERE / "params", HERE.parent / "specs"


def students(confounded: bool, seed: int) -> pd.DataFrame:
    """100 students x 5 exams: score = 0.75 * hours + alpha_i + e, sd(alpha) = 0.7, sd(e) = 0.2."""
    rng = np.random.default_rng(seed)
    alpha = rng.normal(0, 0.7, 100)
    student = np.repeat(np.arange(1, 101), 5)
    if confounded:
        hours = 0.5 * alpha[student - 1] + rng.uniform(-0.7, 0.7, len(student))
    else:
        hours = rng.uniform(-0.7, 0.7, len(student)) + rng.normal(0, 0.35, len(student))
    score = 0.75 * hours + alpha[student - 1] + rng.normal(0, 0.2, len(student))
    return pd.DataFrame({"student": student, "hours": hours.round(4), "score": score.round(4)})


def write(name: str, frame: pd.DataFrame, truth: dict) -> None:
    frame.to_csv(DATA / f"{name}.csv", index=False)
    (DATA / f"{name}.truth.yaml").write_text(yaml.safe_dump(truth, sort_keys=False))
    print(f"wrote {len(frame)} rows to examples/data/{name}.csv")


def main() -> None:
    given = yaml.safe_load((PARAMS / "students.yaml").read_text())
    truth_a = {**given, "sd": {"student": {"intercept": given["sd"]["student"]}}}
    write("students", students(confounded=False, seed=1), truth_a)
    write("students_confounded", students(confounded=True, seed=2), truth_a)
    for name, groups, per_group in (("voters", {"state": 50}, 60),
                                    ("legislators", {"party": 8, "chamber": 6}, 30),
                                    ("elections", {"year": 20}, 40)):
        spec = SPECS / f"{name}.yaml"
        sim = simulate(spec, PARAMS / f"{name}.yaml", data=False, groups=groups, per_group=per_group, seed=3)
        write(name, sim.data, sim.truth)


if __name__ == "__main__":
    main()
