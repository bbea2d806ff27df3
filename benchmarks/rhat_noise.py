"""How often a sample that mixes well fails the R-hat check by chance: the verdict's max R-hat <= 1.01 over
many parameters, at a given length.

    python benchmarks/rhat_noise.py [--reps 40] [--chains 4] [--draws 500,1000] [--params 10,100,250,1000]

Draws are simulated, not sampled: every parameter an AR(1) series in each chain, with no difference
between chains at all, so every R-hat above 1 is noise. The AR coefficient sets the efficiency (bulk ESS per
draw (1 − ρ)/(1 + ρ)). R-hat is stangen's own (stangen/results/diagnostics.py: rank-normalized split R-hat,
the larger of bulk and folded, as ArviZ computes it). Prints, per length, efficiency and number of
parameters, the share of repetitions whose max R-hat exceeds 1.01, the median max R-hat, and the share that
the verdict's rule for group effects fails (more than 1% of them above 1.01, or any above 1.05; the
parameters taken as group effects).
"""
from __future__ import annotations

import argparse

import numpy as np

from stangen.results.diagnostics import diagnostics
from stangen.results.checks import RHAT_GROUP_EFFECTS_MAX, RHAT_GROUP_EFFECTS_SHARE, RHAT_MAX


def ar1(rng, chains: int, draws: int, params: int, rho: float) -> np.ndarray:
    noise = rng.normal(size=(chains, draws, params))
    x = np.empty_like(noise)
    x[:, 0] = noise[:, 0]
    scale = np.sqrt(1 - rho ** 2)
    for t in range(1, draws):
        x[:, t] = rho * x[:, t - 1] + scale * noise[:, t]
    return x


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--reps", type=int, default=40)
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--draws", default="500,1000")
    parser.add_argument("--params", default="10,100,250,1000")
    parser.add_argument("--rhos", default="0,0.3,0.5")
    parser.add_argument("--seed", type=int, default=1)
    args = parser.parse_args()
    rng = np.random.default_rng(args.seed)
    print(f"{args.chains} chains, {args.reps} repetitions each; every chain the same stationary AR(1) process\n")
    print(f"| draws per chain | bulk ESS per draw | parameters | share with max R-hat > {RHAT_MAX} | median max R-hat "
          "| share the group-effects rule fails |")
    print("|---|---|---|---|---|---|")
    for draws in (int(d) for d in args.draws.split(",")):
        for rho in (float(r) for r in args.rhos.split(",")):
            for params in (int(p) for p in args.params.split(",")):
                r_hats = [np.asarray(diagnostics(ar1(rng, args.chains, draws, params, rho))["r_hat"])
                          for _ in range(args.reps)]
                maxima = np.array([np.nanmax(r) for r in r_hats])
                rule = np.mean([np.sum(r > RHAT_MAX) > RHAT_GROUP_EFFECTS_SHARE * params
                                or np.nanmax(r) > RHAT_GROUP_EFFECTS_MAX for r in r_hats])
                print(f"| {draws} | {(1 - rho) / (1 + rho):.2f} | {params} | {np.mean(maxima > RHAT_MAX):.2f} | "
                      f"{np.median(maxima):.4f} | {rule:.2f} |", flush=True)


if __name__ == "__main__":
    main()
