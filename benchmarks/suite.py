"""The benchmark suite: how fast each example spec compiles, re-fits and samples, under each parameterization.

    python benchmarks/suite.py [NAME ...] [--choices auto,centered,noncentered] [--brms] [--synthetic]
                               [--chains 4 --warmup 1000 --draws 1000] [--out benchmarks/RESULTS.md]

For every spec (default: all of specs/, plus `crossed70k` with --synthetic) and every parameterization
choice it fits the model on the embedded backend and reports:
  compile s (in parentheses: the program was in the compile cache; the time its compile took then), cached re-fit wall s (other data of the same structure:
  every other group of the first level; `no` in "recompiled" shows no compilation), sampling wall s,
  gradient evaluations while sampling (leapfrog steps of the kept draws), µs per gradient (Stan's own
  sampling-phase time / those steps), divergences, max R-hat, and ESS/s: bulk ESS of lp__ and the minimum
  bulk ESS over the population-level parameters (coefficients, sds, correlations, sigma), per second of
  sampling wall time (warmup included).
With --brms, when `Rscript` with brms is installed (Debian: r-cran-brms; never required), it also generates
brms's program for the same model (make_stancode/make_standata), rewrites old array syntax for Stan 2.35,
samples it with the same backend and settings, and reports stangen's ESS/s ratio over it.
Writes a Markdown table (stdout, and --out).
"""
from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import pandas as pd

ROOT = Path(__file__).resolve().parent.parent
SYNTHETIC_SPEC = ROOT / "benchmarks" / "specs" / "crossed70k.yaml"


# -- the synthetic crossed data set -------------------------------------------------------------

def synthetic_crossed(path: Path, seed: int = 20261123) -> Path:
    """About 70k ratings: 3000 students × 1100 items × 14 raters, crossed, gaussian, one level-1 predictor."""
    if path.exists():
        return path
    rng = np.random.default_rng(seed)
    n = 70_000
    student, item, rater = rng.integers(0, 3000, n), rng.integers(0, 1100, n), rng.integers(0, 14, n)
    x = rng.normal(0, 1, n)
    y = (0.5 + 0.3 * x + rng.normal(0, 0.5, 3000)[student] + rng.normal(0, 0.3, 1100)[item]
         + rng.normal(0, 0.4, 14)[rater] + rng.normal(0, 1.0, n))
    path.parent.mkdir(parents=True, exist_ok=True)
    pd.DataFrame({"student": student + 1, "item": item + 1, "rater": rater + 1, "x": x.round(4),
                  "y": y.round(4)}).to_csv(path, index=False)
    return path


# -- measurements ------------------------------------------------------------------------------

def us_per_gradient(chain_seconds: list[dict] | None, steps: int) -> float:
    """Stan's own sampling-phase seconds, summed over chains, per leapfrog step of the kept draws (NaN when
    the backend did not report them)."""
    seconds = sum(c.get("sampling", np.nan) for c in chain_seconds or [{}])
    return 1e6 * seconds / steps if steps and np.isfinite(seconds) else np.nan


def measure(fit) -> dict:
    from stangen.results import checks

    post = fit.idata
    seconds = fit.info["sample_seconds"]
    steps = int(post.sample_stats["n_steps"].values.sum())
    summary = fit.summary()
    ess = summary["ess_bulk"]
    weakest = ess.idxmin()
    import arviz as az
    lp_ess = float(az.ess(post.sample_stats["lp"]).to_array().values.squeeze())
    report = checks.convergence(fit)
    by = {c.name: c for c in report.checks}
    return {"sampling_s": seconds, "gradients": steps,
            "us_per_gradient": us_per_gradient(fit.info.get("chain_seconds"), steps),
            "divergences": int(post.sample_stats["diverging"].values.sum()),
            "max_rhat": float(by["r_hat"].value), "ess_lp_per_s": lp_ess / seconds,
            "min_ess_per_s": float(ess.min()) / seconds, "weakest": weakest}


def recorded_compile_seconds(key: str) -> float:
    """How long the cached program took to compile when it was built (its cache entry's build.json)."""
    from stangen.run.backends import cache
    for meta in cache.cache_root().glob(f"**/{key}/build.json"):
        return float(json.loads(meta.read_text()).get("build_seconds", np.nan))
    return np.nan


def refit_data(program) -> pd.DataFrame:
    """Other data of the same structure: every other group of the first level (fitted with the first fit's
    parameterization: with 4 of its 8 parties, `auto` would center both of legislators' crossed levels)."""
    from stangen.compiler.program import load_data
    df = load_data(program.spec, None)
    level = program.description.levels[0]
    keep = {k.split(":")[-1] for k in program.data.labels[level.name][::2]}
    return df[df[level.id_column].map(lambda v: str(int(v)) if isinstance(v, float) and v.is_integer()
                                      else str(v)).isin(keep)]


