"""A fit's run directory: what `Fit.save` writes and `Fit.load` reads back.

    spec.yaml  model.stan  data.json  run.json  posterior.nc  summary.csv  summary.md  convergence.json
    stan.log  COMPLETE

Each file is written atomically (stangen.core.files) while this process holds the folder; the COMPLETE marker
is removed first and written last, so a directory without it is an incomplete run. Reading a run checks
that its program is the one this stangen renders from the run's spec and choices.
"""
from __future__ import annotations

import json
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


def write_run(fit: "Fit", out: str | Path) -> Path:
    """Write a run directory (see the module's text)."""
    out = Path(out)
    with files.claimed(out):
        (out / COMPLETE_MARKER).unlink(missing_ok=True)
        prepared = fit.program.data
        run = {"info": fit.info, "labels": prepared.labels, "columns": prepared.columns,
               "group_columns": [[lv, p, names] for (lv, p), names in prepared.group_columns.items()],
               "priors": prepared.priors, "categorical": sorted(fit.description.categorical),
               # the data rows the fit used: all but these (missing: drop)
               "dropped": prepared.dropped.to_dict() if prepared.dropped else None,
               "sigma_labels": prepared.sigma_labels, "outcome_categories": prepared.outcome_categories,
               "categories": prepared.categories}
        files.write_text(out / "spec.yaml", fit.spec.to_yaml())
        files.write_text(out / "model.stan", fit.program.code)
        files.write_text(out / "data.json", stan_data_json(prepared.stan_data))
        full = fit.summary(group_effects=True)
        files.write_text(out / "summary.csv", full.to_csv())
        files.write_text(out / "summary.md", tables.to_markdown(full))
        files.write_text(out / "convergence.json",
                         json.dumps(fit.convergence().to_dict(), indent=1, default=_json_default))
        files.write_with(out / "posterior.nc", lambda tmp: fit.idata.to_netcdf(str(tmp), engine="h5netcdf"))
        files.write_text(out / "run.json", json.dumps(run, indent=1, default=_json_default))
        files.write_text(out / STAN_LOG, "".join(f"{line}\n" for line in fit.stan_messages))
        files.write_text(out / COMPLETE_MARKER, time.strftime("%Y-%m-%dT%H:%M:%S") + "\n")
    return out


def read_run(run_dir: str | Path) -> tuple[StanProgram, az.InferenceData, dict[str, Any], list[str]]:
    """A complete run directory's program, draws, run info and Stan's messages."""
    run_dir = Path(run_dir)
    if not (run_dir / COMPLETE_MARKER).exists():
        raise UserError(Problem(str(run_dir), f"not a complete run (no {COMPLETE_MARKER} marker): it was "
                                              "interrupted or is still being written; fit again"))
    run = json.loads((run_dir / "run.json").read_text())
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
