"""First compile of example specs' programs: each in a fresh, empty compile cache, on each backend.

    python benchmarks/first_compile.py [NAME ...] [--backends pystan,pystan-before,cmdstan] [--repeat 1]
    python benchmarks/first_compile.py sleepstudy --whole [--repeat 2]

For every spec (default: sleepstudy, language, pastes) and backend, it renders the program as `stangen fit`
would (data-driven parameterization included), then times `backend.compile(program)` in a temporary compile
cache (STANGEN_CACHE) from which every compiled model is removed before each timing, and with httpstan's own
cache empty, so nothing of an earlier model is reused. What a machine builds once for all models (the
embedded backend's precompiled header, when it has one; CmdStan's is part of its installation) is built by
a first, separately reported compile, and kept. Specs and backends alternate (paired), so a slow moment of
the machine hits both. `pystan-before` is the embedded backend as it built before its precompiled header
(STANGEN_NO_PCH=1: httpstan's own flags, -g included). CmdStan needs $CMDSTAN (see ../shared/cmdstan-offline/).
`--whole` times, per spec, what a new user compares instead: the whole `stangen fit` command of a structure new
to the cache, stangen's compile alone, and plain PyStan's `stan.build` of the same program text (its own
flags and an empty httpstan cache). Prints a Markdown table.
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

CHILD = r"""
import json, sys, time
from stangen.compiler.program import build
from stangen.run.backends import get_backend
spec, backend = sys.argv[1], sys.argv[2]
program = build(spec)
b = get_backend(backend)
start = time.perf_counter()
model = b.compile(program.code)
print(json.dumps({"seconds": time.perf_counter() - start, "compiled_now": model.compiled_now}))
"""


PLAIN_PYSTAN = r"""
import json, sys, time
from stangen.compiler.program import build, stan_data_json
program = build(sys.argv[1])
code, data = program.code, json.loads(stan_data_json(program.stan_data))
start = time.perf_counter()
import stan  # plain PyStan 3 on httpstan: its own compile flags and cache (XDG_CACHE_HOME), no stangen in between
stan.build(code, data=data, random_seed=1)
print(json.dumps({"seconds": time.perf_counter() - start}))
"""


def run_child(command: list[str], xdg: Path, what: str, **env: str) -> tuple[subprocess.CompletedProcess, float]:
    """Run one timed child process with an empty httpstan cache (XDG_CACHE_HOME, also its working directory, where
    httpstan leaves its build/ files): its result and wall seconds; stop the benchmark, naming `what`, if it
    fails."""
    shutil.rmtree(xdg, ignore_errors=True)
    xdg.mkdir()
    start = time.perf_counter()
    done = subprocess.run(command, capture_output=True, text=True, cwd=xdg, timeout=1800,
                          env={**os.environ, "XDG_CACHE_HOME": str(xdg), **env})
    seconds = time.perf_counter() - start
    if done.returncode != 0:
        raise SystemExit(f"{what} failed:\n{done.stderr[-3000:]}")
    return done, seconds


def child_result(done: subprocess.CompletedProcess) -> dict:
    """The JSON line a timing child prints last."""
    return json.loads(done.stdout.strip().splitlines()[-1])


def time_whole_fit(spec: Path, cache: Path, xdg: Path, out: Path) -> float:
    """`stangen fit` of a structure new to the compile cache (its precompiled header kept), as a user runs it:
    from the command's start (Python and imports included) to its end (a short sampling run, the run saved)."""
    forget_models(cache)
    shutil.rmtree(out, ignore_errors=True)
    _, seconds = run_child([sys.executable, "-m", "stangen.cli", "fit", str(spec), "--quiet", "--backend", "pystan",
                            "--warmup", "200", "--draws", "200", "--out", str(out)],
                           xdg, f"stangen fit {spec.stem}", STANGEN_CACHE=str(cache))
    return seconds


def time_plain_pystan(spec: Path, xdg: Path) -> float:
    """Plain PyStan's `stan.build` of the same program text with httpstan's cache empty: its compile as a user
    of PyStan meets it (the `import stan` included, rendering the program not)."""
    done, _ = run_child([sys.executable, "-c", PLAIN_PYSTAN, str(spec)], xdg, f"plain PyStan build of {spec.stem}")
    return float(child_result(done)["seconds"])


def forget_models(cache: Path) -> None:
    """Remove every compiled model (entries are named by a 64-hex-digit key), keep one-off artifacts."""
    for entry in cache.glob("*/*/*"):
        if entry.is_dir() and len(entry.name) == 64 and all(ch in "0123456789abcdef" for ch in entry.name):
            shutil.rmtree(entry, ignore_errors=True)


def time_compile(spec: Path, backend: str, cache: Path, xdg: Path) -> float:
    forget_models(cache)
    env = {"STANGEN_CACHE": str(cache)}
    if backend == "pystan-before":
        backend, env["STANGEN_NO_PCH"] = "pystan", "1"
    done, _ = run_child([sys.executable, "-c", CHILD, str(spec), backend], xdg, f"{spec.stem} on {backend}", **env)
    result = child_result(done)
    assert result["compiled_now"], "the program came from a cache: the measurement is not a first compile"
    return float(result["seconds"])


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("names", nargs="*", default=["sleepstudy", "language", "pastes"])
    ap.add_argument("--backends", default="pystan,pystan-before,cmdstan")
    ap.add_argument("--repeat", type=int, default=1)
    ap.add_argument("--whole", action="store_true",
                    help="per spec: the whole `stangen fit` command of a new structure, stangen's compile alone, "
                         "and plain PyStan's stan.build of the same program (the pair a new user compares)")
    args = ap.parse_args()
    backends = [b for b in args.backends.split(",") if b]
    if "cmdstan" in backends and not os.environ.get("CMDSTAN"):
        print("CMDSTAN is not set: leaving out the cmdstan backend", file=sys.stderr)
        backends.remove("cmdstan")
    rows = []
    with tempfile.TemporaryDirectory(prefix="stangen-first-compile-") as tmp:
        cache, xdg = Path(tmp) / "cache", Path(tmp) / "xdg"
        cache.mkdir()
        if "pystan" in backends:  # the one-off per-machine build first, timed apart
            seconds = time_compile(ROOT / "specs" / "sleepstudy.yaml", "pystan", cache, xdg)
            rows.append(("sleepstudy, the machine's first model (one-off builds included)", "pystan", seconds))
        for r in range(args.repeat if args.whole else 0):
            for name in args.names:
                spec = ROOT / "specs" / f"{name}.yaml"
                whole = time_whole_fit(spec, cache, xdg, Path(tmp) / "run")
                for label, seconds in (
                        ("stangen fit, whole command (200 + 200 draws)", whole),
                        ("stangen compile alone", time_compile(spec, "pystan", cache, xdg)),
                        ("plain PyStan stan.build", time_plain_pystan(spec, xdg))):
                    rows.append((name, label, seconds))
                    print(f"{name} {label}: {seconds:.1f} s", file=sys.stderr, flush=True)
        for r in range(0 if args.whole else args.repeat):
            for name in args.names:
                for backend in backends:
                    seconds = time_compile(ROOT / "specs" / f"{name}.yaml", backend, cache, xdg)
                    rows.append((name, backend, seconds))
                    print(f"{name} {backend}: {seconds:.1f} s", file=sys.stderr, flush=True)
    print("| spec | backend | first compile s |\n|---|---|---|")
    for name, backend, seconds in rows:
        print(f"| {name} | {backend} | {seconds:.1f} |")


if __name__ == "__main__":
    main()
