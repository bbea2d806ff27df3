"""Threads within a chain: one chain of a spec, the plain program against the threaded one (reduce_sum over
slices of rows) at 1 and 2 threads and a few slice sizes. CmdStan (needs CMDSTAN); seed 1, 1000 + 1000.

    CMDSTAN=… python benchmarks/threads.py [specs/insteval.yaml] [--threads 1,2] [--slices 2,4,8]

--slices: slices per thread (grainsize = rows / (slices × threads)); stangen's default is 4. Prints one
row per run: wall s (the sampling call), Stan's warmup and sampling s, gradients while sampling, µs per
gradient (sampling s / gradients), divergences. Run nothing else meanwhile: the threads need both cores.
"""
from __future__ import annotations

import argparse
import datetime
import os
import platform
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stangen.fitting import fit  # noqa: E402
from stangen.compiler.program import build  # noqa: E402
from stangen.results.checks import chains  # noqa: E402


def run(program, threads: int, label: str) -> dict:
    start = time.perf_counter()
    result = fit(program, backend="cmdstan", chains=1, seed=1, quiet=True, threads_per_chain=threads)
    wall = time.perf_counter() - start - result.info["compile_seconds"]
    row = chains(result).iloc[0]
    return {"program": label, "threads": threads, "grainsize": program.stan_data.get("grainsize", "–"),
            "wall s": wall, "warmup s": row["warmup s"], "sampling s": row["sampling s"],
            "gradients": int(row["gradients"]), "µs per gradient": row["µs per gradient"],
            "divergences": int(row["divergences"])}


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "insteval.yaml"))
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--slices", default="4", help="slices per thread, comma-separated")
    args = parser.parse_args()
    if not os.environ.get("CMDSTAN"):
        sys.exit("set CMDSTAN to a built CmdStan (bash ../shared/cmdstan-offline/build.sh)")
    plain = build(args.spec)
    rows = [run(plain, 1, "plain")]
    n = plain.data.n
    for threads in map(int, args.threads.split(",")):
        threaded = build(args.spec, threads_per_chain=max(2, threads))
        for slices in map(int, args.slices.split(",")):
            threaded.stan_data["grainsize"] = max(1, -(-n // (slices * threads)))
            rows.append(run(threaded, threads, f"reduce_sum, {slices} slices per thread"))
    print(f"{Path(args.spec).name}: {n} rows; CmdStan, 1 chain, 1000 + 1000, seed 1; {os.cpu_count()} cores "
          f"({platform.machine()}); {datetime.date.today()}\n")
    columns = list(rows[0])
    print("| " + " | ".join(columns) + " |")
    print("|" + "---|" * len(columns))
    for row in rows:
        print("| " + " | ".join(f"{v:,.0f}" if isinstance(v, (int, float)) else str(v) for v in row.values())
              + " |", flush=True)


if __name__ == "__main__":
    main()
