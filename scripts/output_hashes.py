"""sha256 of what stangen writes for every example spec — the Stan program, its Stan data, the prior record,
the labels and the parameterization — plus the threaded program and the program with y_rep/log_lik, so a
restructuring can be checked to change no output: run it in the old and the new tree and diff.

    python scripts/output_hashes.py > new.txt     (in each worktree; then: diff old.txt new.txt)

Uses only the public API (stangen.build), so it runs on any version of the package.
"""
import hashlib
import json
import sys
from pathlib import Path

import numpy as np

import stangen

ROOT = Path(__file__).resolve().parent.parent


def canonical(value) -> str:
    def plain(v):
        if isinstance(v, np.ndarray):
            return {"dtype": str(v.dtype), "values": v.tolist()}
        if isinstance(v, (np.integer, np.floating)):
            return {"dtype": str(type(v).__name__), "value": v.item()}
        if isinstance(v, dict):
            return {str(k): plain(x) for k, x in v.items()}
        if isinstance(v, (list, tuple)):
            return [plain(x) for x in v]
        if hasattr(v, "__dataclass_fields__"):
            return {"_": type(v).__name__, **{k: plain(getattr(v, k)) for k in v.__dataclass_fields__}}
        return v if isinstance(v, (str, int, float, bool, type(None))) else repr(v)
    return json.dumps(plain(value), sort_keys=False, default=repr)


def sha(text: str) -> str:
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def rows(spec_file: Path):
    program = stangen.build(spec_file, require_data=True)
    data = program.data
    yield "program", program.code
    yield "stan_data", canonical(data.stan_data)
    yield "priors", canonical(data.priors)
    yield "labels", canonical({"labels": data.labels, "columns": data.columns,
                               "group_columns": {"/".join(k): v for k, v in data.group_columns.items()},
                               "sigma_labels": data.sigma_labels, "categories": data.categories,
                               "outcome_categories": data.outcome_categories})
    yield "parameterization", canonical(program.parameterization)
    yield "generated", stangen.build(spec_file, generated=("y_rep", "log_lik")).code
    yield "prior_only_data", canonical(stangen.build(spec_file, prior_only=True).data.stan_data)
    try:
        threaded = stangen.build(spec_file, threads_per_chain=2)
        yield "threaded", threaded.code
        yield "threaded_data", canonical(threaded.data.stan_data)
    except stangen.SpecError as err:
        yield "threaded", "refused: " + str(err)


# residual structures no example spec has: the Blackmore model with each (AR(1) on integer visit numbers)
RESIDUAL_VARIANTS = {
    "sd_by": {"sd_by": "group"},
    "car1_sd_by": {"correlation": "car1", "time": "age", "sd_by": "group"},
    "ar1": {"correlation": "ar1", "time": "visit"},
    "ar1_sd_by": {"correlation": "ar1", "time": "visit", "sd_by": "group"},
}


def residual_variants(folder: Path) -> list[Path]:
    import pandas as pd
    import yaml
    base = yaml.safe_load((ROOT / "specs" / "blackmore.yaml").read_text())
    frame = pd.read_csv(ROOT / "examples" / "data" / "blackmore.csv")
    frame["visit"] = frame.groupby("subject").cumcount()
    frame.to_csv(folder / "blackmore_visits.csv", index=False)
    out = []
    for name, residuals in RESIDUAL_VARIANTS.items():
        spec = dict(base, name=f"blackmore_{name}", data="blackmore_visits.csv", residuals=residuals)
        path = folder / f"blackmore_{name}.yaml"
        path.write_text(yaml.safe_dump(spec, sort_keys=False))
        out.append(path)
    return out


def main() -> None:
    import tempfile
    folder = Path(tempfile.mkdtemp(prefix="stangen_hashes_"))
    specs = sorted((ROOT / "specs").glob("*.yaml")) + sorted((ROOT / "specs" / "formula").glob("*.yaml"))
    specs += residual_variants(folder)
    for spec_file in specs:
        name = spec_file.relative_to(ROOT / "specs") if spec_file.is_relative_to(ROOT / "specs") else spec_file.name
        for what, text in rows(spec_file):
            print(f"{name}\t{what}\t{sha(text)}")
    for golden in sorted((ROOT / "tests" / "golden").glob("*.stan")):
        print(f"golden/{golden.name}\tfile\t{sha(golden.read_text())}")
    sys.stdout.flush()


if __name__ == "__main__":
    main()
