"""Every subcommand, given a bad argument of each kind, answers as documented (issue 25): exit 1 naming the
argument, path or value, and no traceback. Exit 2 is kept for sampling failures, 3 for stangen's own bugs."""
from __future__ import annotations

import errno
import os

import pytest

from stangen.cli import main

from conftest import DATA as EXAMPLE_DATA
from conftest import SPECS

SPEC = str(SPECS / "sleepstudy.yaml")
DATA = str(EXAMPLE_DATA / "sleepstudy.csv")
FORMULA = "Reaction ~ Days + (Days | Subject)"


def _answer(capsys, argv) -> tuple[int, str]:
    try:
        code = main(argv)
    except SystemExit as exc:  # argparse's usage errors
        code = exc.code
    err = capsys.readouterr().err
    return code, err


# what needs no run directory: (argv, what the error names)
WITHOUT_A_RUN = [
    (["validate", "/nonexistent.yaml"], "cannot read spec file"),
    (["validate", SPEC, "--data", "/nonexistent.csv"], "data file not found"),
    (["validate", SPEC, "--data", "/tmp"], "Is a directory"),
    (["validate", SPEC, "--missing", "maybe"], "invalid choice: 'maybe'"),
    (["from-formula", FORMULA, "--data", DATA, "-o", "/tmp"], "/tmp: is a folder"),
    (["from-formula", FORMULA, "--data", DATA, "-o", "/proc/self/nope.yaml"], "/proc/self/nope.yaml: could not write"),
    (["from-formula", "Reaction ~ Days | Subject", "--data", DATA], "character 17 on is not part of the formula"),
    (["render", SPEC, "-o", "/tmp"], "/tmp: is a folder"),
    (["render", SPEC, "--data-json", "/tmp"], "/tmp: is a folder"),
    (["render", SPEC, "--threads-per-chain", "-1"], "sampler.threads_per_chain"),
    (["fit", SPEC, "--workers", "-1"], "argument --workers: -1 is not allowed: at least 1"),
    (["fit", SPEC, "--workers", "two"], "argument --workers: 'two' is not a whole number"),
    (["fit", SPEC, "--chains", "0", "--out", "runs/never"], "sampler.chains"),
    (["fit", SPEC, "--adapt-delta", "nan", "--out", "runs/never"], "sampler.adapt_delta"),
    (["fit", SPEC, "--scheduler-timeout", "-3"], "argument --scheduler-timeout"),
    (["fit", SPEC, "--out", "/"], "a run is written into a folder of its own"),
    (["fit", SPEC, "--out", "/proc/run"], "/proc/run: could not write the run"),
    (["fit", SPEC, "--out", DATA], "is a file, not a folder"),
    (["pooling", SPEC, "--level", "Nope", "--out", "runs/never"], "no level 'Nope'"),
    (["pooling", SPEC, "--level", "Subject", "--rows", "-1"], "argument --rows"),
    (["pooling", SPEC, "--level", "Subject", "--out", "/"], "a pooling folder is written into a folder of its own"),
    (["simulate", SPEC, "-o", "x.csv"], "give the true values"),
    (["simulate", SPEC, "--per-group", "0", "-o", "x.csv"], "argument --per-group: 0 is not allowed"),
    (["simulate", SPEC, "--seed", "-1", "-o", "x.csv"], "argument --seed: -1 is not allowed"),
    (["simulate", SPEC, "--params", "/nonexistent.yaml", "-o", "x.csv"], "cannot read file of true values"),
    (["sbc", SPEC, "--sims", "-1"], "argument --sims"),
    (["sbc", SPEC, "--out", "/", "--sims", "2"], "a calibration folder is written into a folder of its own"),
    (["sbc", SPEC, "--out", DATA, "--sims", "2"], "is a file, not a folder"),
    (["kfold", SPEC, "--by", "Subject", "--folds", "1"], "argument --folds: 1 is not allowed: at least 2"),
    (["kfold", SPEC, "--by", "Nope", "--out", "runs/never"], "no level 'Nope'"),
    (["kfold", SPEC, "--by", "Subject", "--out", "/"], "a cross-validation folder is written into a folder of its own"),
    (["plan", SPEC, "--params", SPEC, "--sims", "0"], "argument --sims"),
    (["plan", SPEC, "--params", SPEC, "--groups", "Subject=1"], "numbers above 1"),
    (["check", "/nonexistent"], "not a complete run"),
    (["report", "/tmp"], "not a complete run"),
    (["compare", "/nonexistent", "/tmp"], "not a complete run"),
    (["install-cmdstan", "--cores", "0"], "argument --cores: 0 is not allowed"),
    (["nonsense"], "invalid choice: 'nonsense'"),
]


