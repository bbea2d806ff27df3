"""Fit every spec in specs/ with its own sampler settings (defaults: 4 chains x 1000 + 1000) on one backend
and print the convergence verdict of each, as a Markdown table.

    python scripts/fit_all_specs.py [--backend pystan] [NAME ...]
"""
import argparse
import time
from pathlib import Path

import stangen

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--backend", default="pystan")
    args = parser.parse_args()
    names = args.names or sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    print("| spec | verdict | max R-hat | min ESS bulk | divergences | wall s |")
    print("|---|---|---|---|---|---|")
    for name in names:
        start = time.perf_counter()
        fit = stangen.fit(ROOT / "specs" / f"{name}.yaml", backend=args.backend, quiet=True)
        report = fit.convergence()
        by = {c.name: c for c in report.checks}
        print(f"| {name} | {report.status} | {by['r_hat'].value:.3f} | {by['ess_bulk'].value:.0f} | "
              f"{by['divergences'].value:.0f} | {time.perf_counter() - start:.0f} |", flush=True)


if __name__ == "__main__":
    main()