# -- brms ----------------------------------------------------------------------------------------

def brms_available() -> bool:
    if shutil.which("Rscript") is None:
        return False
    done = subprocess.run(["Rscript", "-e", "suppressMessages(library(brms)); cat('ok')"],
                          capture_output=True, text=True)
    return done.stdout.strip().endswith("ok")


def brms_frame(program) -> tuple[pd.DataFrame, str, str]:
    """The model's data as one frame (group-level predictors and group means per row) and its brms formula."""
    d, data = program.description, program.stan_data
    df = pd.DataFrame({"y": np.asarray(data["y"])})
    family = d.family.brms
    lhs = "y | trials(n)" if d.family.takes_trials else "y"
    if d.family.takes_trials:
        df["n"] = np.asarray(data["trials"])
    fixed = []
    source = program.spec.data_path
    raw = pd.read_csv(source)
    for t in d.terms:
        if t.categorical:
            for v in t.variables:
                df[v] = raw[v].astype(str).to_numpy()
        else:
            for v in t.variables:
                df[v] = raw[v].to_numpy()
        fixed.append(t.name)
    bars = []
    for lv in d.levels:
        idx = np.asarray(data[f"idx_{lv.stan}"])
        df[f"g_{lv.stan}"] = [program.data.labels[lv.name][j - 1] for j in idx]
        for c in lv.coefficients:
            for e in c.effects:
                w = np.asarray(data[e.predictor.data]) + np.asarray(data[f"{e.predictor.data}_center"])
                cols = [f"w_{lv.stan}_{e.predictor.name}"]
                if w.ndim > 1:  # a categorical one: its dummy columns, as stangen codes them
                    cols = [f"{cols[0]}_{k}" for k in range(w.shape[1])]
                for k, col in enumerate(cols):
                    df[col] = (w[:, k] if w.ndim > 1 else w)[idx - 1]
                    fixed.append(col if c.term is None else f"{c.term.name}:{col}")
        slopes = [c.name for c in lv.coefficients if c.term is not None]
        terms = " + ".join((["1"] if lv.coefficients[0].term is None else ["0"]) + slopes)
        bars.append(f"({terms} {'||' if lv.kind == 'independent' else '|'} g_{lv.stan})")
    rhs = " + ".join((fixed if d.spans_intercept else ["0", *fixed]) + bars) or "1"
    for sub in d.submodels:  # brms's distributional parameters: `bf(y ~ …, zi ~ x + (1 | g))`
        parts = []
        for t in sub.terms:
            for v in t.variables:
                df[v] = raw[v].astype(str).to_numpy() if t.categorical else raw[v].to_numpy()
            parts.append(t.name)
        for lv in sub.levels:
            main = d.level(lv.name)
            df[f"g_{main.stan}"] = [program.data.labels[lv.name][j - 1] for j in np.asarray(data[f"idx_{main.stan}"])]
            slopes = [c.name for c in lv.coefficients if c.term is not None]
            terms = " + ".join((["1"] if lv.coefficients[0].term is None else ["0"]) + slopes)
            parts.append(f"({terms} {'||' if lv.kind == 'independent' else '|'} g_{main.stan})")
        rhs += f", {sub.stan} ~ {' + '.join(parts) or '1'}"
    res = d.residuals
    if res.sd_by is not None:
        raise ValueError("residuals: sd_by is not mapped to brms here (brms models sigma log-linearly)")
    if res.series is not None:
        # brms's ar() takes the order within each group, not the gaps: on uneven times it is another model
        # (the speed peer, not an agreement peer); cov = TRUE is its exact residual-covariance form
        df["time"] = raw[res.series.time].to_numpy()
        ar = f" + ar(time = time, gr = g_{d.level(res.series.level).stan}, p = 1, cov = TRUE)"
        main, _, subs = rhs.partition(", ")
        rhs = main + ar + (", " + subs if subs else "")
    return df, f"{lhs} ~ {rhs}", family


_OLD_ARRAY = re.compile(r"^(\s*)((?:int|real|vector|row_vector|matrix|simplex|cholesky_factor_corr|corr_matrix)"
                        r"(?:<[^>]*>)?(?:\[[^\]]*\])?)\s+(\w+)\[([^\]]+)\];", re.M)


