"""Each group in its own form (`parameterization: mixed`) against the pure forms, on InstEval-like data whose
student level holds both clearly data-poor and clearly data-rich groups.

    python benchmarks/mixed.py [--students 1000] [--backend cmdstan] [--out benchmarks/results/mixed.md]

Simulates ratings of lecturers (nested in departments) by students, half of whom rate 1-3 lectures and half
30-60 (tests/test_large_crossed.py's design, larger), and fits the same model with the student level mixed
(what `auto` picks), centered and noncentered (the other levels as `auto` decides). Prints per form: warmup
and sampling seconds (summed over chains), divergences, max R-hat, min bulk ESS of the population
parameters, and that ESS per second of the whole sampling wall time.
"""
from __future__ import annotations

import argparse
import os
import sys
import time
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "tests"))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--students", type=int, default=1000)
    parser.add_argument("--backend", default="cmdstan")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import stangen
    from stangen.results import checks
    from test_large_crossed import insteval_like

    frame = insteval_like(seed=5, students=args.students, lecturers=args.students // 3, departments=14)
    lines = [f"InstEval-like data: {len(frame)} ratings, {args.students} students (half rate 1-3 lectures, half "
             f"30-60), {args.students // 3} lecturers in 14 departments; {args.backend}, 4 chains × (1000 + 1000), "
             f"seed {args.seed}; {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}", "",
             "| students | warmup s | sampling s | wall s | divergences | max R-hat | min bulk ESS | min ESS/s |",
             "|---|---|---|---|---|---|---|---|"]
    print("\n".join(lines), flush=True)
    for form in ("mixed", "centered", "noncentered"):
        spec = stangen.Spec(outcome="y", predictors=["service"],
                            levels={"s": {"parameterization": form}, "d": {}, "dept": {}})
        fit = stangen.fit(spec, data=frame, backend=args.backend, seed=args.seed, quiet=True)
        table = checks.chains(fit)
        report = {c.name: c for c in checks.convergence(fit).checks}
        population = fit.summary()
        ess = float(population["ess_bulk"].min())
        label = next(c.label for c in fit.program.parameterization if c.level == "s")
        row = [label, f"{table['warmup s'].sum():.0f}", f"{table['sampling s'].sum():.0f}",
               f"{fit.info['sample_seconds']:.0f}", str(int(table["divergences"].sum())),
               f"{report['r_hat'].value:.3f}", f"{ess:.0f}", f"{ess / fit.info['sample_seconds']:.1f}"]
        lines.append("| " + " | ".join(row) + " |")
        print(lines[-1], flush=True)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
