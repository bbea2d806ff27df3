"""A fit's run directory: what `Fit.save` writes and `Fit.load` reads back.

    spec.yaml  model.stan  data.json  run.json  posterior.nc  summary.csv  summary.md  convergence.json
    stan.log  COMPLETE

The whole folder is written atomically: into a hidden sibling (.NAME.staging-PID-…), which replaces the run
only when every file is there, COMPLETE last (stangen.core.files.write_folder). Until then a previous run at
that path stays whole and readable; a full disk or a killed save leaves it so. A second process saving to the
same path at the same time is refused. run.json records each file's sha256, and reading a run verifies them,
and checks that its program is the one this stangen renders from the run's spec and choices. The report
(report.html, report.md, plots/) is written into the run afterwards (`stangen report` rewrites it).
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import arviz as az
import numpy as np

from ..compiler import codegen
from ..compiler.encoding import DroppedRows
from ..compiler.model import describe
from ..compiler.parameterization import Choice, describe_options
from ..compiler.program import StanProgram, stan_data_json, threaded
from ..compiler.standata import PreparedData
from ..core import files
from ..core.errors import Problem, UserError
from ..results import tables
from ..spec import Spec

if TYPE_CHECKING:
    from .fit import Fit

COMPLETE_MARKER = "COMPLETE"
STAN_LOG = "stan.log"  # Stan's messages during sampling, in the run directory


# what a run directory holds besides the files write_run writes: the report, its plots, the claim while writing
REPORT_FILES = ("report.html", "report.md", "plots")
CHECKED_FILES = ("spec.yaml", "model.stan", "data.json", "summary.csv", "summary.md", "convergence.json",
                 "posterior.nc", STAN_LOG)  # their sha256 in run.json; Fit.load verifies them
RUN_FILES = (*CHECKED_FILES, "run.json", COMPLETE_MARKER)


def is_run(folder: Path) -> bool:
    """A folder that holds a stangen run (complete or not)."""
    return (folder / "run.json").is_file() or (folder / COMPLETE_MARKER).is_file()


def check_output(out: str | Path, force: bool = False) -> Path:
    """The folder a run may be written to, or a UserError saying why not: never the file system's root, the
    home folder or the working folder (nor a folder above them); not an existing file; not a folder holding
    anything but a stangen run (its own files, report and plots), unless `force`."""
    out = files.refuse_protected(out, "run")
    where = out.expanduser().resolve()
    shown = "" if force else files.foreign_files(where, (*RUN_FILES, *REPORT_FILES))
    if shown:
        what = "holds files a stangen run does not write" if is_run(where) else "exists and is not a stangen run"
        raise UserError(Problem(str(out), f"{what} ({shown}); a run replaces its whole folder: choose another "
                                          "folder, or pass --force (force=True) to replace it anyway"))
    return out


def write_run(fit: "Fit", out: str | Path, force: bool = False) -> Path:
    """Write a run directory (see the module's text): into a hidden sibling folder, which replaces `out` only
    when every file is written (stangen.core.files.write_folder)."""
    out = check_output(out, force)
    prepared = fit.program.data
    full = fit.summary(group_effects=True)
    convergence = fit.convergence().to_dict()

    def fill(folder: Path) -> None:
        run = {"info": fit.info, "labels": prepared.labels, "columns": prepared.columns,
               "group_columns": [[lv, p, names] for (lv, p), names in prepared.group_columns.items()],
               "priors": prepared.priors, "categorical": sorted(fit.description.categorical),
               # the data rows the fit used: all but these (missing: drop)
               "dropped": prepared.dropped.to_dict() if prepared.dropped else None,
               "sigma_labels": prepared.sigma_labels, "outcome_categories": prepared.outcome_categories,
               "categories": prepared.categories}
        (folder / "spec.yaml").write_text(fit.spec.to_yaml(), encoding="utf-8")
        (folder / "model.stan").write_text(fit.program.code, encoding="utf-8")
        (folder / "data.json").write_text(stan_data_json(prepared.stan_data), encoding="utf-8")
        (folder / "summary.csv").write_text(full.to_csv(), encoding="utf-8")
        (folder / "summary.md").write_text(tables.to_markdown(full), encoding="utf-8")
        (folder / "convergence.json").write_text(json.dumps(convergence, indent=1, default=_json_default),
                                                 encoding="utf-8")
        # uncompressed: draws are near-random doubles, zlib saved 5% of InstEval's 264 MB and took 7-9 s of 8
        fit.idata.to_netcdf(str(folder / "posterior.nc"), engine="h5netcdf", compress=False)
        (folder / STAN_LOG).write_text("".join(f"{line}\n" for line in fit.stan_messages), encoding="utf-8")
        run["sha256"] = {name: files.file_sha256(folder / name) for name in CHECKED_FILES}
        (folder / "run.json").write_text(json.dumps(run, indent=1, default=_json_default), encoding="utf-8")
        # the marker, written last, holds run.json's own sha256 (run.json holds every other file's)
        (folder / COMPLETE_MARKER).write_text(f"{time.strftime('%Y-%m-%dT%H:%M:%S')}\nrun.json sha256 "
                                              f"{files.file_sha256(folder / 'run.json')}\n", encoding="utf-8")

    return files.write_folder(out, fill)


def _verify(run_dir: Path, sums: dict[str, str]) -> None:
    """Each file recorded in run.json is there and unchanged (a run written before checksums has none)."""
    damaged = [name for name, expected in sums.items()
               if not (run_dir / name).is_file() or files.file_sha256(run_dir / name) != expected]
    if damaged:
        raise UserError([Problem(str(run_dir / name), "is missing or not the file this run wrote (its sha256 differs "
                                                      "from run.json's): the run was damaged or files were swapped; "
                                                      "fit again") for name in damaged])


def _run_record(run_dir: Path) -> dict:
    """run.json, checked against the sha256 the COMPLETE marker holds (runs written before that have none)."""
    path = run_dir / "run.json"
    damaged = "is damaged: the run cannot be read; fit again"
    marker = (run_dir / COMPLETE_MARKER).read_text(encoding="utf-8", errors="replace")
    recorded = re.search(r"run\.json sha256 ([0-9a-f]{64})", marker)
    try:
        if recorded and files.file_sha256(path) != recorded.group(1):
            raise UserError(Problem(str(path), "is not the file this run wrote (its sha256 differs from the one in "
                                               f"{COMPLETE_MARKER}): the run was damaged or edited; fit again"))
        run = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise UserError(Problem(str(path), f"{damaged} ({exc})")) from None
    needed = ("info", "labels", "columns", "group_columns", "priors", "categorical")
    if not isinstance(run, dict) or not all(k in run for k in needed) or not isinstance(run["info"], dict):
        raise UserError(Problem(str(path), f"{damaged} (it lacks some of {', '.join(needed)})"))
    return run


def read_run(run_dir: str | Path) -> tuple[StanProgram, az.InferenceData, dict[str, Any], list[str]]:
    """A complete run directory's program, draws, run info and Stan's messages."""
    run_dir = Path(run_dir)
    if not (run_dir / COMPLETE_MARKER).exists():
        raise UserError(Problem(str(run_dir), f"not a complete run (no {COMPLETE_MARKER} marker): it was "
                                              "interrupted or is still being written; fit again"))
    run = _run_record(run_dir)
    _verify(run_dir, run.get("sha256", {}))
    spec = Spec.from_yaml(run_dir / "spec.yaml")
    choices = tuple(Choice.from_dict(c) for c in run["info"].get("parameterization", []))
    desc = describe(spec, set(run["categorical"]), generated=run["info"].get("generated", ()),
                    **describe_options(choices))
    if run["info"].get("threaded"):
        desc = threaded(desc)
    stan_data = {k: np.asarray(v) if isinstance(v, list) else v
                 for k, v in json.loads((run_dir / "data.json").read_text()).items()}
    prepared = PreparedData(stan_data, run["labels"], run["columns"],
                            {(lv, p): names for lv, p, names in run["group_columns"]}, run["priors"],
                            missing=run["info"].get("missing", "error"), sigma_labels=run.get("sigma_labels", []),
                            outcome_categories=run.get("outcome_categories", []),
                            categories=run.get("categories", {}),
                            dropped=DroppedRows.from_dict(run.get("dropped")))
    code = (run_dir / "model.stan").read_text()
    if code != codegen.render(desc):
        raise UserError(Problem(str(run_dir / "model.stan"), "the run's program is not the one this stangen "
                                "renders from the run's spec.yaml and choices (the run was made by another "
                                "version of stangen, or a file was edited): its draws cannot be read "
                                "in the spec's terms; fit the spec again"))
    program = StanProgram(spec, desc, code, prepared, choices)
    idata = az.from_netcdf(str(run_dir / "posterior.nc"), engine="h5netcdf")
    log = run_dir / STAN_LOG
    messages = log.read_text(encoding="utf-8").splitlines() if log.exists() else []
    return program, idata, run["info"], messages


def _json_default(value):
    if isinstance(value, np.ndarray):
        return value.tolist()
    if isinstance(value, (np.integer, np.floating)):
        return value.item()
    raise TypeError(f"not JSON serializable: {type(value).__name__}")
