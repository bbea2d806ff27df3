"""The `stangen` command: validate | render | fit | install-cmdstan.

Exit codes: 0 ok; 1 user error (spec or data); 2 sampling or convergence failure; 3 internal error.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

import pandas as pd

from .errors import StangenError
from .program import build, load_spec, stan_data_json


def write_atomic(path: str | Path, text: str) -> None:
    """Write through a temporary file in the same folder, then rename: never a half-written file."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def cmd_validate(args: argparse.Namespace) -> int:
    spec = load_spec(args.spec)
    program = build(spec, args.data) if (args.data or spec.data) else None
    detail = f"; {program.data.n} rows" if program and program.data else ""
    if program and program.data:
        detail += "".join(f", {len(v)} {k} groups" for k, v in program.data.labels.items())
    print(f"{args.spec}: ok — {spec.describe()}{detail}")
    return 0


def cmd_render(args: argparse.Namespace) -> int:
    program = build(args.spec, args.data, require_data=bool(args.data_json))
    if args.output:
        write_atomic(args.output, program.code)
        print(f"wrote {args.output}", file=sys.stderr)
    else:
        sys.stdout.write(program.code)
    if args.data_json:
        write_atomic(args.data_json, stan_data_json(program.stan_data))
        print(f"wrote {args.data_json}", file=sys.stderr)
    return 0


def _settings(args: argparse.Namespace) -> dict:
    names = ("chains", "parallel_chains", "warmup", "draws", "seed", "adapt_delta", "max_treedepth", "init")
    out = {k: getattr(args, k) for k in names}
    out["quiet"] = args.quiet or None
    return out


def cmd_fit(args: argparse.Namespace) -> int:
    from .fitting import fit

    spec = load_spec(args.spec)
    out = Path(args.out) if args.out else Path("runs") / (spec.name or Path(args.spec).stem)
    result = fit(spec, args.data, backend=args.backend, prior_only=args.prior_only, **_settings(args))
    result.save(out)
    info = result.info
    compiled = f"compiled in {info['compile_seconds']:.0f} s" if info["compiled_now"] else "compiled program reused"
    print(f"{spec.name}: {result.program.data.n} observations; {info['backend']} (Stan {info['stan_version']}); "
          f"{compiled}; sampled in {info['sample_seconds']:.1f} s")
    table = result.summary()
    with pd.option_context("display.width", 120, "display.max_columns", 20):
        print(table.round(3).to_string())
    print(result.verdict())
    print(f"run directory: {out}")
    return 0 if result.convergence()["ok"] or not args.strict else 2


def cmd_install_cmdstan(args: argparse.Namespace) -> int:
    import contextlib
    import io

    import cmdstanpy

    print("installing CmdStan with cmdstanpy (downloads from GitHub and builds; takes several minutes)…",
          file=sys.stderr)
    captured = io.StringIO()
    with contextlib.redirect_stdout(captured) if args.quiet else contextlib.nullcontext():
        ok = cmdstanpy.install_cmdstan(version=args.version, dir=args.dir, progress=not args.quiet,
                                       cores=args.cores)
    if not ok:
        print("error: CmdStan could not be installed (no connection to GitHub, or the build failed; see above).\n"
              "stangen does not need it: the embedded backend (PyStan, installed with stangen) compiles and\n"
              "samples with only a C++ compiler: stangen fit SPEC --backend pystan", file=sys.stderr)
        return 1
    print(f"CmdStan installed at {cmdstanpy.cmdstan_path()}; `--backend auto` now uses it")
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
    g.add_argument("--init", type=float, help="initial values drawn uniformly from (-init, init), unconstrained")
    g.add_argument("--quiet", action="store_true", help="no progress display")


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="stangen", description="Multilevel model specs → Stan programs → fits.")
    sub = top.add_subparsers(dest="command", required=True)
    p = sub.add_parser("validate", help="check a spec (and its data); print a one-line description")
    p.add_argument("spec")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    p.set_defaults(run=cmd_validate)
    p = sub.add_parser("render", help="print the Stan program of a spec")
    p.add_argument("spec")
    p.add_argument("-o", "--output", help="write the program here instead of standard output")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    p.add_argument("--data-json", help="also write the Stan data as JSON here")
    p.set_defaults(run=cmd_render)
    p = sub.add_parser("fit", help="compile and sample a spec; write a run directory")
    p.add_argument("spec")
    p.add_argument("--data", help="CSV file (default: the spec's `data:`)")
    p.add_argument("--out", help="run directory (default: runs/<spec name>)")
    p.add_argument("--backend", default="auto", choices=["auto", "pystan", "cmdstan"],
                   help="auto: CmdStan if installed, else the embedded PyStan")
    p.add_argument("--strict", action="store_true", help="exit 2 when the convergence checks fail")
    p.add_argument("--prior-only", action="store_true", help="sample from the prior (leave out the likelihood)")
    _add_sampler_flags(p)
    p.set_defaults(run=cmd_fit)
    p = sub.add_parser("install-cmdstan", help="install CmdStan via cmdstanpy (needs internet; optional)")
    p.add_argument("--version", help="CmdStan version (default: latest)")
    p.add_argument("--dir", help="install folder (default: cmdstanpy's, ~/.cmdstan)")
    p.add_argument("--cores", type=int, default=1, help="cores for the build")
    p.add_argument("--quiet", action="store_true")
    p.set_defaults(run=cmd_install_cmdstan)
    return top


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        return args.run(args)
    except StangenError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
    except Exception:  # a bug in stangen, not the user's mistake
        traceback.print_exc()
        print("internal error: this is a bug in stangen; please report it with the spec and the output above",
              file=sys.stderr)
        return 3


if __name__ == "__main__":
    sys.exit(main())
