"""A spec's verdict over many seeds, as a user's `stangen fit` gets it, with its levels' parameterization
pinned to each form in turn: one seed's verdict is a coin with a bias, not a measurement.

    python benchmarks/seed_verdicts.py SPEC [--forms auto,partial,centered] [--seeds 1-20]

SPEC: a spec file, or the name of one in specs/. `auto`: the spec as written. Per fit: the verdict, max R-hat
and min bulk ESS over every parameter and lp__ (the checks' own figures, with the parameter), divergences;
then per form the verdicts counted and the range of min ESS. Sampler settings are the spec's (default 4
chains x 1000 warmup + 1000 draws), on the embedded backend.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def seeds(text: str) -> list[int]:
    out = []
    for part in text.split(","):
        lo, _, hi = part.partition("-")
        out += list(range(int(lo), int(hi or lo) + 1))
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec")
    parser.add_argument("--forms", default="auto")
    parser.add_argument("--seeds", default="1-10", type=seeds)
    args = parser.parse_args()
    import stangen
    path = Path(args.spec) if Path(args.spec).exists() else ROOT / "specs" / f"{args.spec}.yaml"
    spec = stangen.Spec.from_yaml(path)
    os.chdir(tempfile.mkdtemp())  # (the embedded backend's compiler leaves build files in the working directory)
    print(f"{path.name}: seeds {args.seeds[0]}-{args.seeds[-1]}\n")
    print("| form | seed | verdict | max R-hat | min bulk ESS | divergences |\n|---|---|---|---|---|---|")
    summary = {}
    for form in args.forms.split(","):
        pinned = spec if form == "auto" else spec.with_parameterization(form)
        for seed in args.seeds:
            fit = stangen.fit(pinned, seed=seed, quiet=True, backend="pystan")
            checks = {c.name: c for c in fit.convergence().checks}
            ess = checks["ess_bulk"]
            print(f"| {form} | {seed} | {fit.convergence().status} | {checks['r_hat'].message} | {ess.message} | "
                  f"{checks['divergences'].value} |", flush=True)
            summary.setdefault(form, []).append((fit.convergence().status, ess.value))
    print()
    for form, rows in summary.items():
        counts = {s: sum(1 for r in rows if r[0] == s) for s in ("pass", "warn", "fail")}
        lo, hi = min(r[1] for r in rows), max(r[1] for r in rows)
        print(f"{form}: {counts['pass']} pass, {counts['warn']} warn, {counts['fail']} fail; min bulk ESS {lo:.0f}-{hi:.0f}")


if __name__ == "__main__":
    sys.exit(main())
