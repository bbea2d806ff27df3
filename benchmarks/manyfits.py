"""The Dask layer's cost: wall time of N SBC fits of a small spec, in this process (no Dask), on a local cluster
with 1 worker and with 2 workers; the per-fit overhead of the layer.

    python benchmarks/manyfits.py [--sims 200] [--warmup 1000 --draws 1000] [--out benchmarks/RESULTS.md]

The spec: gaussian, a correlated varying intercept and slope, 20 groups × 10 rows (simulated design), fits of
2 chains run one after the other on one core. Every mode fits the same simulations with the same seeds
(stangen.workflows.sbc with one master seed). Per-fit overhead = (wall with 1 Dask worker − wall in-process) / fits,
compared with the in-process time of one fit. Results are printed as a Markdown table (and appended to
--out when given).
"""
from __future__ import annotations

import argparse
import os
import tempfile
import time

import stangen
from stangen.workflows.sbc import sbc

SPEC = stangen.Spec(outcome="y", predictors=["x"], name="manyfits_bench",
                    levels={"g": stangen.Level(varying=["intercept", "x"])})


def run(mode: str, sims: int, settings: dict) -> tuple[float, object]:
    scheduler, workers = ("inline", None) if mode == "in-process" else (None, int(mode.split()[0]))
    with tempfile.TemporaryDirectory() as out:
        start = time.perf_counter()
        result = sbc(SPEC, sims=sims, data=False, groups={"g": 20}, per_group=10, seed=1, scheduler=scheduler,
                     workers=workers, out=out, progress=False, **settings)
        return time.perf_counter() - start, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sims", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--out")
    args = parser.parse_args()
    settings = {"chains": 2, "warmup": args.warmup, "draws": args.draws}
    stangen.build(SPEC, stangen.workflows.simulate.simulate(SPEC, None, data=False, groups={"g": 20}, per_group=10,
                                                  from_prior=True).data)  # compile outside the timings
    rows = []
    walls = {}
    for mode in ("in-process", "1 worker", "2 workers"):
        wall, result = run(mode, args.sims, settings)
        walls[mode] = wall
        fit_s = result.ranks.groupby("sim")["seconds"].first()
        rows.append((mode, wall, wall / args.sims, float(fit_s.mean()), result.verdict.split(":")[0]))
    per_fit = walls["in-process"] / args.sims
    overhead = (walls["1 worker"] - walls["in-process"]) / args.sims
    lines = [f"{args.sims} SBC fits (2 chains × ({args.warmup} + {args.draws}), one core per fit) of a gaussian "
             f"correlated intercept and slope, 20 groups × 10 rows; {os.cpu_count()} cores; "
             f"{time.strftime('%Y-%m-%d')}.", "",
             "| mode | wall s | wall s per fit | task s per fit (on the worker) | SBC verdict |",
             "|---|---|---|---|---|"]
    lines += [f"| {m} | {w:.1f} | {w / args.sims:.3f} | {t:.3f} | {v} |" for m, w, _, t, v in rows]
    lines += ["", f"Per-fit overhead of the Dask layer (1 worker vs in-process): {overhead:.3f} s = "
                  f"{100 * overhead / per_fit:.1f}% of a fit's {per_fit:.2f} s; 2 workers: "
                  f"{walls['1 worker'] / walls['2 workers']:.2f}× the speed of 1."]
    text = "\n".join(lines)
    print(text)
    if args.out:
        with open(args.out, "a", encoding="utf-8") as handle:
            handle.write("\n" + text + "\n")


if __name__ == "__main__":
    main()
