"""Simulate the example data of the lognormal, gamma, beta, negative-binomial and Student-t clinics into examples/data/.

    python examples/simulate_families.py

Each comes from `stangen simulate`: the spec's own model with the true values in examples/params/<name>.yaml
and the design below; the true values are written beside each CSV as <name>.truth.yaml. (student,
cumulative and negbinomial have real data too: specs/sleepstudy_student.yaml, specs/soup.yaml,
specs/epilepsy.yaml; these have no group-level predictor or no varying slope.)
"""
from pathlib import Path

import numpy as np
import yaml

from stangen.workflows.simulate import simulate

HERE = Path(__file__).resolve().parent
DATA, PARAMS, SPECS = HERE / "data", HERE / "params", HERE.parent / "specs"

# name → (level, groups, rows per group, digits the outcome is rounded to)
DESIGNS = {
    "reaction_times": ("participant", 60, 40, {"rt": 3}),
    "claims": ("region", 40, 25, {"amount": 3}),
    "attendance": ("school", 50, 30, {"attended": 4}),
    "visits": ("practice", 50, 25, {}),
    "blood_pressure": ("clinic", 40, 20, {"sbp": 0}),
}


def readable(name: str, frame):
    """Claims' predictors in their own units: vehicle age in whole years (0..15), the urban share of each
    region in (0.1, 0.9); rural practices and nurse-led clinics a 0/1 flag per group. The others keep stangen simulate's standard-normal predictors (standardized)."""
    rng = np.random.default_rng(11)
    if name == "claims":
        regions = frame["region"].unique()
        share = dict(zip(regions, rng.uniform(0.1, 0.9, len(regions)).round(2)))
        frame["urban"] = frame["region"].map(share)
        frame["vehicle_age"] = rng.integers(0, 16, len(frame))
    for level, flag, share in (("practice", "rural", 0.3), ("clinic", "nurse_led", 0.4)):
        if name in ("visits", "blood_pressure") and level in frame:
            groups = frame[level].unique()
            frame[flag] = frame[level].map(dict(zip(groups, (rng.uniform(size=len(groups)) < share).astype(int))))
    return frame


def main() -> None:
    for name, (level, groups, per_group, digits) in DESIGNS.items():
        design = readable(name, _design(name, level, groups, per_group))
        sim = simulate(SPECS / f"{name}.yaml", PARAMS / f"{name}.yaml", data=design, seed=5)
        frame = sim.data.round(digits | {c: 4 for c in sim.data.columns if c not in digits and sim.data[c].dtype.kind == "f"})
        frame.to_csv(DATA / f"{name}.csv", index=False)
        (DATA / f"{name}.truth.yaml").write_text(yaml.safe_dump(sim.truth, sort_keys=False))
        print(f"wrote {len(frame)} rows to examples/data/{name}.csv")


def _design(name: str, level: str, groups: int, per_group: int):
    """The spec's design without an outcome (stangen simulate's own: normal(0, 1) predictors)."""
    from stangen.workflows.simulate import _design_frame
    from stangen.compiler.program import load_spec
    spec = load_spec(SPECS / f"{name}.yaml")
    frame = _design_frame(spec, {level: groups}, per_group, np.random.default_rng(7))
    return frame.drop(columns=[spec.outcome])


if __name__ == "__main__":
    main()
