"""How stangen's objects show themselves (issue 30): a fit in a notebook (HTML: the verdict, the lme4-style
summary, the population table) and in a console (one line), a spec and a program, the report on request,
and `stangen --version` (recorded in run.json too)."""
from __future__ import annotations

import json

import pytest

from stangen import Spec
from stangen.cli import main
from stangen.compiler.program import build
from stangen.core.version import VERSION

from conftest import SPECS
from test_predict import fake_fit


def test_a_fit_in_a_notebook_and_a_console():
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    page = fit._repr_html_()
    assert "Random effects" in page and "convergence: " in page and "Fixed effects" in page
    assert "population-level parameters" in page and "sd(Subject: Days)" in page
    # made-up draws do not converge: the advice is shown with the verdict
    assert fit.convergence().status != "pass" and "<li>" in page
    line = repr(fit)
    assert line.startswith("<stangen Fit: sleepstudy, gaussian model of Reaction, 180 rows;")
    assert line.endswith(f"convergence: {fit.convergence().status}>")


def test_a_fit_writes_its_report_on_request(tmp_path):
    fit = fake_fit(SPECS / "sleepstudy.yaml")
    path = fit.report(tmp_path / "report")
    assert path.name == "report.html" and path.exists() and "sleepstudy" in path.read_text()


def test_a_spec_and_a_program_in_a_notebook():
    spec = Spec.from_yaml(SPECS / "sleepstudy.yaml")
    assert spec.describe() in spec._repr_html_() and "Subject" in spec._repr_html_()
    program = build(spec)
    page = program._repr_html_()
    assert spec.describe() in page and "Subject: partial" in page and "data {" in page
    assert repr(program).startswith("<stangen StanProgram: gaussian model of Reaction") and "180 rows" in repr(program)


def test_version(capsys):
    with pytest.raises(SystemExit) as done:
        main(["--version"])
    assert done.value.code == 0 and capsys.readouterr().out.strip() == f"stangen {VERSION}"


@pytest.mark.sampling
def test_run_json_records_the_version(tmp_path):
    assert main(["fit", str(SPECS / "sleepstudy.yaml"), "--out", str(tmp_path / "run"), "--quiet",
                 "--draws", "200", "--warmup", "200"]) in (0, 2)
    assert json.loads((tmp_path / "run" / "run.json").read_text())["info"]["stangen_version"] == VERSION


@pytest.mark.sampling
def test_hypotheses_on_a_run(tmp_path, capsys):
    run = str(tmp_path / "run")
    assert main(["fit", str(SPECS / "sleepstudy.yaml"), "--out", run, "--quiet", "--draws", "200",
                 "--warmup", "200"]) == 0
    capsys.readouterr()
    assert main(["hypothesis", run, "Days > 5; `sd(Subject: Days)` > 3"]) == 0
    out = capsys.readouterr().out
    assert "post_prob" in out and "Days > 5" in out and "1.000" in out  # Days is about 10.5 (sd 1.7)
    assert main(["hypothesis", run, "Dayz > 5"]) == 1
    assert "did you mean 'Days'" in capsys.readouterr().err
    # a gaussian identity model's average slope is its Days coefficient plus the groups' mean slope deviation
    assert main(["slopes", run, "--predictor", "Days"]) == 0
    out = capsys.readouterr().out
    assert "Average slope of E[Reaction] in Days" in out and "Days " in out


def _fit_on_a_terminal(tmp_path, *flags) -> str:
    """`stangen fit` with its stderr on a pseudo-terminal: what a user at a terminal sees."""
    import os
    import select
    import subprocess
    import sys
    import fcntl
    import struct
    import termios
    main_fd, terminal = os.openpty()
    fcntl.ioctl(terminal, termios.TIOCSWINSZ, struct.pack("HHHH", 40, 120, 0, 0))  # a terminal's 40 x 120
    process = subprocess.Popen([sys.executable, "-m", "stangen.cli", "fit", str(SPECS / "sleepstudy.yaml"), "--out",
                                str(tmp_path / "run"), "--draws", "150", "--warmup", "150", *flags],
                               stderr=terminal, stdout=subprocess.DEVNULL, cwd=tmp_path)
    os.close(terminal)
    chunks = []
    while True:  # read while it runs: a full terminal buffer would stop the writer
        ready, _, _ = select.select([main_fd], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(main_fd, 65536)
            except OSError:  # the other end closed
                break
            if not chunk:
                break
            chunks.append(chunk)
        elif process.poll() is not None:
            break
    os.close(main_fd)
    assert process.wait(timeout=600) == 0
    return b"".join(chunks).decode(errors="replace")


@pytest.mark.sampling
def test_progress_on_a_terminal_and_none_when_quiet(tmp_path):
    shown = _fit_on_a_terminal(tmp_path)
    assert "chain 1:" in shown and "chain 4:" in shown and "300/300" in shown and "█" in shown
    assert "chain 1:" not in _fit_on_a_terminal(tmp_path, "--quiet", "--force")
