"""Simulate the example data of two structures into examples/data/: negative-binomial counts with levels
crossed in the spec and nested in the data (ticks), and an AR(1) panel with gaps (wellbeing).

    python examples/simulate_structures.py

Each comes from `stangen simulate`: the spec's own model with the true values in examples/params/<name>.yaml
on the design below; the true values are written beside each CSV as <name>.truth.yaml.
"""
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from stangen.workflows.simulate import simulate

HERE = Path(__file__).resolve().parent
DATA, PARAMS, SPECS = HERE / "data", HERE / "params", HERE.parent / "specs"


def ticks_design(rng) -> pd.DataFrame:
    """60 locations with 1-3 broods each, 2-6 chicks per brood; each brood is seen in one year. Brood and
    location labels are unique, so the spec can cross them while the data nest them (as in grouseticks)."""
    rows = []
    brood = 0
    for location in range(1, 61):
        height = rng.normal()
        for _ in range(rng.integers(1, 4)):
            brood += 1
            year = rng.choice(["95", "96", "97"])
            for _ in range(rng.integers(2, 7)):
                rows.append({"location": f"L{location}", "brood": f"B{brood}", "year": year,
                             "height": round(height, 3)})
    return pd.DataFrame(rows)


def wellbeing_design(rng) -> pd.DataFrame:
    """150 people, waves 1..8, each wave missed with probability 0.25 (at least 3 kept): gaps in the
    series; half the people in the programme."""
    rows = []
    for person in range(1, 151):
        programme = int(rng.random() < 0.5)
        waves = [w for w in range(1, 9) if rng.random() > 0.25]
        if len(waves) < 3:
            waves = sorted(rng.choice(np.arange(1, 9), 3, replace=False).tolist())
        rows += [{"person": f"P{person}", "wave": w, "programme": programme} for w in waves]
    return pd.DataFrame(rows)


DESIGNS = {"ticks": (ticks_design, {"ticks": 0}), "wellbeing": (wellbeing_design, {"score": 1})}


def main() -> None:
    for name, (design, digits) in DESIGNS.items():
        frame = design(np.random.default_rng(21))
        sim = simulate(SPECS / f"{name}.yaml", PARAMS / f"{name}.yaml", data=frame, seed=5)
        out = sim.data.round(digits)
        if name == "ticks":
            out["ticks"] = out["ticks"].astype(int)
        out.to_csv(DATA / f"{name}.csv", index=False)
        (DATA / f"{name}.truth.yaml").write_text(yaml.safe_dump(sim.truth, sort_keys=False))
        print(f"wrote {len(out)} rows to examples/data/{name}.csv")


if __name__ == "__main__":
    main()
