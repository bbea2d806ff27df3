import os
from pathlib import Path

import arviz as az
import numpy as np
import pandas as pd
import pytest

ROOT = Path(__file__).resolve().parent.parent
SPECS = ROOT / "specs"
DATA = ROOT / "examples" / "data"
GOLDEN = Path(__file__).resolve().parent / "golden"
UPDATE_GOLDEN = os.environ.get("STANGEN_UPDATE_GOLDEN") == "1"


def pytest_addoption(parser):
    parser.addoption("--update-golden", action="store_true",
                     help="rewrite tests/golden/*.stan from the current code generator (read the diff first)")


def pytest_configure(config):
    global UPDATE_GOLDEN
    if config.getoption("--update-golden"):
        UPDATE_GOLDEN = True
        os.environ["STANGEN_UPDATE_GOLDEN"] = "1"


# The files that take longest on a fresh clone (their compiles and long fits), longest first. xdist hands whole
# files to its workers in collection order (with --no-loadscope-reorder, pyproject.toml), so a long file that
# started last would leave the other core idle at the end of the run.
LONGEST_FIRST = ["test_manyfits.py", "test_residuals.py", "test_blackmore_nlme.py", "test_new_families.py",
                 "test_predict.py", "test_submodels.py", "test_threads.py", "test_classics.py",
                 "test_large_crossed.py", "test_censoring.py", "test_weights.py", "test_zero_families.py",
                 "test_start.py", "test_cumulative.py", "test_results.py", "test_soup_clmm.py", "test_offsets.py"]


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.path.name, len(rank)))  # stable: each file's own order is kept


@pytest.fixture
def data_dir() -> Path:
    return DATA


def read_example(name: str) -> pd.DataFrame:
    return pd.read_csv(DATA / f"{name}.csv")


def write_spec(tmp_path: Path, text: str, name: str = "spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


SHORT_RUN = dict(chains=4, warmup=500, draws=500, seed=11, quiet=True)


@pytest.fixture(scope="session")
def example_fit():
    """Short embedded-backend fits of specs/<name>.yaml, made once per test session."""
    import stangen

    fits = {}

    def get(name: str):
        if name not in fits:
            fits[name] = stangen.fit(SPECS / f"{name}.yaml", backend="pystan", **SHORT_RUN)
        return fits[name]
    return get


def assert_same_posterior(a, b, names=None, group_effects: bool = False) -> None:
    """Two independent runs of the same posterior agree up to Monte Carlo error: each parameter's mean within
    4 of its combined MCSE (+2% of its sd), and its posterior sd within 4 of the combined MCSE of the sd estimate
    (ArviZ's mcse 'sd', which grows with a skewed parameter's tails: a 14-group level's sd), + 10%.
    `group_effects`: every group effect's mean too, from the full summaries."""
    sa, sb = a.summary(group_effects=group_effects), b.summary(group_effects=group_effects)
    names = list(a.parameters()) if names is None else list(names)
    for name in names:
        tolerance = 4 * np.hypot(sa.loc[name, "mcse_mean"], sb.loc[name, "mcse_mean"]) + 0.02 * sa.loc[name, "sd"]
        assert abs(sa.loc[name, "mean"] - sb.loc[name, "mean"]) < tolerance, (name, sa.loc[name], sb.loc[name])
    for name in names:
        mcse = [float(az.mcse(fit.parameter_draws(name), method="sd")) for fit in (a, b)]
        tolerance = 4 * np.hypot(*mcse) + 0.1 * sa.loc[name, "sd"]
        assert abs(sa.loc[name, "sd"] - sb.loc[name, "sd"]) < tolerance, (name, sa.loc[name, "sd"], sb.loc[name, "sd"], mcse)
    if group_effects:
        effects = [n for n in sa.index if "]: " in n]
        assert effects and set(effects) <= set(sb.index)
        tolerance = 4 * np.hypot(sa.loc[effects, "mcse_mean"], sb.loc[effects, "mcse_mean"]) + 0.02 * sa.loc[effects, "sd"]
        worst = (sa.loc[effects, "mean"] - sb.loc[effects, "mean"]).abs() / tolerance
        assert worst.max() < 1, worst.sort_values().tail(3)


@pytest.fixture(scope="session", autouse=True)
def program_log():
    """With STANGEN_PROGRAM_LOG=FILE, each embedded-backend compile appends 'test id<TAB>program key<TAB>built
    now' to FILE: which tests need which of the suite's programs (a fresh clone's test time is their compiles)."""
    path = os.environ.get("STANGEN_PROGRAM_LOG")
    if not path:
        yield
        return
    from stangen.run.backends import cache
    from stangen.run.backends.pystan import PyStanBackend

    original = PyStanBackend.compile

    def compile_and_log(self, program, **kwargs):
        key = cache.program_key(self.name, self.stan_version, program)
        model = original(self, program, **kwargs)
        with open(path, "a") as log:
            log.write(f"{os.environ.get('PYTEST_CURRENT_TEST', '?')}\t{key[:12]}\t{model.compiled_now}\n")
        return model
    PyStanBackend.compile = compile_and_log
    yield
    PyStanBackend.compile = original