@pytest.mark.parametrize("argv, named", WITHOUT_A_RUN, ids=[" ".join(a[:1] + a[2:3]) for a, _ in WITHOUT_A_RUN])
def test_a_bad_argument_is_a_user_error_without_a_traceback(argv, named, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)   # whatever a command might write lands here, and is checked below
    code, err = _answer(capsys, argv)
    assert code == 1, err
    assert named in err and "Traceback" not in err
    assert not list(tmp_path.iterdir()), "a refused command wrote files"


def test_a_sbc_folder_holding_other_files_is_refused(tmp_path, capsys):
    (tmp_path / "notes.txt").write_text("mine")
    code, err = _answer(capsys, ["sbc", SPEC, "--sims", "2", "--out", str(tmp_path)])
    assert code == 1 and "holds files a calibration folder does not write (notes.txt)" in err
    assert [p.name for p in tmp_path.iterdir()] == ["notes.txt"]


def test_an_unreachable_scheduler_is_a_user_error_after_the_timeout_given(capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    code, err = _answer(capsys, ["sbc", SPEC, "--sims", "2", "--scheduler", "tcp://127.0.0.1:9",
                                 "--scheduler-timeout", "1", "--out", "runs/never"])
    assert code == 1 and "Traceback" not in err
    assert "cannot use the Dask scheduler at 'tcp://127.0.0.1:9'" in err and "after 1 s" in err
    code, err = _answer(capsys, ["sbc", SPEC, "--sims", "2", "--scheduler", "nonsense", "--out", "runs/never"])
    assert code == 1 and "missing port number" in err
    assert not list(tmp_path.iterdir()), "a command that never reached its scheduler wrote files"


@pytest.mark.parametrize("code_of_the_disk", [errno.EROFS, errno.ENOSPC, errno.EACCES])
def test_a_read_only_or_full_disk_under_an_output_file_is_a_user_error(code_of_the_disk, tmp_path, capsys,
                                                                       monkeypatch):
    def refuse(src, dst):
        raise OSError(code_of_the_disk, os.strerror(code_of_the_disk), str(dst))
    monkeypatch.setattr(os, "replace", refuse)
    out = tmp_path / "model.stan"
    code, err = _answer(capsys, ["render", SPEC, "-o", str(out)])
    assert code == 1 and "Traceback" not in err
    assert f"{out}: could not write the file: {os.strerror(code_of_the_disk)}" in err
    assert ("free there" in err) == (code_of_the_disk == errno.ENOSPC)
    assert list(tmp_path.iterdir()) == []   # no temporary file left


# -- commands on a run directory ------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def run_dir(tmp_path_factory, example_fit):
    out = tmp_path_factory.mktemp("runs") / "sleepstudy"
    example_fit("sleepstudy").save(out)
    return str(out)


def on_a_run(run):
    return [
        (["predict", run, "--data", DATA, "-o", "/tmp"], "/tmp: is a folder"),
        (["predict", run, "--data", DATA, "-o", "/proc/x.csv"], "/proc/x.csv: could not write"),
        (["predict", run, "--data", "/tmp", "-o", "y.csv"], "Is a directory"),
        (["predict", run, "--data", DATA, "--kind", "odds", "-o", "y.csv"], "invalid choice: 'odds'"),
        (["effects", run, "--predictor", "Days", "-o", "/tmp"], "/tmp: is a folder"),
        (["effects", run, "--predictor", "Days", "--groups", "-1", "-o", "e.png"], "argument --groups"),
        (["effects", run, "--predictor", "Nope", "-o", "e.png"], "'Nope' is not a numeric level-1 predictor"),
        (["report", run, "--data", "/nonexistent.csv"], "are not at /nonexistent.csv any more"),
        (["compare", run], "give at least two run directories"),
        (["compare", run, "/tmp"], "not a complete run"),
    ]


@pytest.mark.sampling
def test_commands_on_a_run_answer_bad_arguments_without_a_traceback(run_dir, capsys, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    answers = {tuple(argv): _answer(capsys, argv) for argv, _ in on_a_run(run_dir)}
    wrong = [f"{' '.join(argv)} → {answers[tuple(argv)][0]}: {answers[tuple(argv)][1][-300:]}"
             for argv, named in on_a_run(run_dir)
             if answers[tuple(argv)][0] != 1 or named not in answers[tuple(argv)][1]
             or "Traceback" in answers[tuple(argv)][1]]
    assert not wrong, "\n".join(wrong)
    assert not list(tmp_path.iterdir())


def test_the_command_line_loads_nothing_heavy_before_main_catches_ctrl_c():
    """`stangen` loads pandas, ArviZ and the backends inside main(), where a Ctrl-C is answered with
    "interrupted" (exit 130) instead of a traceback from the middle of an import."""
    import subprocess
    import sys
    loaded = subprocess.run([sys.executable, "-c", "import sys, stangen.cli; print(' '.join(sys.modules))"],
                            capture_output=True, text=True, check=True).stdout.split()
    assert not {"numpy", "pandas", "arviz", "scipy", "yaml", "jinja2"} & set(loaded)
