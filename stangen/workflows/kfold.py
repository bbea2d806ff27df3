"""Leave-group-out cross-validation: how well does the model predict *new groups* (new schools), the question a
multilevel user usually asks? PSIS-LOO answers another one: new observations in known groups.

    result = kfold("specs/language.yaml", by="school", folds=10, workers=2, out="runs/language_kfold")
    result.elpd, result.se

The groups of level `by` are split at random (from `seed`) into `folds` folds. For each fold the model is fitted
without that fold's groups, and the held-out groups' outcomes get their log predictive density

    log p(y_j | training data) = log mean over draws s of  ∫ Π_i p(y_ij | θ_s, u_j) N(u_j | 0, Σ_s) du_j,

the group's effects u_j integrated out by Monte Carlo (`new_group_draws` draws of u_j per posterior draw,
stangen.results.predict's new-group draws). elpd_kfold is the sum over held-out groups; its standard error is
sqrt(G) × sd of the groups' contributions. All folds fit one program (each level's parameterization is
decided once, on all the data), compiled once; the fits run on Dask (stangen.run.manyfits).
"""
from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from ..compiler import codegen
from ..compiler.encoding import categorical_columns, encode, group_keys
from ..compiler.model import describe
from ..compiler.new_rows import encode_rows
from ..compiler.program import StanProgram, build, load_data, load_spec
from ..compiler.standata import write_stan_data
from ..core import files
from ..core.errors import Problem, SpecError, UserError
from ..core.frames import Collector, label_text
from ..core.residuals import Residuals
from ..fitting import Fit
from ..results.naming import to_inference_data
from ..results.predict import aux_draws, linear_predictor
from ..run.backends import SamplerSettings
from ..run.manyfits import FitJob, job_seeds, run_fits

KFOLD_SETTINGS = dict(chains=2, warmup=500, draws=500, parallel_chains=1)
NEW_GROUP_DRAWS = 100
RESULT_FILE = "kfold.json"
KFOLD_FILES = (RESULT_FILE, "summary.md", "fits.jsonl")  # what `out` holds


@dataclass
class KFoldResult:
    spec_name: str
    by: str
    folds: int
    elpd_groups: dict[str, float]  # held-out group label → its log predictive density
    fold_of: dict[str, int]
    failures: list[tuple[int, str]] = field(default_factory=list)
    info: dict = field(default_factory=dict)

    @property
    def elpd(self) -> float:
        return float(sum(self.elpd_groups.values()))

    @property
    def se(self) -> float:
        values = np.array(list(self.elpd_groups.values()))
        return float(np.sqrt(len(values)) * values.std(ddof=1)) if len(values) > 1 else float("nan")

    def text(self) -> str:
        lines = [f"Leave-group-out cross-validation of {self.spec_name} by {self.by} ({self.folds} folds, "
                 f"{len(self.elpd_groups)} groups held out): elpd_kfold {self.elpd:.1f} (se {self.se:.1f})",
                 "elpd_kfold: the log predictive density of new groups' outcomes, summed; higher is better"]
        if self.failures:
            lines.append(f"{len(self.failures)} fold(s) not fitted (their groups are left out of the sum): " +
                         "; ".join(f"fold {k}: {r}" for k, r in self.failures[:3]))
        return "\n".join(lines)

    def to_dict(self) -> dict:
        return {"kind": "kfold", "spec": self.spec_name, "by": self.by, "folds": self.folds, "elpd": self.elpd,
                "se": self.se, "elpd_groups": self.elpd_groups, "fold_of": self.fold_of,
                "failures": self.failures, "info": self.info}

    @classmethod
    def from_dict(cls, d: dict) -> "KFoldResult":
        return cls(d["spec"], d["by"], d["folds"], d["elpd_groups"], d["fold_of"],
                   [tuple(f) for f in d.get("failures", [])], d.get("info", {}))

    def save(self, out: str | Path) -> Path:
        out = Path(out)
        out.mkdir(parents=True, exist_ok=True)
        (out / RESULT_FILE).write_text(json.dumps(self.to_dict(), indent=1), encoding="utf-8")
        (out / "summary.md").write_text(f"# {self.spec_name}: leave-group-out cross-validation\n\n```\n{self.text()}\n```\n",
                                        encoding="utf-8")
        return out


