"""Would an initial inverse metric from a quick estimate shorten warmup on InstEval? A hand-made experiment
(stangen does not do this yet): CmdStan 2.35 (needs CMDSTAN), the program stangen writes for
specs/insteval.yaml, one chain (id 1, seed 1, 1000 + 1000), two runs at a time on the 2 cores.

    CMDSTAN=… python benchmarks/initial_metric.py

Runs: the unit metric (Stan's default start); `metric_file` with every parameter's approximate posterior
variance on the unconstrained scale; the scalars only (intercept, coefficient, log sigma, log sds; the group
effects left at 1); the group effects only (scalars at 1). The variances: group j of a centered
intercept-only level 1 / (n_j / σ² + 1 / τ²), with lme4's σ and τ; log sigma 1 / (2N); log sd 1 / (2J);
the intercept and coefficient from their lme4 standard errors, rounded up.
"""
from __future__ import annotations

import json
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from stangen.run.backends import get_backend  # noqa: E402
from stangen.run.backends._data import prepare_data  # noqa: E402
from stangen.run.backends.cmdstan import csv_elapsed, read_csv_draws  # noqa: E402
from stangen.compiler.program import build  # noqa: E402

SIGMA, TAU_S, TAU_D = 1.177, 0.326, 0.515  # lme4's REML fit (tests/reference/insteval.json)


def main() -> None:
    out = Path(tempfile.mkdtemp(prefix="stangen_metric_"))
    program = build(ROOT / "specs" / "insteval.yaml")
    forms = {c.level: c.parameterization for c in program.parameterization}
    assert forms == {"s": "centered", "d": "centered", "dept": "integrated"}, forms  # the layout below assumes it
    exe = get_backend("cmdstan").compile(program.code).handle["exe_file"]
    data = {k: v.tolist() for k, v in prepare_data(program.stan_data).items()}
    (out / "data.json").write_text(json.dumps(data))
    n, j_s, j_d = data["N"], data["J_s"], data["J_d"]
    n_s = np.bincount(data["idx_s"], minlength=j_s + 1)[1:]
    n_d = np.bincount(data["idx_d"], minlength=j_d + 1)[1:]
    # unconstrained order: Intercept_centered, beta_service, log sigma, log sd_s, b_s, log sd_dept, log sd_d, b_d
    scalars = {0: 0.03 ** 2, 1: 0.013 ** 2, 2: 1 / (2 * n), 3: 1 / (2 * j_s), 4 + j_s: 0.3 ** 2, 5 + j_s: 1 / (2 * j_d)}
    full = np.ones(6 + j_s + j_d)
    full[4:4 + j_s] = 1 / (n_s / SIGMA ** 2 + 1 / TAU_S ** 2)
    full[6 + j_s:] = 1 / (n_d / SIGMA ** 2 + 1 / TAU_D ** 2)
    only_groups = full.copy()
    only_scalars = np.ones_like(full)
    for i, v in scalars.items():
        full[i] = only_scalars[i] = v
    metrics = {"unit (Stan's default)": None, "every parameter": full, "scalars only": only_scalars,
               "group effects only": only_groups}

    def start(label: str, metric) -> subprocess.Popen:
        stem = out / label.split()[0]
        extra = []
        if metric is not None:
            (stem.with_suffix(".metric.json")).write_text(json.dumps({"inv_metric": metric.tolist()}))
            extra = ["algorithm=hmc", f"metric_file={stem.with_suffix('.metric.json')}"]
        return subprocess.Popen([exe, "id=1", "random", "seed=1", "data", f"file={out / 'data.json'}", "init=2",
                                 "output", f"file={stem.with_suffix('.csv')}", "method=sample", "num_samples=1000",
                                 "num_warmup=1000", *extra], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)

    labels = list(metrics)
    for pair in (labels[:2], labels[2:]):
        for p in [start(label, metrics[label]) for label in pair]:
            p.wait()
    print("| initial metric | warmup s | sampling s | gradients while sampling | divergences |")
    print("|---|---|---|---|---|")
    for label in labels:
        csv = (out / label.split()[0]).with_suffix(".csv")
        columns, draws = read_csv_draws(csv)
        col = {c: i for i, c in enumerate(columns)}
        spent = csv_elapsed(csv)
        print(f"| {label} | {spent['warmup']:.0f} | {spent['sampling']:.0f} | "
              f"{int(draws[:, col['n_leapfrog__']].sum()):,} | {int(draws[:, col['divergent__']].sum())} |")


if __name__ == "__main__":
    main()
