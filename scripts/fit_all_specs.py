"""Fit every spec in specs/ with its own sampler settings (defaults: 4 chains x 1000 + 1000) on one backend
and print the convergence verdict of each, as a Markdown table. "after sampling s" is the time from the end
of the chains to a printed lme4 summary and verdict (reading the draws, building the InferenceData, the
tables and checks): the fit's wall time (program and data built before) less compile and sampling.

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
    print("| spec | verdict | max R-hat | min ESS bulk | divergences | wall s | after sampling s |")
    print("|---|---|---|---|---|---|---|")
    for name in names:
        program = stangen.build(ROOT / "specs" / f"{name}.yaml", require_data=True)
        start = time.perf_counter()
        fit = stangen.fit(program, backend=args.backend, quiet=True)
        report = fit.convergence()
        printout = fit.lme4() + "\n" + report.one_line()
        wall = time.perf_counter() - start
        after = wall - fit.info["compile_seconds"] - fit.info["sample_seconds"]
        by = {c.name: c for c in report.checks}
        assert printout
        print(f"| {name} | {report.status} | {by['r_hat'].value:.3f} | {by['ess_bulk'].value:.0f} | "
              f"{by['divergences'].value:.0f} | {wall:.0f} | {after:.2f} |", flush=True)


if __name__ == "__main__":
    main()