def load_kfold(path: str | Path) -> KFoldResult | None:
    """The kfold result in a folder, or None when the folder holds none."""
    file = Path(path) / RESULT_FILE
    return KFoldResult.from_dict(json.loads(file.read_text())) if file.exists() else None


# -- on the worker -------------------------------------------------------------------------------------

def held_out_density(draws, job: FitJob) -> dict:
    """log p(y_j | training data) of each held-out group (see the module's doc)."""
    program: StanProgram = job.payload["program"]
    held: pd.DataFrame = job.payload["held"]
    fit = Fit(program, to_inference_data(program, draws), {})
    d = program.description
    rows = encode_rows(program, held, new_groups="sample")
    categories = program.data.outcome_categories
    if categories:  # ordered categories: coded as in the fold's training data (a fold may lack some)
        text = held[d.outcome].map(label_text)
        unseen = sorted(set(text) - set(categories))
        if unseen:
            raise UserError(Problem(d.outcome, f"held-out categories {unseen} are not among the training data's "
                                               f"({', '.join(categories)})"))
        y = text.map({c: k + 1 for k, c in enumerate(categories)}).to_numpy(dtype=int)
    else:
        c = Collector()
        y = d.family.outcome_data(held[d.outcome], d.outcome, held[d.trials] if d.trials else None, d.trials,
                                  c.add, order=d.order)
        if c.problems:
            raise UserError(c.problems)
        y = np.asarray(y["y"])
    labels = job.payload["groups"]  # each held-out row's group of level `by`
    names, group = np.unique(labels, return_inverse=True)
    rng = np.random.default_rng(job.seed)
    per_draw = []
    for _ in range(job.payload["new_group_draws"]):
        eta = linear_predictor(fit, rows, "sample", rng)
        aux = aux_draws(fit, rows, "sample", rng)  # (a sub-model's new groups: their effects drawn too)
        log_p = d.family.log_density(y[None, :], eta, aux, rows.trials)  # (draws, rows)
        per_draw.append(np.stack([log_p[:, group == g].sum(axis=1) for g in range(len(names))], axis=1))
    stacked = np.stack(per_draw)  # (new-group draws, posterior draws, groups)
    given_theta = logsumexp(stacked, axis=0) - np.log(stacked.shape[0])
    elpd = logsumexp(given_theta, axis=0) - np.log(given_theta.shape[0])
    return {"elpd_groups": {str(n): float(v) for n, v in zip(names, elpd)}}


# -- the whole thing ------------------------------------------------------------------------------------

def pinned_spec(spec, program: StanProgram):
    """The spec with every level's parameterization as the program chose it (so every fold runs the same
    program)."""
    chosen: dict[str, list[str]] = {}
    for choice in program.parameterization:
        chosen.setdefault(choice.parameterization, []).append(choice.level)
    for how, levels in chosen.items():
        spec = spec.with_parameterization(how, levels)
    return spec


def fold_assignment(labels: list[str], folds: int, seed: int) -> dict[str, int]:
    order = np.random.default_rng(seed).permutation(len(labels))
    return {labels[i]: int(k % folds) for k, i in enumerate(order)}


