"""The `stangen` command: validate | render | from-formula | fit | check | hypothesis | means | slopes | comparisons | report | compare | pooling |
simulate | predict | effects | sbc | kfold | plan | install-cmdstan.

Exit codes: 0 ok; 1 user error (spec or data); 2 sampling or convergence failure; 3 internal error.

Each command imports what it needs inside its function: the CLI is the one place where loading on demand is
the rule (start-up time: `stangen validate` does not load ArviZ, matplotlib, Dask or the backends).
"""
from __future__ import annotations

import argparse
import os
import sys
import traceback
from pathlib import Path

from .core import files
from .core.errors import Problem, SpecError, StangenError
from .core.version import VERSION


def cmd_validate(args: argparse.Namespace) -> int:
    from .compiler.parameterization import suggested_adapt_delta
    from .compiler.program import build, load_spec

    spec = load_spec(args.spec, args.data, args.missing)
    program = build(spec, args.data, missing=args.missing) if (args.data or spec.data) else None
    detail = f"; {program.data.n} rows" if program and program.data else ""
    if program and program.data and program.data.dropped:
        detail += f" ({program.data.dropped.note()})"
    if program and program.data:
        detail += "".join(f", {len(v)} {k} groups" for k, v in program.data.labels.items())
    if program and program.data and program.parameterization:
        detail += "; sampled " + ", ".join(
            c.label + (f" (information {c.information:.2g}" + (
                f", undecided: 90% interval {c.interval[0]:.2g}–{c.interval[1]:.2g}" if c.undecided else "")
                + ")" if c.information is not None else f" ({c.how})") for c in program.parameterization)
        adapt_delta = suggested_adapt_delta(program.parameterization)
        if adapt_delta is not None and "adapt_delta" not in spec.sampler:
            detail += f"; adapt_delta {adapt_delta:g}"
    print(f"{args.spec}: ok — {spec.describe()}{detail}")
    for note in spec.formula_notes:
        print(f"  formula: {note}")
    return 0


# from-formula's one-sided formulas for the family's parameters (glmmTMB's ziformula and dispformula)
SUB_MODEL_FLAGS = {"zi": "zi, the probability of a structural zero (glmmTMB's ziformula)",
                   "hu": "hu, a hurdle family's probability of a zero",
                   "sigma": "the residual sd, log link (glmmTMB's dispformula models log sigma²)",
                   "phi": "phi, the negative binomial's shape or the beta's precision (log link)",
                   "shape": "the gamma's shape (log link)"}


def cmd_from_formula(args: argparse.Namespace) -> int:
    """An lme4 formula → a commented long-form spec (YAML), validated against the data."""
    from .core.frames import read_csv
    from .spec import Spec
    from .spec.formula import commented_yaml

    frame = read_csv(args.data)
    data_key = args.data
    if args.output:  # the spec's `data:` is relative to the spec file
        data_key = os.path.relpath(Path(args.data).resolve(), Path(args.output).resolve().parent)
    keys = {"data": data_key, **({"family": args.family} if args.family else {})}
    parameters = {name: getattr(args, name) for name in SUB_MODEL_FLAGS if getattr(args, name)}
    if parameters:  # glmmTMB's ziformula / dispformula, brms's `zi ~ …`: sub-models (`parameters:`)
        keys["parameters"] = parameters
    spec = Spec.from_formula(args.formula, frame, **keys)
    translation = spec.translation
    header = ["stangen spec written by `stangen from-formula` from the lme4 formula",
              f"  {spec.formula}",
              "This long form is the spec: edit it freely (docs/spec-reference.md);",
              "`stangen render --as lme4 SPEC` gives the formula back."]
    header += [f"- {note}" for note in translation.notes]
    text = commented_yaml(spec.to_yaml(), translation.comments, header)
    if args.output:
        files.write_text(args.output, text)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(text)
    for note in translation.notes:
        print(f"note: {note}", file=sys.stderr)
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    from .compiler.program import build, stan_data_json

    program = build(args.spec, args.data, require_data=bool(args.data_json), missing=args.missing,
                    threads_per_chain=args.threads_per_chain)
    if args.as_ in ("lme4", "brms"):
        from .compiler.peers import brms_code, lme4_code
        text = lme4_code(program) if args.as_ == "lme4" else brms_code(program)
        if args.output:
            files.write_text(args.output, text)
            print(f"wrote {args.output}", file=sys.stderr)
        else:
            sys.stdout.write(text)
        return 0
    _print_dropped(program.data)
    for choice in program.parameterization:
        print(f"{choice.level}: {choice.parameterization} ({choice.reason})", file=sys.stderr)
    if args.output:
        files.write_text(args.output, program.code)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(program.code)
    if args.data_json:
        files.write_text(args.data_json, stan_data_json(program.stan_data))
        print(f"wrote {args.data_json}", file=sys.stderr)
    return 0


def _print_dropped(prepared) -> None:
    if prepared is not None and prepared.dropped:
        print(f"missing: drop — {prepared.dropped.note()} (rows {_row_list(prepared.dropped.rows)})",
              file=sys.stderr)


