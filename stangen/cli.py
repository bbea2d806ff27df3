"""The `stangen` command: validate | render (more stages come as they are built).

Exit codes: 0 ok; 1 user error (spec or data); 2 sampling or convergence failure; 3 internal error.
"""
from __future__ import annotations

import argparse
import os
import sys
import tempfile
import traceback
from pathlib import Path

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