def kfold(spec, by: str, folds: int = 10, *, data=None, seed: int = 1, scheduler: str | None = None,
          workers: int | None = None, backend: str = "pystan", out: str | Path | None = None,
          progress: bool = True, new_group_draws: int = NEW_GROUP_DRAWS, **settings: Any) -> KFoldResult:
    """Leave-group-out cross-validation by level `by` (see the module's doc). `settings`: sampler settings of
    each fit (default 2 chains × 500 + 500, one core each). `out`: a folder for kfold.json (what `stangen
    compare` reads), summary.md and fits.jsonl (kept if interrupted; a rerun continues)."""
    spec = load_spec(spec)
    out = files.check_output_folder(out, "cross-validation folder", KFOLD_FILES) if out is not None else None
    if by not in spec.levels:
        raise SpecError(Problem("--by", f"no level '{by}' (levels: {', '.join(spec.levels) or 'none'})"))
    if not Residuals.from_spec(spec.residuals).splits_by_rows:
        raise SpecError(Problem("residuals.correlation", "kfold does not handle autocorrelated errors yet: the "
                                                         "held-out density treats a group's rows as independent given its effects"))
    frame = load_data(spec, data)
    if frame is None:
        raise SpecError(Problem("data", "kfold needs data: give `data:` in the spec or pass data"))
    full = build(spec, frame)
    frame = frame.reset_index(drop=True)
    if full.data.dropped is not None:  # missing: drop — the rows the model uses
        frame = frame.drop(index=[r - 1 for r in full.data.dropped.rows]).reset_index(drop=True)
    pinned = pinned_spec(spec, full)
    desc = describe(pinned, categorical_columns(pinned, frame))
    keys = group_keys(desc.level(by), desc, frame)
    labels = full.data.labels[by]
    if folds < 2 or folds > len(labels):
        raise SpecError(Problem("--folds", f"between 2 and the number of '{by}' groups ({len(labels)}), got {folds}"))
    fold_of = fold_assignment(labels, folds, seed)
    fold = keys.map(fold_of).to_numpy()
    seeds = job_seeds(seed, folds)
    jobs, failures, code = [], [], None
    for k in range(folds):
        train, held = frame[fold != k].reset_index(drop=True), frame[fold == k].reset_index(drop=True)
        try:
            prepared = write_stan_data(desc, encode(desc, train, missing=pinned.missing))
        except UserError as exc:
            failures.append((k, f"training data rejected: {str(exc).splitlines()[-1].strip()}"))
            continue
        code = code or codegen.render(desc)
        program = StanProgram(pinned, desc, code, prepared, full.parameterization)
        jobs.append(FitJob(k, prepared.stan_data, seeds[k], {
            "program": program, "held": held.drop(columns=[]), "groups": keys[fold == k].to_numpy(),
            "new_group_draws": new_group_draws}))
    sampler = SamplerSettings(**(KFOLD_SETTINGS | settings | {"quiet": True}))
    results = run_fits(code, jobs, held_out_density, settings=sampler, backend=backend, scheduler=scheduler,
                       workers=workers, results_file=out / "fits.jsonl" if out else None, progress=progress,
                       label="kfold fits")
    elpd_groups: dict[str, float] = {}
    for job, result in zip(jobs, results):
        if result.ok:
            elpd_groups.update(result.output["elpd_groups"])
        else:
            failures.append((job.index, result.reason))
    kept = {g: fold_of[g] for g in elpd_groups}
    result = KFoldResult(spec.name or "model", by, folds, elpd_groups, kept, sorted(failures),
                         info={"seed": seed, "settings": KFOLD_SETTINGS | settings, "new_group_draws": new_group_draws,
                               "parameterization": [c.to_dict() for c in full.parameterization]})
    if out is not None:
        result.save(out)
    return result


def compare_kfold(results: dict[str, KFoldResult]) -> pd.DataFrame:
    """Rank kfold results of the same groups and folds: elpd, se, the difference to the best and its standard
    error from the paired group contributions."""
    first = next(iter(results.values()))
    for name, r in results.items():
        if (r.by, r.folds, sorted(r.fold_of.items())) != (first.by, first.folds, sorted(first.fold_of.items())):
            raise UserError(Problem(name, f"kfold results compare only over the same held-out groups and folds "
                                          f"({first.by}, {first.folds} folds, same seed); this one differs"))
    order = sorted(results, key=lambda n: -results[n].elpd)
    best = results[order[0]]
    rows = []
    for name in order:
        r = results[name]
        diff = np.array([best.elpd_groups[g] - r.elpd_groups[g] for g in best.elpd_groups])
        rows.append({"model": name, "elpd_kfold": r.elpd, "se": r.se, "elpd_diff": float(diff.sum()),
                     "dse": float(np.sqrt(len(diff)) * diff.std(ddof=1)) if name != order[0] else 0.0})
    return pd.DataFrame(rows).set_index("model")