def _row_list(rows, shown: int = 8) -> str:
    return ", ".join(map(str, rows[:shown])) + (f" … ({len(rows)} rows)" if len(rows) > shown else "")


def _settings(args: argparse.Namespace) -> dict:
    names = ("chains", "parallel_chains", "warmup", "draws", "seed", "adapt_delta", "max_treedepth", "init",
             "threads_per_chain")
    out = {k: getattr(args, k) for k in names}
    out["quiet"] = args.quiet or None
    return out


def cmd_fit(args: argparse.Namespace) -> int:
    from .compiler.program import build, load_spec
    from .fitting import fit, program_defaults
    from .fitting.rundir import check_output
    from .run.backends import get_backend
    from .run.backends.base import check_threads
    from .run.settings import sampler_settings

    spec = load_spec(args.spec, args.data, args.missing)
    # the run's folder is checked before a minute of sampling, not after
    out = check_output(Path(args.out) if args.out else Path("runs") / (spec.name or Path(args.spec).stem), args.force)
    program = build(spec, args.data, require_data=True, prior_only=args.prior_only, generated=args.generated,
                    missing=args.missing, threads_per_chain=args.threads_per_chain)
    backend = get_backend(args.backend)
    settings = sampler_settings(spec, program_defaults(program), **_settings(args))
    check_threads(backend, settings)
    # the first line, before the progress display: what is fitted, to what, how
    dropped = f" ({program.data.dropped.note()})" if program.data.dropped else ""
    print(f"{spec.name}: {program.data.n} observations{dropped}; {backend.name} (Stan {backend.stan_version}), "
          f"{settings.chains} chains x {settings.draws} draws after {settings.warmup} warmup"
          f"{f', {settings.threads_per_chain} threads per chain' if settings.threads_per_chain > 1 else ''}"
          f"{', prior only' if args.prior_only else ''}", flush=True)
    # the data file given (else the spec's) is recorded in the run with its sha256
    result = fit(program, args.data, backend=args.backend, scheduler=args.scheduler, workers=args.workers,
                 **_settings(args))
    result.save(out, force=args.force)
    info = result.info
    compiled = f"compiled in {info['compile_seconds']:.0f} s" if info["compiled_now"] else "compiled program reused"
    if info.get("header_seconds"):
        compiled += f" (of which {info['header_seconds']:.0f} s precompiling Stan's header, once per machine)"
    if args.verbose and result.stan_messages:
        print("Stan's messages:\n" + "\n".join(f"  {line}" for line in result.stan_messages), file=sys.stderr)
    print(f"{compiled}; sampled in {info['sample_seconds']:.1f} s; Stan's messages in {out / 'stan.log'}")
    print(result.lme4())
    report = result.convergence()
    print(report.one_line())
    if not args.no_report:
        _write_report(result, out)
    print(f"run directory: {out}")
    return 2 if args.strict and not report.ok else 0


def _write_report(result, out: Path) -> tuple[Path, Path] | None:
    """report.html and report.md into the run directory; a report that fails does not fail the fit."""
    try:
        from .results.report import write_report_checked

        html, md, problems = write_report_checked(result, out)
    except Exception as exc:  # the run directory is saved already: warn, keep the fit's exit code
        print(f"warning: the report could not be written ({type(exc).__name__}: {exc}); "
              f"try again with `stangen report {out}`", file=sys.stderr)
        return None
    for problem in problems:
        print(f"warning: report: {problem}", file=sys.stderr)
    print(f"report: {html} (and {md.name})")
    return html, md


def cmd_install_cmdstan(args: argparse.Namespace) -> int:
    from .run.backends.cmdstan import install_cmdstan

    print("installing CmdStan with cmdstanpy (downloads from GitHub and builds; takes several minutes)…",
          file=sys.stderr)
    installed = install_cmdstan(version=args.version, folder=args.dir, quiet=args.quiet, cores=args.cores)
    if installed is None:
        print("error: CmdStan could not be installed (no connection to GitHub, or the build failed; see above).\n"
              "stangen does not need it: the embedded backend (PyStan, installed with stangen) compiles and\n"
              "samples with only a C++ compiler: stangen fit SPEC --backend pystan", file=sys.stderr)
        return 1
    print(f"CmdStan installed at {installed}; `--backend auto` now uses it")
    return 0


def cmd_check(args: argparse.Namespace) -> int:
    from .fitting import Fit

    report = Fit.load(args.run_dir).convergence()
    print(report.text())
    return 2 if args.strict and not report.ok else 0


def cmd_hypothesis(args: argparse.Namespace) -> int:
    from .fitting import Fit

    table = Fit.load(args.run_dir).hypothesis(args.hypothesis, prob=args.prob)
    print(table.to_string(float_format=lambda v: f"{v:.3f}"))
    return 0


def _load_run(args: argparse.Namespace):
    """The fit saved in args.run_dir, with args.data as its training data when given (moved since the fit:
    checked to be the file it was fitted on)."""
    from .fitting import Fit

    fit = Fit.load(args.run_dir)
    if args.data:
        fit.use_data(args.data)
    return fit


