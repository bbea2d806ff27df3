"""Run directories that never lose data (stangen/fitting/rundir.py): written whole or not at all, the previous
run readable until the new one is complete, checksummed, and never written where they do not belong."""
from __future__ import annotations

import errno
import os
import time
from pathlib import Path

import pytest

import stangen
from stangen import Spec, SpecError, StangenError
from stangen.core import files
from stangen.fitting import Fit
from stangen.fitting.rundir import check_output

from conftest import SPECS


# -- where a run may be written (no fit needed) -----------------------------------------------------------------

@pytest.mark.parametrize("where", ["/", "~", "."])
def test_root_home_and_working_folder_are_refused_as_run_folders(where):
    with pytest.raises(StangenError, match="a run is written into a folder of its own") as info:
        check_output(Path(where).expanduser())
    assert info.value.exit_code == 1


def test_a_folder_holding_other_files_is_refused_unless_forced(tmp_path):
    mine = tmp_path / "analysis"
    mine.mkdir()
    (mine / "summary.csv").write_text("the user's own table")
    (mine / "notes.txt").write_text("the user's notes")
    with pytest.raises(StangenError, match="exists and is not a stangen run \\(notes.txt\\).*--force"):
        check_output(mine)
    assert check_output(mine, force=True) == mine
    (tmp_path / "afile").write_text("x")
    with pytest.raises(StangenError, match="is a file, not a folder"):
        check_output(tmp_path / "afile")
    assert check_output(tmp_path / "new") == tmp_path / "new"  # a new folder is fine


@pytest.mark.parametrize("name", ["/abs/path", "../../x", "a/b", ".hidden", "two\nlines"])
def test_a_spec_name_is_a_name_not_a_path(name):
    with pytest.raises(SpecError, match="name.*must be a name, not a path"):
        Spec(name=name, outcome="y", predictors=["x"])


def test_the_cli_refuses_a_bad_out_before_sampling(tmp_path, capsys):
    from stangen.cli import main
    start = time.perf_counter()
    assert main(["fit", str(SPECS / "sleepstudy.yaml"), "--out", "/"]) == 1
    assert time.perf_counter() - start < 30  # refused before compiling or sampling
    err = capsys.readouterr().err
    assert "a run is written into a folder of its own" in err and "Traceback" not in err


# -- atomic saves, checksums (one short fit) --------------------------------------------------------------------

@pytest.fixture(scope="module")
def saved(tmp_path_factory, example_fit):
    fit = example_fit("sleepstudy")
    out = tmp_path_factory.mktemp("runs") / "sleepstudy"
    fit.save(out)
    return fit, out


@pytest.mark.sampling
def test_a_save_on_a_full_disk_leaves_the_previous_run_readable(saved, monkeypatch):
    fit, out = saved
    before = {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()}

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device")
    monkeypatch.setattr(type(fit.idata), "to_netcdf", full)
    with pytest.raises(StangenError, match="No space left on device.*free there.*unchanged") as info:
        fit.save(out)
    assert info.value.exit_code == 1
    monkeypatch.undo()
    assert {p.name: p.read_bytes() for p in out.iterdir() if p.is_file()} == before
    assert Fit.load(out).program.code == fit.program.code
    assert [p.name for p in out.parent.iterdir()] == [out.name]  # no staging folder, no claim left


@pytest.mark.sampling
def test_what_a_killed_save_left_is_cleared_by_the_next_save(saved):
    fit, out = saved
    dead = os.fork()
    if dead == 0:
        os._exit(0)
    os.waitpid(dead, 0)
    for leftover in (f".{out.name}.staging-{dead}-abc123", f".{out.name}.old-{dead}-abc123"):
        (out.parent / leftover).mkdir()
        (out.parent / leftover / "posterior.nc").write_bytes(b"half")
    (out.parent / f".{out.name}{files.CLAIM_SUFFIX}").write_text(f"{dead}\n")  # its claim, too
    fit.save(out)
    assert [p.name for p in out.parent.iterdir()] == [out.name]
    Fit.load(out)


@pytest.fixture
def copy(saved, tmp_path):
    """A copy of the saved run, to damage."""
    import shutil
    return Path(shutil.copytree(saved[1], tmp_path / "copy"))


@pytest.mark.sampling
def test_a_damaged_or_swapped_file_is_refused_by_name(saved, copy):
    import shutil
    fit, out = saved
    with open(copy / "summary.csv", "a") as fh:
        fh.write("tampered\n")
    with pytest.raises(StangenError, match="summary.csv: is missing or not the file this run wrote"):
        Fit.load(copy)
    shutil.copy2(out / "summary.csv", copy / "summary.csv")
    (copy / "posterior.nc").write_bytes((copy / "posterior.nc").read_bytes()[:-10] + b"0" * 10)
    with pytest.raises(StangenError, match="posterior.nc: is missing or not the file"):
        Fit.load(copy)


@pytest.mark.sampling
def test_a_truncated_or_edited_run_json_is_refused_by_name(copy):
    import json
    text = (copy / "run.json").read_text()
    (copy / "run.json").write_text(text[:200])
    with pytest.raises(StangenError, match="run.json: is not the file this run wrote"):
        Fit.load(copy)
    run = json.loads(text)
    run["labels"]["Subject"][0] = "someone else"
    (copy / "run.json").write_text(json.dumps(run))
    with pytest.raises(StangenError, match="run.json: is not the file this run wrote"):
        Fit.load(copy)
    (copy / "COMPLETE").write_text("2026-01-01T00:00:00\n")      # a run written before the marker held a sha256
    (copy / "run.json").write_text(text[:200])
    with pytest.raises(StangenError, match="run.json: is damaged: the run cannot be read"):
        Fit.load(copy)
    (copy / "run.json").write_text("[]")
    with pytest.raises(StangenError, match="run.json: is damaged.*it lacks some of info"):
        Fit.load(copy)


