import os
from pathlib import Path

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
