"""Writing files and run directories (stangen/core/files.py, stangen/fitting/rundir.py): never half a file, no
shared temporary names, and two writers of one run directory leave one complete run or a clear error."""
from __future__ import annotations

import multiprocessing
import os
import threading
import time

import pytest

from stangen import StangenError
from stangen.core import files


def test_a_write_replaces_the_file_whole_and_leaves_no_temporary_file(tmp_path):
    target = tmp_path / "a.txt"
    files.write_text(target, "first")
    files.write_text(target, "second")
    assert target.read_text() == "second"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_a_failed_write_leaves_the_old_file_and_no_temporary_file(tmp_path):
    target = tmp_path / "a.txt"
    files.write_text(target, "kept")

    def half(tmp):
        tmp.write_text("half of it")
        raise OSError("No space left on device")
    with pytest.raises(OSError, match="No space"):
        files.write_with(target, half)
    assert target.read_text() == "kept"
    assert [p.name for p in tmp_path.iterdir()] == ["a.txt"]


def test_concurrent_writers_of_one_file_never_share_a_temporary_name(tmp_path):
    """Twenty threads write one file at once: each temporary file is its own, so the result is exactly one
    writer's text (a shared fixed temp name could interleave two writers' bytes or lose the rename)."""
    target = tmp_path / "posterior.txt"
    texts = [f"writer {k} " * 20000 for k in range(20)]
    threads = [threading.Thread(target=files.write_text, args=(target, text)) for text in texts]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert target.read_text() in texts
    assert [p.name for p in tmp_path.iterdir()] == ["posterior.txt"]


def _hold(folder, ready, release):
    with files.claimed(folder):
        ready.set()
        release.wait(30)


def test_a_claimed_folder_refuses_a_second_writer_by_name(tmp_path):
    context = multiprocessing.get_context("fork")
    ready, release = context.Event(), context.Event()
    holder = context.Process(target=_hold, args=(tmp_path / "run", ready, release))
    holder.start()
    try:
        assert ready.wait(30)
        with pytest.raises(StangenError, match=f"pid {holder.pid}.*writing this run directory") as info:
            with files.claimed(tmp_path / "run"):
                pass
        assert info.value.exit_code == 1
    finally:
        release.set()
        holder.join(30)
    with files.claimed(tmp_path / "run"):  # released: free again
        pass
    assert not files.claim_path(tmp_path / "run").exists()


def test_a_claim_left_by_a_killed_writer_is_taken_over(tmp_path):
    folder = tmp_path / "run"
    folder.mkdir()
    dead = multiprocessing.get_context("fork").Process(target=time.sleep, args=(0,))
    dead.start()
    dead.join()
    files.claim_path(folder).write_text(f"{dead.pid}\n")
    with files.claimed(folder):
        assert files.claim_path(folder).read_text().strip() == str(os.getpid())


def _save(fit, out, results):
    try:
        fit.save(out)
        results.put("saved")
    except StangenError as err:
        results.put(f"refused: {err}")


@pytest.mark.sampling
def test_two_processes_saving_one_run_leave_a_complete_run_or_a_clear_error(example_fit, tmp_path):
    from stangen.fitting import Fit

    fit = example_fit("sleepstudy")
    fit.summary(group_effects=True), fit.convergence()  # computed before forking: both writers only write
    context = multiprocessing.get_context("fork")
    for trial in range(3):
        out = tmp_path / f"run{trial}"
        results = context.Queue()
        writers = [context.Process(target=_save, args=(fit, out, results)) for _ in range(2)]
        for writer in writers:
            writer.start()
        for writer in writers:
            writer.join(120)
        outcomes = sorted(results.get(timeout=5) for _ in writers)
        assert "saved" in outcomes, outcomes  # at least one writer finished
        assert all(o == "saved" or "writing this run directory" in o for o in outcomes), outcomes
        loaded = Fit.load(out)  # complete and readable
        assert loaded.program.code == fit.program.code
        assert not [p.name for p in out.iterdir() if p.name.startswith(".")]


# -- scratch folders of killed processes ----------------------------------------------------------------------

def _dead_pid() -> int:
    child = multiprocessing.get_context("fork").Process(target=os._exit, args=(0,))
    child.start()
    child.join()
    return child.pid


def _aged(path, seconds=3600):
    then = time.time() - seconds
    os.utime(path, (then, then))
    return path


def test_scratch_folders_of_dead_processes_are_cleared_by_ownership_and_age(tmp_path):
    dead = _dead_pid()
    left = tmp_path / f"stangen-{dead}-abc123"
    left.mkdir()
    (left / "chain-1.sock").write_text("")
    _aged(left)
    young = tmp_path / f"stangen-{dead}-young1"
    young.mkdir()                                                       # its owner may just be starting
    running = _aged_dir(tmp_path / f"stangen-{os.getpid()}-mine01")     # a live process's folder
    other = _aged_dir(tmp_path / "stangen-notes")                       # not ours by its name's form
    target = tmp_path / "precious"
    target.mkdir()
    link = tmp_path / f"stangen-{dead}-link01"
    link.symlink_to(target)                                             # a link is never followed or removed
    made = files.scratch_folder(tmp_path, "stangen-")
    assert made.name.startswith(f"stangen-{os.getpid()}-") and made.is_dir()
    assert not left.exists()
    assert young.exists() and running.exists() and other.exists() and link.is_symlink() and target.exists()


def test_a_folder_of_another_user_is_left_alone(tmp_path, monkeypatch):
    left = _aged_dir(tmp_path / f"stangen-{_dead_pid()}-abc123")
    monkeypatch.setattr(os, "getuid", lambda: os.stat(left).st_uid + 1)
    assert files.clear_leftover_scratch(tmp_path, "stangen-") == [] and left.exists()


def _aged_dir(path):
    path.mkdir()
    return _aged(path)