_OLD_ARG = re.compile(r"\b(data\s+)?(int|real|vector|row_vector|matrix)\[(,*)\](\s+\w+)")


def modern_arrays(code: str) -> str:
    """brms 2.18 writes `int Y[N];` and function arguments `int[] nobs`; Stan 2.33+ wants `array[N] int Y;` and
    `array[] int nobs`."""
    code = _OLD_ARRAY.sub(lambda m: f"{m.group(1)}array[{m.group(4)}] {m.group(2)} {m.group(3)};", code)
    return _OLD_ARG.sub(lambda m: f"{m.group(1) or ''}array[{m.group(3)}] {m.group(2)}{m.group(4)}", code)


def brms_program(program, workdir: Path) -> tuple[str, dict]:
    df, formula, family = brms_frame(program)
    csv = workdir / "data.csv"
    df.to_csv(csv, index=False)
    script = workdir / "make.R"
    script.write_text(f"""
suppressMessages(library(brms))
d <- read.csv("{csv}", stringsAsFactors = TRUE)
for (v in grep("^g_", names(d), value = TRUE)) d[[v]] <- factor(d[[v]])
f <- bf({formula})
writeLines(make_stancode(f, data = d, family = {family}), "{workdir / 'brms.stan'}")
sd <- make_standata(f, data = d, family = {family})
jsonlite::write_json(lapply(unclass(sd), function(x) if (is.null(dim(x)) && length(x) > 1) as.vector(x) else x),
                     "{workdir / 'brms.json'}", digits = NA, auto_unbox = FALSE, matrix = "rowmajor")
""")
    done = subprocess.run(["Rscript", str(script)], capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(f"brms failed: {done.stderr[-2000:]}")
    code = modern_arrays((workdir / "brms.stan").read_text())
    raw = json.loads((workdir / "brms.json").read_text())
    return code, _brms_data(code, raw)


def _brms_data(code: str, raw: dict) -> dict:
    """jsonlite writes every value as an array: unbox those the program declares as scalars."""
    block = code[code.index("data {"):code.index("}", code.index("data {"))]
    scalars = set(re.findall(r"^\s*(?:int|real)(?:<[^>]*>)?\s+(\w+);", block, re.M))
    out = {}
    for k, v in raw.items():
        out[k] = v[0] if k in scalars and isinstance(v, list) and len(v) == 1 else v
        if isinstance(out[k], list):
            out[k] = np.asarray(out[k], dtype=float)
            declared_int = re.search(rf"int(?:<[^>]*>)?\s+{k}\b|array\[[^\]]*\]\s+int(?:<[^>]*>)?\s+{k}\b", block)
            if declared_int:
                out[k] = out[k].astype(int)
    return out


def brms_measure(program, settings, backend) -> dict:
    from stangen.run.backends import SamplerSettings
    import arviz as az
    with tempfile.TemporaryDirectory(prefix="stangen_brms_") as tmp:
        code, data = brms_program(program, Path(tmp))
    compiled = backend.compile(code)
    draws = backend.sample(compiled, data, SamplerSettings(**settings))
    # brms's names: b_Intercept (an ordinal model's cutpoints at 0 too), b, sd_1…, cor_1…, and the family's
    # own parameters (sigma; shape of negbinomial and gamma; nu; phi of beta)
    population = [k for k in draws.variables if re.match(r"^(b_Intercept|b|sd_\d+|cor_\d+|sigma|shape|nu|phi)$", k)]
    worst = np.inf
    for k in population:
        values = draws.variables[k]
        flat = values.reshape(values.shape[0], values.shape[1], -1)
        for i in range(flat.shape[2]):
            if np.ptp(flat[:, :, i]) > 0:
                worst = min(worst, float(az.ess(flat[:, :, i])))
    steps = int(draws.sample_stats["n_leapfrog"].sum())
    return {"sampling_s": draws.sample_seconds, "min_ess_per_s": worst / draws.sample_seconds,
            "divergences": int(draws.sample_stats["diverging"].sum()),
            "us_per_gradient": us_per_gradient(draws.chain_seconds, steps)}


# -- the run -------------------------------------------------------------------------------------

def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("names", nargs="*")
    parser.add_argument("--choices", default="auto,centered,noncentered")
    parser.add_argument("--brms", action="store_true")
    parser.add_argument("--synthetic", action="store_true", help="include the 70k-row crossed data set")
    parser.add_argument("--chains", type=int, default=4)
    parser.add_argument("--warmup", type=int, default=1000)
    parser.add_argument("--draws", type=int, default=1000)
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--no-refit", action="store_true")
    parser.add_argument("--out", type=Path)
    args = parser.parse_args()

    import stangen
    from stangen.run.backends import get_backend
    from stangen.compiler.program import build
    from stangen.spec import Spec

    names = args.names or sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))
    if args.synthetic and "crossed70k" not in names:
        names.append("crossed70k")
    if "crossed70k" in names:
        synthetic_crossed(ROOT / "benchmarks" / "data" / "crossed70k.csv")
    settings = dict(chains=args.chains, warmup=args.warmup, draws=args.draws, seed=args.seed, quiet=True)
    backend = get_backend("pystan")
    with_brms = args.brms and brms_available()
    if args.brms and not with_brms:
        print("note: --brms asked for, but Rscript with brms is not installed: no peer column", file=sys.stderr)

    header = ["spec", "rows", "choice", "levels", "adapt δ", "compile s", "re-fit s (recompiled?)", "sampling s",
              "gradients", "µs/gradient", "divergences", "max R-hat", "ESS/s lp__", "min ESS/s", "weakest"]
    if with_brms:
        header += ["brms min ESS/s", "brms µs/gradient", "brms divergences", "stangen/brms"]
    lines = [f"Backend pystan (Stan {backend.stan_version}); {args.chains} chains × ({args.warmup} warmup + "
             f"{args.draws} draws), seed {args.seed}; {os.cpu_count()} cores; {time.strftime('%Y-%m-%d')}.", "",
             "| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    print("\n".join(lines), flush=True)
    for name in names:
        path = SYNTHETIC_SPEC if name == "crossed70k" else Path(name) if name.endswith(".yaml") else \
            ROOT / "specs" / f"{name}.yaml"  # a name in specs/, or a spec file
        base = Spec.from_yaml(path)
        auto = build(base)
        auto_choice = {c.level: c.parameterization for c in auto.parameterization}
        peer = None
        for choice in args.choices.split(","):
            spec = base if choice == "auto" else base.with_parameterization(choice)
            if choice != "auto" and all(v == choice for v in auto_choice.values()) and "auto" in args.choices:
                continue  # the same program as auto
            fit = stangen.fit(spec, backend="pystan", **settings)
            m = measure(fit)
            compile_s = f"{fit.info['compile_seconds']:.0f}" if fit.info["compiled_now"] else \
                f"({recorded_compile_seconds(fit.info['program_key']):.0f})"
            refit = ""
            if choice == "auto" and not args.no_refit and name != "crossed70k":
                start = time.perf_counter()
                # the structure is known: the first fit's parameterization (and adapt_delta), as a user
                # re-fitting would pin it; `auto` on much other data may choose another program
                known = spec
                for c in fit.program.parameterization:
                    known = known.with_parameterization(c.parameterization, levels=[c.level])
                again = stangen.fit(known, refit_data(fit.program), backend="pystan",
                                    **settings | {"adapt_delta": fit.info["settings"]["adapt_delta"]})
                refit = f"{time.perf_counter() - start:.1f} ({'yes' if again.info['compiled_now'] else 'no'})"
            levels = ", ".join(f"{c.level} {c.parameterization[0]}" for c in fit.program.parameterization)
            adapt_delta = f"{fit.info['settings']['adapt_delta']:g}"
            row = [name, str(fit.program.data.n), choice, levels, adapt_delta, compile_s, refit,
                   f"{m['sampling_s']:.1f}", str(m["gradients"]), f"{m['us_per_gradient']:.0f}",
                   str(m["divergences"]), f"{m['max_rhat']:.3f}", f"{m['ess_lp_per_s']:.0f}",
                   f"{m['min_ess_per_s']:.1f}", m["weakest"]]
            if with_brms:
                if peer is None:
                    try:
                        # the same settings, including an adapt_delta auto raised for an undecided level
                        peer = brms_measure(fit.program, settings | {"adapt_delta": fit.info["settings"]["adapt_delta"]},
                                            backend)
                    except Exception as exc:  # noqa: BLE001 - a peer that fails is reported, not fatal
                        peer = {"error": str(exc)[:200]}
                        print(f"note: brms for {name}: {exc}", file=sys.stderr)
                if "error" in peer:
                    row += ["–", "–", "–", "–"]
                else:
                    row += [f"{peer['min_ess_per_s']:.1f}", f"{peer['us_per_gradient']:.0f}",
                            str(peer["divergences"]), f"{m['min_ess_per_s'] / peer['min_ess_per_s']:.1f}×"]
            line = "| " + " | ".join(row) + " |"
            lines.append(line)
            print(line, flush=True)
            del fit
    if args.out:
        args.out.write_text("\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
