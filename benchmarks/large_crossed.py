"""Large crossed data end to end: `stangen fit` on InstEval (or another spec) against lme4 in the same run.

    python benchmarks/large_crossed.py [SPEC] [--backend auto|cmdstan|pystan] [--fresh-cache] [--no-lme4]
                                       [--report] [--extra "--warmup 500"] [--out benchmarks/results/insteval.md]

Prints (and with --out writes as Markdown):
  - the wall time of the whole `stangen fit SPEC` command (compile included; with --fresh-cache the program is
    compiled anew in an empty cache), and of lme4's fit of the same model (`stangen render --as lme4`) as a
    user runs it: the whole Rscript process (R's start-up, reading the CSV, lmer), and lmer alone (system.time);
    skipped without Rscript and lme4; and their ratios;
  - the verdict numbers: max R-hat, min bulk ESS, divergences;
  - per chain: warmup and sampling seconds, step size, mean tree depth, gradients while sampling, µs per
    gradient, divergences (stangen.results.checks.chains) — where a slow chain's time went;
  - the population values against lme4's (the REML fit computed in the same run): fixed effects in posterior
    sds, sds inside the 95% intervals.
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent


def lme4_fit(program) -> dict | None:
    """lme4's fit of the program's model as a user runs it, one Rscript process (R's start-up, reading the
    CSV, lmer): {'process_seconds': the whole process, 'seconds': lmer alone (system.time), 'fixef': {name:
    (estimate, se)}, 'sd': {group: sd}}; None without Rscript/lme4 or for a family lme4 does not fit."""
    from stangen.compiler.peers import lme4_code
    if shutil.which("Rscript") is None:
        return None
    code = lme4_code(program)
    call = next((line for line in code.splitlines() if line.startswith("lme4::lmer(")), None)
    if call is None:
        return None
    data = program.spec.data_path
    reader = f'read.csv(gzfile("{data}"))' if str(data).endswith(".gz") else f'read.csv("{data}")'
    prelude = [line for line in code.splitlines() if line.startswith("d$")]
    script = "\n".join([
        "suppressMessages(library(lme4))", f"d <- {reader}", *prelude,
        f"t <- system.time(m <- {call})[['elapsed']]",
        "cf <- summary(m)$coefficients; vc <- as.data.frame(VarCorr(m))",
        "cat(jsonlite::toJSON(list(seconds = t, fixef = lapply(split(cf[, 1:2], rownames(cf)), as.numeric),",
        "  sd = setNames(as.list(vc$sdcor), vc$grp)), auto_unbox = TRUE, digits = NA))"])
    start = time.perf_counter()
    done = subprocess.run(["Rscript", "-e", script], capture_output=True, text=True)
    process = time.perf_counter() - start
    if done.returncode:
        print(f"note: lme4 failed: {done.stderr[-500:]}", file=sys.stderr)
        return None
    return {**json.loads(done.stdout.strip().splitlines()[-1]), "process_seconds": process}


def stangen_fit(spec: Path, out: Path, backend: str, fresh_cache: bool, extra: list[str]) -> float:
    env = dict(os.environ)
    scratch = None
    if fresh_cache:
        scratch = tempfile.mkdtemp(prefix="stangen_cache_")
        env["STANGEN_CACHE"] = scratch
    command = [sys.executable, "-m", "stangen.cli", "fit", str(spec), "--out", str(out), "--backend", backend,
               *extra]
    start = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    sys.stderr.write(done.stdout[:3000])
    if done.returncode not in (0, 2):
        raise SystemExit(f"stangen fit failed:\n{done.stderr[-3000:]}")
    return seconds


def agreement(fit, reference: dict) -> pd.DataFrame:
    """Fixed effects: (posterior mean − lme4) in posterior sds; sds: lme4's inside the 95% interval?"""
    table = fit.summary()
    rows = []
    for name, (estimate, _se) in reference["fixef"].items():
        row = "Intercept" if name == "(Intercept)" else name
        if row in table.index:
            mean, sd = table.loc[row, "mean"], table.loc[row, "sd"]
            rows.append({"parameter": row, "stangen": mean, "lme4": estimate, "in posterior sds": (mean - estimate) / sd,
                         "ok": abs(mean - estimate) <= 0.5 * sd})
    for group, value in reference["sd"].items():
        row = "sigma" if group == "Residual" else next(
            (r for r in table.index if re.fullmatch(rf"sd\({re.escape(group)}: intercept\)", r)), None)
        if row is None:
            continue
        low, high = table.loc[row, "q2.5%"], table.loc[row, "q97.5%"]
        rows.append({"parameter": row, "stangen": table.loc[row, "mean"], "lme4": value,
                     "in posterior sds": (table.loc[row, "mean"] - value) / table.loc[row, "sd"],
                     "ok": bool(low < value < high)})
    return pd.DataFrame(rows).set_index("parameter")


