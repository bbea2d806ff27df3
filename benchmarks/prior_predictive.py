"""How plausible the data a spec's priors predict are, before any data: prior-only fits of a spec with its
default priors and with wider ones, and the share of predicted outcomes beyond 100 times the data's largest
absolute value (the "absurd" values issue 29 asks the report to flag).

    python benchmarks/prior_predictive.py [SPEC] [--wide "normal(0, 10)"]

SPEC: a spec file or a name in specs/ (default owls). Per prior setting: that share, the median over draws of
the largest predicted value, and the share of draws whose mean exceeds 100 times the data's mean.
"""
from __future__ import annotations

import argparse
import os
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default="owls")
    parser.add_argument("--wide", default="normal(0, 10)")
    args = parser.parse_args()
    import stangen
    path = Path(args.spec) if Path(args.spec).exists() else ROOT / "specs" / f"{args.spec}.yaml"
    base = stangen.Spec.from_yaml(path)
    data = stangen.build(base).data
    os.chdir(tempfile.mkdtemp())  # (the embedded backend's compiler leaves build files in the working directory)
    frame = base.data_path
    import pandas as pd
    rows = pd.read_csv(frame)
    y = np.asarray(data.stan_data["y"], dtype=float)
    limit = 100 * max(np.abs(y).max(), y.std())
    print(f"{path.name}: {len(y)} rows, data max {y.max():g}; limit 100 x max |y| = {limit:g}\n")
    print("| priors | share of predictions beyond the limit | median of each draw's max | draws with mean > 100 x data mean |")
    print("|---|---|---|---|")
    for label, priors in (("default", {}), (f"coefficients {args.wide}", {"coefficients": args.wide}),
                          (f"coefficients and intercept {args.wide}", {"coefficients": args.wide,
                                                                       "intercept": args.wide})):
        spec = stangen.Spec.from_dict({**base.to_dict(), "priors": {**dict(base.priors), **priors}},
                                      base_dir=base.base_dir)
        fit = stangen.fit(spec, prior_only=True, quiet=True, backend="pystan")
        predicted = np.asarray(fit.predict(rows, kind="response", draws=True, seed=1)).reshape(-1, len(rows))
        print(f"| {label} | {(predicted > limit).mean():.3f} | {np.median(predicted.max(axis=1)):.4g} | "
              f"{(predicted.mean(axis=1) > 100 * y.mean()).mean():.3f} |", flush=True)


if __name__ == "__main__":
    main()
