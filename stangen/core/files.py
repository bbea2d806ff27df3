"""Writing files so that no reader ever sees half of one, and so that two writers never share a temporary
name: every file is written under a unique hidden name in its own folder, then renamed over the target
(a rename within a folder is atomic). A whole folder (a run directory) is written the same way with
`write_folder`: into a hidden sibling, which then replaces it; a second writer of the same folder at the same
time gets a clear error (`claimed`)."""
from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import os
import re
import shutil
import stat
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator

from .errors import Problem, UserError

CLAIM_SUFFIX = ".stangen-writing"


def file_sha256(path: str | Path) -> str:
    """A file's sha256, read in blocks."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def temporary_name(path: Path) -> Path:
    """A new, unique hidden file beside `path` (created empty), for writing `path` atomically."""
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    return Path(tmp)


def write_with(path: str | Path, write: Callable[[Path], None], *, mode: int | None = None,
               what: str = "file") -> Path:
    """Call `write(tmp)` to write a temporary file beside `path`, then rename it to `path`; on any failure
    (a full disk, an interrupt) the temporary file is removed and `path` is left as it was. `mode`: the
    file's permissions (mkstemp's default is 0600). A path that cannot be written (a folder, a read-only or
    full disk, no permission) is a UserError naming it, with the free space where that matters."""
    path = Path(path)
    if path.is_dir():
        raise UserError(Problem(str(path), "is a folder: give the name of a file to write"))
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = temporary_name(path)
    except OSError as err:
        raise place_error(path, err, what) from None
    try:
        write(tmp)
        if mode is not None:
            os.chmod(tmp, mode)
        os.replace(tmp, path)
    except BaseException as err:
        with contextlib.suppress(OSError):
            tmp.unlink()
        if isinstance(err, OSError) and err.errno in PLACE_ERRORS:
            raise place_error(path, err, what) from None
        raise
    return path


def write_text(path: str | Path, text: str, *, mode: int | None = None) -> Path:
    return write_with(path, lambda tmp: tmp.write_text(text, encoding="utf-8"), mode=mode)


def alive(pid: int) -> bool:
    """Whether a process with this id runs on this machine."""
    try:
        os.kill(pid, 0)
    except OSError as err:
        return err.errno == errno.EPERM  # exists, owned by someone else
    return True


LEFTOVER_AGE = 60.0  # seconds: a scratch folder younger than this is never cleared (its owner may be starting)


def scratch_folder(base: str | Path, prefix: str) -> Path:
    """A fresh folder `<prefix><pid>-<random>` in `base`, for one process's scratch files (chain sockets, CSV
    files). Its owner removes it on every exit it sees; what a killed owner (SIGKILL) left is cleared here,
    by the next process that makes one."""
    base = Path(base)
    base.mkdir(parents=True, exist_ok=True)
    clear_leftover_scratch(base, prefix)
    return Path(tempfile.mkdtemp(prefix=f"{prefix}{os.getpid()}-", dir=base))


def clear_leftover_scratch(base: Path, prefix: str, min_age: float = LEFTOVER_AGE) -> list[Path]:
    """Remove the scratch folders of dead processes: named `<prefix><pid>-…` by `scratch_folder`, a real
    folder (not a link) owned by this user, untouched for `min_age` seconds, and its process gone. Never
    by name alone: a shared temporary folder holds other users' and other programs' files."""
    pattern = re.compile(re.escape(prefix) + r"(\d+)-[A-Za-z0-9_]+")
    cleared = []
    with contextlib.suppress(OSError):
        for entry in os.scandir(base):
            found = pattern.fullmatch(entry.name)
            if not found:
                continue
            with contextlib.suppress(OSError):
                info = entry.stat(follow_symlinks=False)
                if (stat.S_ISDIR(info.st_mode) and info.st_uid == os.getuid()
                        and time.time() - info.st_mtime >= min_age and not alive(int(found.group(1)))):
                    shutil.rmtree(entry.path)
                    cleared.append(Path(entry.path))
    return cleared


def claim_path(folder: Path) -> Path:
    """The claim file of a folder: beside it, so that it outlives the folder's replacement."""
    return folder.parent / f".{folder.name}{CLAIM_SUFFIX}"