def markdown(frame: pd.DataFrame) -> str:
    """A Markdown table (pandas' to_markdown needs `tabulate`, which stangen does not install)."""
    def cell(v):
        if isinstance(v, (bool, np.bool_)):
            return "yes" if v else "**no**"
        if isinstance(v, (float, np.floating)):
            return f"{v:.4g}"
        return str(v)
    head = [frame.index.name or ""] + [str(c) for c in frame.columns]
    rows = ["| " + " | ".join([str(i)] + [cell(v) for v in row]) + " |" for i, row in zip(frame.index, frame.values)]
    return "\n".join(["| " + " | ".join(head) + " |", "|" + "---|" * len(head), *rows])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("spec", nargs="?", default=str(ROOT / "specs" / "insteval.yaml"))
    parser.add_argument("--backend", default="auto", help="auto, or a backend's name (pystan, cmdstan, nutpie)")
    parser.add_argument("--fresh-cache", action="store_true", help="compile in an empty cache (compile included)")
    parser.add_argument("--no-lme4", action="store_true")
    parser.add_argument("--extra", default="", help="more `stangen fit` flags, e.g. \"--warmup 500\"")
    parser.add_argument("--report", action="store_true",
                        help="time the command with its report (the default `stangen fit`); else --no-report")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    from stangen.fitting import Fit
    from stangen.compiler.program import build
    from stangen.results import checks

    spec = Path(args.spec)
    program = build(spec)
    reference = None if args.no_lme4 else lme4_fit(program)
    with tempfile.TemporaryDirectory(prefix="stangen_bench_") as tmp:
        run = Path(tmp) / "run"
        wall = stangen_fit(spec, run, args.backend, args.fresh_cache,
                           shlex.split(args.extra) + ([] if args.report else ["--no-report"]))
        fit = Fit.load(run)
        report = checks.convergence(fit)
        by = {c.name: c for c in report.checks}
        info = fit.info
        lines = [f"`stangen fit {spec.name}` ({info['backend']}, Stan {info.get('stan_version', '?')}, "
                 f"{info['settings']['chains']} chains × ({info['settings']['warmup']} warmup + "
                 f"{info['settings']['draws']} draws), adapt_delta {info['settings']['adapt_delta']:g}; "
                 f"{os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}; "
                 f"{'empty compile cache' if args.fresh_cache else 'compile cache as found'}; "
                 f"{'with' if args.report else 'without'} the report)", "",
                 f"- sampled: {', '.join(c.label for c in fit.program.parameterization)}",
                 f"- whole command: **{wall:.0f} s** (compile {info['compile_seconds']:.0f} s"
                 f"{'' if info['compiled_now'] else ' — cached'}, sampling {info['sample_seconds']:.0f} s)"]
        if reference is not None:
            lines.append(f"- lme4 (same model, this run): the whole Rscript process {reference['process_seconds']:.1f} s "
                         f"(lmer alone {reference['seconds']:.1f} s) → stangen/lme4 "
                         f"**{wall / reference['process_seconds']:.1f}×** ({wall / reference['seconds']:.1f}× lmer alone)")
        lines += [f"- max R-hat {by['r_hat'].value:.4f}, min bulk ESS {by['ess_bulk'].value:.0f}, "
                  f"divergences {by['divergences'].value}; verdict {report.status}", "",
                  markdown(checks.chains(fit)), ""]
        if reference is not None:
            lines += [markdown(agreement(fit, reference)), ""]
    text = "\n".join(lines)
    print(text)
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text + "\n")


if __name__ == "__main__":
    main()