@pytest.mark.sampling
def test_a_refit_replaces_the_run_whole(saved):
    fit, out = saved
    (out / "plots").mkdir(exist_ok=True)
    (out / "plots" / "stale.png").write_bytes(b"an earlier fit's plot")
    fit.save(out)
    assert not (out / "plots").exists()  # the new run is the new folder, nothing of the old one mixed in
    assert stangen.fitting.Fit.load(out).info == fit.info


# -- the data a run was fitted to -------------------------------------------------------------------------------

QUICK = dict(backend="pystan", chains=1, warmup=100, draws=50, seed=3, quiet=True)


@pytest.mark.sampling
def test_the_run_records_the_data_file_actually_used_and_checks_it(tmp_path):
    import shutil

    import pandas as pd
    from conftest import read_example
    frame = read_example("sleepstudy")
    other = tmp_path / "other.csv"
    frame.to_csv(other, index=False)
    program = stangen.build(SPECS / "sleepstudy.yaml", other)
    fit = stangen.fit(program, other, **QUICK)  # as `stangen fit SPEC --data other.csv` calls it
    record = fit.info["data"]
    assert record["file"] == str(other.resolve()) and len(record["sha256"]) == 64
    out = fit.save(tmp_path / "run")
    loaded = Fit.load(out)
    assert len(loaded.fitted()) == len(frame)
    moved = tmp_path / "moved.csv"
    shutil.move(other, moved)
    with pytest.raises(StangenError, match="not at .*other.csv any more"):
        loaded.fitted()
    assert len(loaded.fitted(data=moved)) == len(frame)  # the same file, elsewhere
    changed = tmp_path / "changed.csv"
    frame.assign(Reaction=frame["Reaction"] + 1).to_csv(changed, index=False)
    with pytest.raises(StangenError, match="not the file this model was fitted on"):
        loaded.fitted(data=changed)
    from_frame = stangen.fit(program, frame, **QUICK)
    assert from_frame.info["data"]["from"] == "DataFrame"
    again = Fit.load(from_frame.save(tmp_path / "run2"))
    with pytest.raises(StangenError, match="fitted on a DataFrame"):
        again.fitted()
    assert isinstance(again.fitted(data=frame), pd.DataFrame)


@pytest.mark.sampling
def test_effects_and_report_take_moved_data_on_the_command_line(tmp_path, capsys):
    import shutil

    from conftest import read_example
    from stangen.cli import main
    data = tmp_path / "sleep.csv"
    read_example("sleepstudy").to_csv(data, index=False)
    program = stangen.build(SPECS / "sleepstudy.yaml", data)
    run = stangen.fit(program, data, **QUICK).save(tmp_path / "run")
    moved = tmp_path / "elsewhere.csv"
    shutil.move(data, moved)
    assert main(["effects", str(run), "--predictor", "Days", "-o", str(tmp_path / "e.png")]) == 1
    assert "not at" in capsys.readouterr().err
    assert main(["effects", str(run), "--predictor", "Days", "--data", str(moved), "-o", str(tmp_path / "e.png")]) == 0
    assert main(["report", str(run), "--data", str(moved)]) == 0
    assert (run / "report.html").is_file()


# -- a killed fit's scratch files -----------------------------------------------------------------------------

@pytest.mark.sampling
def test_the_socket_folder_of_a_fit_killed_with_sigkill_is_cleared_by_the_next_fit(tmp_path):
    """SIGKILL leaves no `finally` to run: the embedded backend's socket folder stays behind, and the next fit
    (of any spec) clears it, since its process is gone and it is this user's."""
    import shutil
    import signal
    import subprocess
    import sys
    import tempfile

    base = Path(tempfile.mkdtemp(prefix="sg", dir="/tmp"))   # short: Unix socket paths are limited to ~107 bytes
    env = {**os.environ, "TMPDIR": str(base)}
    command = [sys.executable, "-m", "stangen.cli", "fit", str(SPECS / "sleepstudy.yaml"), "--quiet",
               "--draws", "20000", "--backend", "pystan"]
    try:
        first = subprocess.Popen(command + ["--out", str(tmp_path / "killed")], env=env,
                                 stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        deadline = time.time() + 120
        while not list(base.glob("stangen-*/chain-*.sock")) and time.time() < deadline and first.poll() is None:
            time.sleep(0.2)
        left = list(base.glob("stangen-*"))
        assert left, "the fit never started sampling"
        first.send_signal(signal.SIGKILL)
        first.wait()
        # its chain processes get SIGTERM as it dies, and may still touch the folder as they go (slowly on a
        # loaded machine): wait until the folder has been still for 2 s, so that the age set below holds
        last, still_since, deadline = None, time.time(), time.time() + 60
        while time.time() < deadline and time.time() - still_since < 2:
            stamp = left[0].stat().st_mtime_ns
            if stamp != last:
                last, still_since = stamp, time.time()
            time.sleep(0.2)
        assert [p.name for p in base.glob("stangen-*")] == [p.name for p in left]   # left behind, as expected
        then = time.time() - 3600
        os.utime(left[0], (then, then))
        second = subprocess.run(command[:-4] + ["--draws", "100", "--warmup", "100", "--out",
                                                str(tmp_path / "next")], env=env, capture_output=True, text=True)
        assert second.returncode == 0, second.stderr
        assert list(base.glob("stangen-*")) == []
        assert not (tmp_path / "killed").exists()     # the killed fit wrote no run
    finally:
        shutil.rmtree(base, ignore_errors=True)
