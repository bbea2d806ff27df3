"""`stangen fit` prints nothing above its own first line: no third-party warning, no Stan chatter (that goes
to the run's stan.log)."""
import os
import subprocess
import sys

import pytest

from stangen.run.backends.base import console_messages
from stangen.run.backends.cache import cache_root

from conftest import SPECS


def fresh_user_env(tmp_path) -> dict:
    """A user whose ArviZ has not yet shown today's refactor warning (it stamps ~/.cache/arviz)."""
    return {**os.environ, "XDG_CACHE_HOME": str(tmp_path / "xdg"), "STANGEN_CACHE": str(cache_root()),
            "PYTHONWARNINGS": "default"}


def test_arviz_would_warn_in_this_environment(tmp_path):
    """The check below can fail: in the same environment, importing ArviZ by itself prints its warning."""
    done = subprocess.run([sys.executable, "-c", "import arviz"], capture_output=True, text=True,
                          env=fresh_user_env(tmp_path), timeout=120)
    assert "ArviZ is undergoing a major refactor" in done.stderr


def test_importing_the_fitting_stage_prints_nothing(tmp_path):
    done = subprocess.run([sys.executable, "-c", "import stangen.fitting, stangen.results.report"],
                          capture_output=True, text=True, env=fresh_user_env(tmp_path), timeout=120)
    assert done.stderr == "" and done.stdout == ""


def test_console_messages_drop_progress_and_count_repeats():
    lines = ["Iteration:  100 / 2000 [  5%]  (Warmup)", "Gradient evaluation took 9e-05 seconds", "",
             "Rejecting: x", "Rejecting: x", "Rejecting: x", "Elapsed Time: 0.3 seconds (Warm-up)"]
    assert console_messages(2, lines) == ["chain 2: Gradient evaluation took 9e-05 seconds",
                                          "chain 2: Rejecting: x  [×3]",
                                          "chain 2: Elapsed Time: 0.3 seconds (Warm-up)"]


@pytest.mark.sampling
def test_fit_prints_nothing_above_its_first_line(tmp_path):
    out = tmp_path / "run"
    done = subprocess.run(
        [sys.executable, "-m", "stangen.cli", "fit", str(SPECS / "sleepstudy.yaml"), "--backend", "pystan",
         "--chains", "2", "--warmup", "100", "--draws", "100", "--no-report", "--out", str(out)],
        capture_output=True, text=True, env=fresh_user_env(tmp_path), timeout=900)
    assert done.returncode == 0, done.stderr
    assert done.stderr == "", done.stderr  # no warnings, no Stan messages (the progress display needs a TTY)
    first = done.stdout.splitlines()[0]
    assert first.startswith("sleepstudy: 180 observations; pystan (Stan 2.35"), first
    log = (out / "stan.log").read_text()
    assert "chain 1: Gradient evaluation took" in log and "chain 2: Elapsed Time" in log
    assert "httpstan_" not in log  # the temporary program's path is the run's model.stan
    verbose = subprocess.run(
        [sys.executable, "-m", "stangen.cli", "fit", str(SPECS / "sleepstudy.yaml"), "--backend", "pystan",
         "--chains", "2", "--warmup", "100", "--draws", "100", "--no-report", "--out", str(tmp_path / "v"),
         "--verbose"], capture_output=True, text=True, env=fresh_user_env(tmp_path), timeout=900)
    assert "chain 1: Gradient evaluation took" in verbose.stderr
