"""Writing files so that no reader ever sees half of one, and so that two writers never share a temporary
name: every file is written under a unique hidden name in its own folder, then renamed over the target
(a rename within a folder is atomic). A folder that several processes may write (a run directory) is
claimed with `claimed(folder)`: a second writer gets a clear error instead of mixing its files in."""
from __future__ import annotations

import contextlib
import errno
import os
import tempfile
from pathlib import Path
from typing import Callable, Iterator

from .errors import Problem, UserError

CLAIM_FILE = ".stangen-writing"


def temporary_name(path: Path) -> Path:
    """A new, unique hidden file beside `path` (created empty), for writing `path` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_with(path: str | Path, write: Callable[[Path], None], *, mode: int | None = None) -> Path:
    """Call `write(tmp)` to write a temporary file beside `path`, then rename it to `path`; on any failure
    (a full disk, an interrupt) the temporary file is removed and `path` is left as it was. `mode`: the
    file's permissions (mkstemp's default is 0600)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = temporary_name(path)
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            tmp.unlink()
        raise
    return path


def write_bytes(path: str | Path, data: bytes, *, mode: int | None = None) -> Path:
    return write_with(path, lambda tmp: tmp.write_bytes(data), mode=mode)


def write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode=mode)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # exists, owned by someone else
    return True


@contextlib.contextmanager
def claimed(folder: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold `folder` for writing: a claim file made with O_EXCL names this process. Another process that
    tries while the claim holds gets a UserError naming the folder and the writer; a claim left by a process
    that no longer runs (killed mid-write) is taken over."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    claim = folder / CLAIM_FILE
    for _ in range(2):
        try:
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(claim.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and _alive(holder) and holder != os.getpid():
                raise UserError(Problem(str(folder), f"another stangen process (pid {holder}) is writing this {what}; "
                                                     "wait for it, or write to another folder")) from None
            with contextlib.suppress(OSError):
                claim.unlink()  # left by a writer that is gone (or by this process): taken over
            continue
        with os.fdopen(fd, "w") as fh:
            fh.write(f"{os.getpid()}\n")
        break
    else:
        raise UserError(Problem(str(folder), f"could not claim this {what} for writing ({claim} keeps coming back)"))
    try:
        yield folder
    finally:
        with contextlib.suppress(OSError):
            claim.unlink()
