"""Compile time, cached re-fit time and sampling time of example specs on one backend.

    python benchmarks/fit_times.py sleepstudy language [--backend pystan] [--fresh-cache]

--fresh-cache uses an empty compile cache (so the first fit compiles); the re-fit uses other data of the
same structure (every other group dropped) and must reuse the compiled program. Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("specs", nargs="+")
    parser.add_argument("--backend", default="pystan")
    parser.add_argument("--fresh-cache", action="store_true")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    args = parser.parse_args()
    if args.fresh_cache:
        os.environ["STANGEN_CACHE"] = tempfile.mkdtemp(prefix="stangen_bench_cache_")
    import stangen
    from stangen.compiler.program import build

    settings = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, seed=1, quiet=True)
    print(f"backend {args.backend}; {args.chains} chains x ({args.warmup} warmup + {args.draws} draws); "
          f"{os.cpu_count()} cores\n")
    print("| spec | rows | compile s | first fit wall s | sampling s | cached re-fit wall s | re-fit compiled? |")
    print("|---|---|---|---|---|---|---|")
    for name in args.specs:
        spec_path = ROOT / "specs" / f"{name}.yaml"
        program = build(spec_path)
        t0 = time.perf_counter()
        first = stangen.fit(spec_path, backend=args.backend, **settings)
        first_wall = time.perf_counter() - t0
        df = stangen.compiler.program.load_data(program.spec, None)
        level = program.description.levels[0]
        keep = set(program.data.labels[level.name][::2])
        subset = df[df[level.id_column].astype(str).isin({k.split(":")[-1] for k in keep})]
        t0 = time.perf_counter()
        again = stangen.fit(spec_path, subset, backend=args.backend, **settings)
        refit_wall = time.perf_counter() - t0
        print(f"| {name} | {program.data.n} | {first.info['compile_seconds']:.1f} | {first_wall:.1f} | "
              f"{first.info['sample_seconds']:.1f} | {refit_wall:.1f} | {again.info['compiled_now']} |")


if __name__ == "__main__":
    main()