@contextlib.contextmanager
def claimed(folder: str | Path, what: str = "run directory") -> Iterator[Path]:
    """Hold `folder` for writing: a claim file beside it, made with O_EXCL, names this process. Another
    process that tries while the claim holds gets a UserError naming the folder and the writer; a claim left
    by a process that no longer runs (killed mid-write) is taken over."""
    folder = Path(folder)
    claim = claim_path(folder)
    for _ in range(2):
        try:
            folder.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(claim, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
        except FileExistsError:
            try:
                holder = int(claim.read_text().strip() or "0")
            except (OSError, ValueError):
                holder = 0
            if holder and alive(holder) and holder != os.getpid():
                raise UserError(Problem(str(folder), f"another stangen process (pid {holder}) is writing this {what}; "
                                                     "wait for it, or write to another folder")) from None
            with contextlib.suppress(OSError):
                claim.unlink()  # left by a writer that is gone (or by this process): taken over
            continue
        except OSError as err:
            raise place_error(folder, err, what) from None
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


# errors of the disk or the place, not of stangen: a user error naming the path (exit 1)
DISK_ERRORS = (errno.ENOSPC, errno.EDQUOT, errno.EROFS, errno.EACCES, errno.EPERM, errno.EFBIG)
PLACE_ERRORS = DISK_ERRORS + (errno.EISDIR, errno.ENOTDIR, errno.ENOENT, errno.ENAMETOOLONG, errno.ELOOP)


def _free_space(path: Path) -> str:
    for where in (path, *path.parents):
        with contextlib.suppress(OSError):
            free = shutil.disk_usage(where).free
            return f"{free / 1e9:.1f} GB" if free >= 1e8 else f"{free / 1e6:.1f} MB"
    return "unknown"


def place_error(path: Path, err: OSError, what: str) -> UserError:
    """The user error for a file or folder that cannot be written where asked."""
    space = f" ({_free_space(path.parent)} free there)" if err.errno in (errno.ENOSPC, errno.EDQUOT, errno.EFBIG) else ""
    return UserError(Problem(str(path), f"could not write the {what}: {err.strerror or err}{space}"))


def refuse_protected(out: str | Path, what: str) -> Path:
    """An output folder that a command fills (and a rerun replaces or adds to): never the file system's root,
    the home folder or the working folder, nor a folder above them, and not an existing file."""
    out = Path(out)
    where = out.expanduser().resolve()
    protected = {Path("/").resolve(), Path.home().resolve(), Path.cwd().resolve()}
    if where in protected or any(where in p.parents for p in protected):
        raise UserError(Problem(str(out), f"a {what} is written into a folder of its own: not the root, the home "
                                          "or the working folder; give e.g. runs/NAME"))
    if where.exists() and not where.is_dir():
        raise UserError(Problem(str(out), f"is a file, not a folder: give a folder for the {what}"))
    _probe(where, what)
    return out


def _probe(folder: Path, what: str) -> None:
    """Whether a folder can be made here: a hidden folder made and removed at once in the nearest existing
    folder on the way (checked before minutes of sampling, not after)."""
    existing = next((p for p in (folder, *folder.parents) if p.exists()), Path("/"))
    try:
        if not existing.is_dir():
            raise NotADirectoryError(errno.ENOTDIR, os.strerror(errno.ENOTDIR), str(existing))
        os.rmdir(tempfile.mkdtemp(prefix=".stangen-probe-", dir=existing))
    except OSError as err:
        raise place_error(folder, err, what) from None


def check_output_folder(out: str | Path, what: str, own: tuple[str, ...]) -> Path:
    """An output folder of a workflow (sbc, kfold, plan, pooling): not a protected place (refuse_protected),
    and, if it exists, holding nothing but the files it writes (`own`: names or glob patterns), so that
    another program's folder is never written into."""
    out = refuse_protected(out, what)
    shown = foreign_files(out, own)
    if shown:
        raise UserError(Problem(str(out), f"holds files a {what} does not write ({shown}): choose another "
                                          "folder (a new one is made)"))
    return out


def foreign_files(folder: Path, own) -> str:
    """The first few names in `folder` that match none of `own` (names or glob patterns), as text; "" when
    there are none or the folder does not exist."""
    if not folder.is_dir():
        return ""
    others = sorted(p.name for p in folder.iterdir() if not any(fnmatch.fnmatchcase(p.name, o) for o in own))
    return ", ".join(others[:5]) + (" …" if len(others) > 5 else "")


def _leftovers(target: Path) -> None:
    """Remove what killed writers of `target` left beside it: staging and old folders, named like scratch
    folders by their writer's pid, of processes that no longer run. Any age: the caller holds the claim, so
    no live writer of `target` but this one exists."""
    for kind in (".staging-", ".old-"):
        clear_leftover_scratch(target.parent, f".{target.name}{kind}", min_age=0)


def write_folder(target: str | Path, fill: Callable[[Path], None], what: str = "run directory") -> Path:
    """Write a whole folder atomically: `fill(staging)` writes the contents into a fresh hidden sibling of
    `target`, which then takes its place. Until that moment the previous folder at `target` stays whole; after
    it, the previous one is removed. Another process writing the same target at the same time is refused
    (claimed). A disk that is full or read-only gives a UserError naming the path and the free space, and
    leaves the previous folder as it was; nothing half-written stays behind."""
    target = Path(target)
    with claimed(target, what):
        _leftovers(target)
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}.staging-{os.getpid()}-", dir=target.parent))
        old = None
        try:
            fill(staging)
            os.chmod(staging, 0o755)  # mkdtemp makes 0700; a run is read like other folders
            if target.exists():
                old = target.parent / f".{target.name}.old-{os.getpid()}-{staging.name.rsplit('-', 1)[-1]}"
                os.rename(target, old)
            os.rename(staging, target)
        except OSError as err:
            shutil.rmtree(staging, ignore_errors=True)
            if old is not None and not target.exists():
                os.rename(old, target)  # the previous folder back in its place
            if err.errno in PLACE_ERRORS:
                raise UserError(Problem(str(target), f"could not write the {what}: {err.strerror} "
                                        f"({_free_space(target.parent)} free there); the previous {what} at this "
                                        "path, if any, is unchanged")) from None
            raise
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise
        if old is not None:
            shutil.rmtree(old, ignore_errors=True)
    return target