def cmd_means(args: argparse.Namespace) -> int:
    import pandas as pd

    from .results import effects

    at = {}
    for part in filter(None, (args.at or "").split(",")):
        name, sep, value = part.partition("=")
        try:
            at[name.strip()] = float(value)
        except ValueError:
            raise SpecError(Problem("--at", f"{part!r}: write name=number, several separated by commas "
                                            "(e.g. --at x=1,z=0.5)")) from None
    fit = _load_run(args)
    means, contrasts = fit.means(args.by, at=at, contrast=args.contrast, scale=args.scale, weights=args.weights,
                                 groups=args.groups)
    d = fit.description
    what = ("the linear predictor" if args.scale == "link" else f"P({d.outcome} = category)" if d.family.ordinal
            else _expected_outcome(d))
    groups = ("population level (group effects 0)" if args.groups == "population" else
              f"averaged over new groups (effects drawn from the fitted distribution, {effects.NEW_GROUPS} per "
              "cell and draw)")
    print(f"Marginal means of {what} by {args.by}: {groups}, other factors averaged "
          f"({args.weights} weights), numeric predictors at their means" + (f" or {args.at}" if at else "") +
          (f"; offset {d.offset} = 0" if d.offset else ""))
    print(means.to_string(float_format=lambda v: f"{v:.4g}"))
    if contrasts is not None:
        print(f"\nContrasts ({args.contrast}):")
        print(contrasts.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.output:
        table = means.reset_index().assign(kind="mean")
        if contrasts is not None:
            table = pd.concat([table, contrasts.reset_index().assign(kind="contrast")], ignore_index=True)
        files.write_text(Path(args.output), table.to_csv(index=False))
    return 0


def _expected_outcome(d) -> str:
    """What the effects commands average: the expected outcome, per trial for a binomial one."""
    return f"E[{d.outcome}]" + (" per trial" if d.trials else "")


def cmd_slopes(args: argparse.Namespace) -> int:
    fit = _load_run(args)
    table = fit.slopes(args.predictor, by=args.by)
    d = fit.description
    print(f"Average slope of {_expected_outcome(d)} in {args.predictor}, over the data's "
          "rows (each with its groups' effects):")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    return 0


def cmd_comparisons(args: argparse.Namespace) -> int:
    fit = _load_run(args)
    values = None if args.values is None else tuple(v.strip() for v in args.values.split(","))
    table = fit.comparisons(args.predictor, values=values, by=args.by)
    d = fit.description
    print(f"Average change in {_expected_outcome(d)} when {args.predictor} changes, over "
          "the data's rows (each with its groups' effects):")
    print(table.to_string(float_format=lambda v: f"{v:.4g}"))
    if args.output:
        files.write_text(Path(args.output), table.reset_index().to_csv(index=False))
    return 0


def cmd_report(args: argparse.Namespace) -> int:
    from .results.report import write_report_checked

    fit = _load_run(args)
    html, md, problems = write_report_checked(fit, args.run_dir)
    for problem in problems:
        print(f"warning: report: {problem}", file=sys.stderr)
    print(html)
    print(md)
    return 0


def cmd_compare(args: argparse.Namespace) -> int:
    import pandas as pd

    from .core.errors import Problem, UserError
    from .fitting import Fit
    from .results.compare import K_BAD, K_WARN, compare, pareto_k_advice
    from .workflows.kfold import compare_kfold, load_kfold

    if len(args.run_dirs) < 2:
        raise UserError(Problem("compare", "give at least two run directories to compare"))
    names = [Path(d).resolve().name for d in args.run_dirs]
    if len(set(names)) < len(names):  # same directory name in different places: use the paths as given
        names = [str(d) for d in args.run_dirs]
    kfolds = {name: r for name, d in zip(names, args.run_dirs) if (r := load_kfold(d)) is not None}
    if kfolds:
        if len(kfolds) < len(names):
            raise UserError(Problem("compare", "give either run directories (compared by PSIS-LOO: new observations "
                                               "in known groups) or kfold results (new groups), not both: they "
                                               "answer different questions"))
        table = compare_kfold(kfolds)
        first = next(iter(kfolds.values()))
        print(f"Leave-group-out comparison of {len(table)} models by {first.by} ({first.folds} folds), best first "
              "(elpd_kfold: log predictive density of new groups' outcomes, summed; higher is better)")
        with pd.option_context("display.width", 120, "display.max_columns", 20):
            print(table.round(1).to_string())
        for name, row in table.iloc[1:].iterrows():
            if row["elpd_diff"] < 2 * row["dse"]:
                print(f"{name}: {row['elpd_diff']:.1f} behind {table.index[0]}, less than 2 standard errors of the "
                      f"difference (2 x {row['dse']:.1f}): the data do not clearly prefer {table.index[0]}")
        return 0
    table = compare({name: Fit.load(d) for name, d in zip(names, args.run_dirs)})
    print(f"PSIS-LOO comparison of {len(table)} runs, best first (elpd_loo: expected log predictive density "
          "of a new observation, summed; higher is better; weight: stacking weight)")
    shown = table.rename(columns={"k_bad": f"k>{K_BAD}", "k_warn": f"{K_WARN}<k<={K_BAD}"})
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(shown.round({"elpd_loo": 1, "se": 1, "elpd_diff": 1, "dse": 1, "p_loo": 1, "weight": 3}).to_string())
    best = table.index[0]
    for name, row in table.iloc[1:].iterrows():
        if row["elpd_diff"] < 2 * row["dse"]:
            print(f"{name}: {row['elpd_diff']:.1f} behind {best}, less than 2 standard errors of the difference "
                  f"(2 x {row['dse']:.1f}): the data do not clearly prefer {best}")
    advice = pareto_k_advice(table)
    print("\n".join(advice) if advice else f"Pareto k <= {K_WARN} for every observation of every run: "
                                             "the LOO estimates are reliable")
    return 0


def cmd_simulate(args: argparse.Namespace) -> int:
    import yaml

    from .workflows.simulate import simulate

    if not args.params and not args.from_prior:
        raise SpecError(Problem("params", "give the true values (--params PARAMS.yaml) or --from-prior"))
    groups = _groups_arg(args.groups)
    data = False if args.no_data else args.data
    sim = simulate(args.spec, args.params, data=data, groups=groups, per_group=args.per_group,
                   seed=args.seed, from_prior=args.from_prior)
    out = Path(args.output)
    files.write_text(out, sim.data.to_csv(index=False))
    truth_path = out.with_suffix(".truth.yaml")
    files.write_text(truth_path, yaml.safe_dump(sim.truth, sort_keys=False))
    print(f"wrote {len(sim.data)} rows to {out}; true values in {truth_path}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    from .core.frames import read_csv
    from .fitting import Fit

    fit = Fit.load(args.run_dir)
    frame = read_csv(args.data)
    table = fit.predict(frame, kind=args.kind, new_groups=args.new_groups, seed=args.seed)
    out = Path(args.output)
    files.write_text(out, table.to_csv(index=False))
    what = {"response": "new outcomes (posterior predictive)", "mean": "expected outcome", "link": "linear predictor"}
    print(f"wrote {len(table)} predictions ({what[args.kind]}: mean, sd, 2.5/50/97.5% quantiles over "
          f"{fit.posterior.sizes['chain'] * fit.posterior.sizes['draw']} draws) to {out}")
    return 0


def cmd_effects(args: argparse.Namespace) -> int:
    fit = _load_run(args)
    stem = f"effects_{args.parameter}_{args.predictor}" if args.parameter else f"effects_{args.predictor}"
    out = Path(args.output) if args.output else Path(args.run_dir) / "plots" / f"{stem}.png"
    path = fit.plot_effects(args.predictor, out, by=args.by, groups=args.groups, level=args.level,
                            parameter=args.parameter)
    print(f"wrote {path}")
    return 0


def _groups_arg(items) -> dict[str, int]:
    groups = {}
    for item in items or []:
        name, _, count = item.partition("=")
        if not count.isdigit():
            raise SpecError(Problem("--groups", f"{item!r}: write level=NUMBER, e.g. school=30"))
        groups[name] = int(count)
    return groups


def cmd_sbc(args: argparse.Namespace) -> int:
    from .compiler.program import load_spec
    from .workflows.sbc import sbc

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.name}_sbc"
    result = sbc(spec, args.sims, data=False if args.no_data else args.data, groups=_groups_arg(args.groups),
                 per_group=args.per_group, seed=args.seed, out=out, **_many_fits_options(args))
    print(result.text())
    print(f"ranks, uniformity tests and plots: {out}")
    return 0 if result.ok else 2


def cmd_kfold(args: argparse.Namespace) -> int:
    from .compiler.program import load_spec
    from .workflows.kfold import kfold

    spec = load_spec(args.spec, args.data)
    out = Path(args.out) if args.out else Path("runs") / f"{spec.name}_kfold_{args.by}"
    result = kfold(spec, args.by, args.folds, data=args.data, seed=args.seed, out=out, **_many_fits_options(args))
    print(result.text())
    print(f"result: {out} (compare models with: stangen compare {out} OTHER_KFOLD_DIR)")
    return 0


def cmd_plan(args: argparse.Namespace) -> int:
    import pandas as pd

    from .compiler.program import load_spec
    from .workflows.plan import plan

    spec = load_spec(args.spec)
    groups: dict[str, list[int]] = {}
    for item in args.groups or []:
        name, _, counts = item.partition("=")
        numbers = [c.strip() for c in counts.split(",") if c.strip()]
        if not numbers or not all(c.isdigit() and int(c) > 1 for c in numbers):
            raise SpecError(Problem("--groups", f"{item!r}: write level=N1,N2,… with numbers above 1, e.g. school=20,40,80"))
        groups[name] = [int(c) for c in numbers]
    if not groups:
        raise SpecError(Problem("--groups", "give the numbers of groups to try, e.g. --groups school=20,40,80"))
    try:
        per_group = [int(c) for c in args.per_group.split(",") if c.strip()]
    except ValueError:
        raise SpecError(Problem("--per-group", f"{args.per_group!r}: write numbers separated by commas, e.g. 5,10,25")) from None
    out = Path(args.out) if args.out else Path("runs") / f"{spec.name}_plan"
    table = plan(spec, args.params, groups=groups, per_group=per_group, sims=args.sims, focus=args.focus,
                 seed=args.seed, out=out, **_many_fits_options(args))
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(table.round(3).to_string(index=False))
    print(f"table and plot: {out}/plan.csv, {out}/plan.png")
    return 0


def cmd_pooling(args: argparse.Namespace) -> int:
    from .compiler.program import load_spec
    from .workflows.pooling import compare_pooling, plot_pooling

    spec = load_spec(args.spec, args.data, args.missing)
    out = files.check_output_folder(args.out or Path("runs") / f"{spec.name}_pooling_{args.level}", "pooling folder",
                                    ("pooling.csv", "pooling_*.png"))
    table, fits = compare_pooling(spec, args.level, args.data, backend=args.backend, missing=args.missing,
                                  **_settings(args))
    files.write_text(out / "pooling.csv", table.to_csv(index=False))
    for coefficient in table.coefficient.unique():
        path = plot_pooling(table, coefficient, out / f"pooling_{coefficient}.png",
                            title=f"{spec.name}: {coefficient} by {args.level}")
        print(f"plot: {path}")
    shown = table.sort_values(["coefficient", "n"])
    print(shown.round(3).to_string(index=False, max_rows=args.rows))
    for name, fitted in fits.items():
        print(f"{name} pooling: {fitted.convergence().one_line()}")
    print(f"table: {out / 'pooling.csv'}")
    return 0


def _add_sampler_flags(p: argparse.ArgumentParser) -> None:
    g = p.add_argument_group("sampler (override the spec's `sampler:` block)")
    g.add_argument("--chains", type=int)
    g.add_argument("--parallel-chains", type=int, help="chains run at once (default: number of cores)")
    g.add_argument("--warmup", type=int)
    g.add_argument("--draws", type=int)
    g.add_argument("--seed", type=int)
    g.add_argument("--adapt-delta", type=float)
    g.add_argument("--max-treedepth", type=int)
    g.add_argument("--init", type=float, help="Stan's start: every initial value uniform in (-init, init), "
                   "unconstrained (default: the intercept, coefficients and sds near the working fit)")
    g.add_argument("--quiet", action="store_true", help="no progress display")
    g.add_argument("--threads-per-chain", type=int, metavar="N",
                   help="threads within each chain (CmdStan): the likelihood summed by reduce_sum over slices "
                        "of rows, a second program of the same model")


def _add_missing_flag(p: argparse.ArgumentParser) -> None:
    p.add_argument("--missing", choices=["error", "drop"],
                   help="rows with a missing value in a column the model uses: error (the default) or drop "
                        "(leave them out, as lme4's na.omit; counted in the output); overrides the spec's `missing:`")


def _add_many_fits_flags(p: argparse.ArgumentParser) -> None:
    """The flags of the commands that fan fits out on Dask (sbc, kfold, plan)."""
    p.add_argument("--scheduler", help="address of a running Dask scheduler (default: a local cluster)")
    _add_scheduler_timeout(p)
    p.add_argument("--workers", type=POSITIVE, help="local worker processes (default: the cores)")
    p.add_argument("--chains", type=int, help="chains per fit (default 2)")
    p.add_argument("--warmup", type=int, help="warmup per chain (default 500)")
    p.add_argument("--draws", type=int, help="draws per chain (default 500)")
    p.add_argument("--backend", type=_backend_name, default="auto", help=BACKEND_HELP)


BACKEND_HELP = "auto (the default: CmdStan if installed, else the embedded backend), or a backend's name"


def _backend_name(text: str) -> str:
    """An argparse type: a registered backend's name or alias, or auto (the registry is the one list)."""
    from .run.backends import BACKENDS
    names = {"auto": "auto"} | {alias: cls.name for cls in BACKENDS for alias in (cls.name, *cls.aliases)}
    if text.strip().lower() not in names:
        raise argparse.ArgumentTypeError(f"{text!r}: choose auto or " + ", ".join(
            f"{cls.name} ({cls.summary})" for cls in BACKENDS))
    return names[text.strip().lower()]


def _seconds(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number of seconds") from None
    if not 0 < value < 86_400:
        raise argparse.ArgumentTypeError(f"{text} is not allowed: more than 0 and less than a day")
    return value


def _add_scheduler_timeout(p: argparse.ArgumentParser) -> None:
    p.add_argument("--scheduler-timeout", type=_seconds, metavar="SECONDS",
                   help="how long to try reaching the --scheduler before giving up (default 30; Dask's "
                        "distributed.comm.timeouts.connect)")


def _many_fits_options(args: argparse.Namespace) -> dict:
    """Dask and sampler options of sbc, kfold and plan: the scheduler, workers, backend and the sampler
    settings given on the command line."""
    from .run.backends import get_backend
    settings = {k: v for k, v in (("chains", args.chains), ("warmup", args.warmup), ("draws", args.draws))
                if v is not None}
    return {"scheduler": args.scheduler, "workers": args.workers, "backend": get_backend(args.backend).name,
            **settings}


class _Parser(argparse.ArgumentParser):
    """argparse, with a usage mistake a user error like any other (exit 1; argparse's own code, 2, is the
    documented code of a sampling failure)."""

    def error(self, message: str):
        self.print_usage(sys.stderr)
        self.exit(1, f"error: {message}\n")


def _count(least: int):
    """An argparse type: a whole number of at least `least` (a count of sims, folds, rows, workers, …)."""
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if value < least:
            raise argparse.ArgumentTypeError(f"{text} is not allowed: at least {least}")
        return value
    parse.__name__ = "count"
    return parse


POSITIVE, NON_NEGATIVE = _count(1), _count(0)


def parser() -> argparse.ArgumentParser:
    top = _Parser(prog="stangen", description="Multilevel model specs → Stan programs → fits.")
    top.add_argument("--version", action="version", version=f"stangen {VERSION}")
    sub = top.add_subparsers(dest="command", required=True, parser_class=_Parser)
    p = sub.add_parser("validate", help="check a spec (and its data); print a one-line description")
    p.add_argument("spec")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    _add_missing_flag(p)
    p.set_defaults(run=cmd_validate)
    p = sub.add_parser("from-formula", help="an lme4 formula → a commented long-form spec (YAML)")
    p.add_argument("formula", help='e.g. "lang_post ~ iq_verb + ave(iq_verb, school) + (iq_verb | school)"')
    p.add_argument("--data", required=True,
                   help="CSV file: checks the columns and places predictors constant within a level's groups "
                        "at that level")
    p.add_argument("--family", help="the outcome's family (default gaussian; binomial for cbind(s, n - s))")
    for name, meaning in SUB_MODEL_FLAGS.items():
        p.add_argument(f"--{name}", metavar="FORMULA", help=f'a sub-model for {meaning}, e.g. "~ x + (1 | g)"')
    p.add_argument("-o", "--output", help="write the spec here instead of standard output")
    p.set_defaults(run=cmd_from_formula)
    p = sub.add_parser("render", help="print the Stan program of a spec")
    p.add_argument("spec")
    p.add_argument("-o", "--output", help="write the program here instead of standard output")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    _add_missing_flag(p)
    p.add_argument("--data-json", help="also write the Stan data as JSON here")
    p.add_argument("--as", dest="as_", choices=("stan", "lme4", "brms"), default="stan",
                   help="stan: the program (default); lme4, brms: the same model as R code for those packages")
    p.add_argument("--threads-per-chain", type=int, metavar="N",
                   help="above 1: the threaded program (its likelihood summed by reduce_sum over slices of rows)")
    p.set_defaults(run=cmd_render)
    p = sub.add_parser("fit", help="compile and sample a spec; write a run directory")
    p.add_argument("spec")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    _add_missing_flag(p)
    p.add_argument("--out", help="run directory (default: runs/<spec name>); a refit replaces it whole, once the new "
                                 "run is complete")
    p.add_argument("--force", action="store_true",
                   help="write the run even into a folder that holds other files (they are replaced with it)")
    p.add_argument("--backend", type=_backend_name, default="auto", help=BACKEND_HELP)
    p.add_argument("--strict", action="store_true", help="exit 2 when the convergence checks fail")
    p.add_argument("--prior-only", action="store_true", help="sample from the prior (leave out the likelihood)")
    p.add_argument("--generated", metavar="y_rep,log_lik",
                   help="also compute, comma-separated: y_rep (draws of the outcome: posterior predictive), "
                        "log_lik (pointwise log-likelihood, for `stangen compare`); compiles its own program")
    p.add_argument("--no-report", action="store_true",
                   help="do not write report.html / report.md (and plots/) into the run directory")
    p.add_argument("--verbose", action="store_true",
                   help="also print Stan's own messages (always written to stan.log in the run directory)")
    p.add_argument("--scheduler", help="run each chain as a task on the Dask cluster at this address "
                                       "(tcp://host:port); the same seed gives the same draws as a local run")
    _add_scheduler_timeout(p)
    p.add_argument("--workers", type=POSITIVE, help="run each chain as a task on a local Dask cluster of this many "
                                               "worker processes")
    _add_sampler_flags(p)
    p.set_defaults(run=cmd_fit)
    p = sub.add_parser("pooling", help="complete vs no vs partial pooling of one level: table and plot")
    p.add_argument("spec")
    p.add_argument("--level", required=True, help="the level to compare")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    _add_missing_flag(p)
    p.add_argument("--out", help="folder for pooling.csv and the plots (default: runs/<spec>_pooling_<level>)")
    p.add_argument("--backend", type=_backend_name, default="auto", help=BACKEND_HELP)
    p.add_argument("--rows", type=POSITIVE, default=40, help="rows of the table to print")
    _add_sampler_flags(p)
    p.set_defaults(run=cmd_pooling)
    p = sub.add_parser("simulate", help="fake data from the spec's model with known true values")
    p.add_argument("spec")
    p.add_argument("--params", help="YAML of true values (see stangen/workflows/simulate.py)")
    p.add_argument("--from-prior", action="store_true", help="draw the true values from the priors")
    p.add_argument("--data", help="take groups and predictors from this CSV (default: the spec's data, if any)")
    p.add_argument("--no-data", action="store_true", help="simulate groups and predictors even if the spec names data")
    p.add_argument("--groups", nargs="*", metavar="LEVEL=J", help="groups per level (nested: per parent group)")
    p.add_argument("--per-group", type=POSITIVE, default=10, help="rows per cell of the lowest grouping")
    p.add_argument("--seed", type=NON_NEGATIVE, default=1)
    p.add_argument("-o", "--output", required=True, help="CSV to write; true values go beside it")
    p.set_defaults(run=cmd_simulate)
    p = sub.add_parser("predict", help="predictions for new data from a run directory")
    p.add_argument("run_dir")
    p.add_argument("--data", required=True, help="CSV of the rows to predict (the outcome column is not needed)")
    p.add_argument("--kind", choices=("response", "mean", "link"), default="response",
                   help="response: new outcomes; mean: the expected outcome; link: the linear predictor")
    p.add_argument("--new-groups", choices=("error", "sample", "population"), default="error",
                   help="groups the model was not fitted on: an error (default), effects drawn from the fitted "
                        "distribution, or effects at 0")
    p.add_argument("--seed", type=NON_NEGATIVE, default=1)
    p.add_argument("-o", "--output", required=True, help="CSV to write")
    p.set_defaults(run=cmd_predict)
    p = sub.add_parser("effects", help="plot the expected outcome against a predictor (conditional effects)")
    p.add_argument("run_dir")
    p.add_argument("--predictor", required=True, help="a numeric level-1 predictor")
    p.add_argument("--by", help="a categorical level-1 predictor: one line per category")
    p.add_argument("--groups", type=NON_NEGATIVE, default=0, help="also draw the fitted lines of this many sampled groups")
    p.add_argument("--level", help="the level whose groups --groups draws (default: where the slope varies)")
    p.add_argument("--parameter", help="plot this family parameter (one with a sub-model, `parameters:`, e.g. "
                                       "sigma or zi) instead of the expected outcome")
    p.add_argument("-o", "--output", help="PNG to write (default: RUN_DIR/plots/effects_PREDICTOR.png)")
    p.add_argument("--data", help="the training data's CSV, when it moved since the fit (checked against the run's "
                                  "record)")
    p.set_defaults(run=cmd_effects)
    p = sub.add_parser("sbc", help="simulation-based calibration: is the program (with its priors) right?")
    p.add_argument("spec")
    p.add_argument("--sims", type=POSITIVE, default=200, help="simulations (fits)")
    p.add_argument("--data", help="CSV whose groups and predictors are the design (default: the spec's data)")
    p.add_argument("--no-data", action="store_true", help="simulate the design (--groups, --per-group)")
    p.add_argument("--groups", action="append", metavar="LEVEL=N", help="groups of a level (simulated design)")
    p.add_argument("--per-group", type=POSITIVE, default=10, help="rows per cell of the lowest grouping")
    p.add_argument("--seed", type=NON_NEGATIVE, default=1, help="master seed: every simulation and fit derives from it")
    _add_many_fits_flags(p)
    p.add_argument("--out", help="output folder (default: runs/NAME_sbc); a rerun continues its fits.jsonl")
    p.set_defaults(run=cmd_sbc)
    p = sub.add_parser("kfold", help="leave-group-out cross-validation: how well new groups are predicted")
    p.add_argument("spec")
    p.add_argument("--by", required=True, help="the level whose groups are left out")
    p.add_argument("--folds", type=_count(2), default=10,
                   help="folds: the groups are split into this many parts (at least 2)")
    p.add_argument("--data", help="CSV (default: the spec's data)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=1, help="master seed: the folds and every fit derive from it")
    _add_many_fits_flags(p)
    p.add_argument("--out", help="output folder (default: runs/NAME_kfold_BY)")
    p.set_defaults(run=cmd_kfold)
    p = sub.add_parser("plan", help="study planning: precision and power of designs, from simulated fits")
    p.add_argument("spec")
    p.add_argument("--params", required=True, help="true values (YAML, as for stangen simulate)")
    p.add_argument("--groups", action="append", metavar="LEVEL=N1,N2,…", help="numbers of groups to try")
    p.add_argument("--per-group", default="10", help="rows per group to try, e.g. 5,10,25")
    p.add_argument("--sims", type=POSITIVE, default=50, help="simulated data sets per design")
    p.add_argument("--focus", action="append", help="a parameter to report (display name; repeatable)")
    p.add_argument("--seed", type=NON_NEGATIVE, default=1)
    _add_many_fits_flags(p)
    p.add_argument("--out", help="output folder (default: runs/NAME_plan)")
    p.set_defaults(run=cmd_plan)
    p = sub.add_parser("check", help="convergence checks of a run directory, with advice")
    p.add_argument("run_dir")
    p.add_argument("--strict", action="store_true", help="exit 2 when a check fails")
    p.set_defaults(run=cmd_check)
    p = sub.add_parser("hypothesis", help="brms's hypothesis(): 'Days > 5', 'a - b > 0' over a run's "
                                          "population-level parameters")
    p.add_argument("run_dir")
    p.add_argument("hypothesis", help="left (>, <, >=, <=, =) right; several separated by ';'; a name with "
                                      "spaces or ':' in backticks")
    p.add_argument("--prob", type=float, default=0.95, help="the interval's probability (default 0.95)")
    p.set_defaults(run=cmd_hypothesis)
    p = sub.add_parser("means", help="estimated marginal means per category and their contrasts (emmeans)")
    p.add_argument("run_dir")
    p.add_argument("--by", required=True, help="a categorical level-1 predictor")
    p.add_argument("--at", help="numeric predictors' values instead of their means: x=1,z=0.5")
    p.add_argument("--contrast", choices=("pairwise", "revpairwise", "trt.vs.ctrl"))
    p.add_argument("--scale", choices=("response", "link"), default="response")
    p.add_argument("--weights", choices=("equal", "proportional"), default="equal",
                   help="how the other factors' combinations are averaged (emmeans' default: equal)")
    p.add_argument("--groups", choices=("population", "sample"), default="population",
                   help="group effects at 0 (emmeans' re.form = NA), or averaged over new groups drawn from the "
                        "fitted distribution")
    p.add_argument("--data", help="the training data's CSV, when it moved since the fit")
    p.add_argument("-o", "--output", help="also write the tables as CSV here")
    p.set_defaults(run=cmd_means)
    p = sub.add_parser("slopes", help="average slope of the expected outcome in a predictor (marginaleffects' "
                                      "avg_slopes)")
    p.add_argument("run_dir")
    p.add_argument("--predictor", required=True, help="a numeric level-1 predictor")
    p.add_argument("--by", help="a categorical level-1 predictor: one slope per category")
    p.add_argument("--data", help="the training data's CSV, when it moved since the fit")
    p.set_defaults(run=cmd_slopes)
    p = sub.add_parser("comparisons", help="average change of the expected outcome when a predictor changes "
                                           "(marginaleffects' avg_comparisons)")
    p.add_argument("run_dir")
    p.add_argument("--predictor", required=True, help="a level-1 predictor, numeric or categorical")
    p.add_argument("--values", help="from,to (default: +1 for a number; each category against the reference)")
    p.add_argument("--by", help="a categorical level-1 predictor: one comparison per category")
    p.add_argument("--data", help="the training data's CSV, when it moved since the fit")
    p.add_argument("-o", "--output", help="also write the table as CSV here")
    p.set_defaults(run=cmd_comparisons)
    p = sub.add_parser("report", help="write report.html (self-contained) and report.md of a run directory")
    p.add_argument("run_dir")
    p.add_argument("--data", help="the training data's CSV, when it moved since the fit (checked against the run's "
                                  "record)")
    p.set_defaults(run=cmd_report)
    p = sub.add_parser("compare", help="rank runs (fitted with --generated log_lik) by PSIS-LOO, or kfold results")
    p.add_argument("run_dirs", nargs="+", metavar="RUN_DIR",
                   help="run directories fitted to the same data, or `stangen kfold` output folders")
    p.set_defaults(run=cmd_compare)
    p = sub.add_parser("install-cmdstan", help="install CmdStan via cmdstanpy (needs internet; optional)")
    p.add_argument("--version", help="CmdStan version (default: latest)")
    p.add_argument("--dir", help="install folder (default: cmdstanpy's, ~/.cmdstan)")
    p.add_argument("--cores", type=POSITIVE, default=1, help="cores for the build")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=cmd_install_cmdstan)
    return top


def main(argv: list[str] | None = None) -> int:
    try:
        args = parser().parse_args(argv)
        if getattr(args, "scheduler_timeout", None):
            import dask
            dask.config.set({"distributed.comm.timeouts.connect": f"{args.scheduler_timeout}s"})
        return args.run(args)
    except StangenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except OSError as exc:
        if exc.errno not in files.PLACE_ERRORS or not exc.filename:
            return _internal_error()
        # a file or folder the user named (or the disk it is on) that cannot be read or written
        print(f"error: {exc.filename}: {exc.strerror}", file=sys.stderr)
        return 1
    except Exception:  # a bug in stangen, not the user's mistake
        return _internal_error()


def _internal_error() -> int:
    traceback.print_exc()
    print("internal error: this is a bug in stangen; please report it with the spec and the output above",
          file=sys.stderr)
    return 3


if __name__ == "__main__":
    sys.exit(main())
