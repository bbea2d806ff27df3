"""Backends side by side: each spec fitted on each backend with the same settings, as a Markdown table.

    python benchmarks/backends.py [NAME ...] [--backends pystan,cmdstan,nutpie] [--chains 4 --warmup 500
                                  --draws 500] [--seeds 1[,2,...]] [--choices auto[,centered,noncentered]]

Per spec and backend: the verdict (stangen's own convergence checks, what a user sees first), max R-hat,
divergences, compile s (in parentheses: from the compile cache, the figure its build took), sampling wall
s (warmup included), gradient evaluations per kept draw, min bulk ESS over the population-level parameters
(coefficients, sds, correlations, sigma and family parameters: the summary's rows without group effects)
and that ESS per second of sampling. The backends sample the same program text; CmdStan needs CMDSTAN,
nutpie needs `pip install stangen[nutpie]` and BRIDGESTAN (see README, Backends). A backend that is not
set up is left out with a note. `--choices` fits each spec with every level's parameterization pinned to each
choice in turn (`auto`: the spec as written); `--seeds` repeats each fit with other seeds, since one
seed's verdict at 500 draws per chain is a coin with a bias, not a measurement.
"""
from __future__ import annotations

import argparse
import re
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "benchmarks"))

from suite import recorded_compile_seconds  # noqa: E402


def row(name: str, backend: str, settings: dict, choice: str = "auto") -> str:
    import stangen
    spec = stangen.Spec.from_yaml(ROOT / "specs" / f"{name}.yaml")
    if choice != "auto":
        spec = spec.with_parameterization(choice)
    program = stangen.build(spec, require_data=True)
    chosen = "; ".join(c.label for c in program.parameterization)
    start = time.perf_counter()
    fit = stangen.fit(program, backend=backend, quiet=True, **settings)
    wall = time.perf_counter() - start
    info = fit.info
    report = fit.convergence()
    by = {c.name: c for c in report.checks}
    stats = fit.idata.sample_stats
    draws = stats["n_steps"].size
    gradients = int(stats["n_steps"].values.sum()) / draws
    ess = fit.summary()["ess_bulk"]
    seconds = info["sample_seconds"]
    compile_s = info["compile_seconds"]
    compiled = f"{compile_s:.0f}" if info.get("compiled_now") else \
        f"({recorded_compile_seconds(info.get('program_key', '')):.0f})"
    # the parameter with the largest R-hat: "(largest 1.013, s[12]: intercept)" when it is a group effect among
    # many, else "max R-hat 1.012 (lp__)"
    worst = re.search(r"\(largest \S+, (.*?)\)", by["r_hat"].message) or \
        re.search(r"max R-hat \S+ \((.*?)\)(?: >|$|;)", by["r_hat"].message)
    return (f"| {name} | {chosen} | {settings['seed']} | {backend} | {report.status} | {by['r_hat'].value:.3f} ({worst.group(1) if worst else '?'}) | "
            f"{int(stats['diverging'].values.sum())} | {compiled} | {seconds:.1f} | {gradients:.1f} | "
            f"{ess.min():.0f} ({ess.idxmin()}) | {ess.min() / seconds:.0f} | {wall:.0f} |")


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("names", nargs="*")
    parser.add_argument("--backends", default="pystan,cmdstan,nutpie")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=500)
    parser.add_argument("--draws", type=int, default=500)
    parser.add_argument("--seeds", default="1")
    parser.add_argument("--choices", default="auto")
    args = parser.parse_args()
    from stangen.run.backends import BACKENDS
    usable = {cls.name for cls in BACKENDS if cls.usable()}
    backends = [b for b in args.backends.split(",") if b]
    for b in backends:
        if b not in usable:
            print(f"note: backend {b} is not set up here; left out", file=sys.stderr)
    backends = [b for b in backends if b in usable]
    names = args.names or sorted(p.stem for p in (ROOT / "specs").glob("*.yaml") if p.stem != "insteval")
    seeds = [int(s) for s in args.seeds.split(",") if s]
    print(f"{args.chains} chains × {args.warmup} warmup + {args.draws} draws\n")
    print("| spec | parameterization | seed | backend | verdict | max R-hat (parameter) | div | compile s | sampling s | gradients/draw | "
          "min ESS (parameter) | min ESS/s | wall s |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|---|")
    for name in names:
        for choice in args.choices.split(","):
            for backend in backends:
                for seed in seeds:
                    settings = {"chains": args.chains, "warmup": args.warmup, "draws": args.draws, "seed": seed}
                    try:
                        print(row(name, backend, settings, choice), flush=True)
                    except Exception as exc:  # a benchmark reports a failure and goes on
                        print(f"| {name} | {choice} | {seed} | {backend} | error: {type(exc).__name__}: "
                              f"{str(exc).splitlines()[0][:80]} | | | | | | | | |", flush=True)


if __name__ == "__main__":
    main()
