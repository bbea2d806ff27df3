"""What every backend does around its running chains: the progress display, stopping on SIGTERM, and turning
a failed chain into advice. One piece each, shared by the embedded and the CmdStan backend."""
from __future__ import annotations

import contextlib
import re
import signal
import sys
import threading
import time
from typing import Any, Iterator, Protocol

from .base import SamplerSettings, backend_error

# Stan's progress lines: "Iteration:  100 / 2000 [  5%]  (Warmup)"
PROGRESS = re.compile(r"Iteration:\s*(\d+)\s*/\s*(\d+)\s*\[\s*\d+%\]\s*\((\w+)\)")
# what Stan says when no initial value works
_INIT_FAILED = ("Initialization failed", "Initialization between", "Rejecting initial value")


class RunningChain(Protocol):
    index: int  # 0-based; Stan's chain id is index + 1
    state: str  # waiting | running | done | failed

    def position(self) -> tuple[int, int, str]:
        """(iteration, total iterations, phase) as far as Stan has reported."""


def die_with_parent(signum: int) -> None:  # pragma: no cover - runs in a chain process
    """Linux: have the kernel send `signum` to this (chain) process when its parent dies, so a stangen process
    killed outright leaves no chain running. Elsewhere nothing happens."""
    if sys.platform.startswith("linux"):
        with contextlib.suppress(Exception):
            import ctypes

            ctypes.CDLL(None, use_errno=True).prctl(1, signum)  # PR_SET_PDEATHSIG


def stderr_is_tty() -> bool:
    try:
        return sys.stderr is not None and sys.stderr.isatty()
    except (AttributeError, ValueError):
        return False


class Progress:
    """Per-chain progress lines on stderr (a TTY only), redrawn in place."""

    def __init__(self, chains: list[RunningChain], total: int, enabled: bool):
        self.chains, self.total, self.enabled = chains, total, enabled
        self._drawn = False
        self._last = 0.0

    def update(self, force: bool = False) -> None:
        if not self.enabled:
            return
        now = time.monotonic()
        if not force and now - self._last < 0.25:
            return
        self._last = now
        lines = []
        for c in self.chains:
            iteration, total, phase = c.position()
            if c.state == "waiting":
                text = "waiting"
            elif c.state == "failed":
                text = "failed"
            elif c.state == "done":
                text = f"{self.total}/{self.total} done"
            elif total:
                text = f"{iteration}/{total} ({'warmup' if phase.lower().startswith('warm') else 'sampling'})"
            else:
                text = "starting"
            lines.append(f"chain {c.index + 1}: {text}")
        out = sys.stderr
        try:
            if self._drawn:
                out.write(f"\x1b[{len(lines)}F")
            out.write("".join(f"\x1b[2K{line}\n" for line in lines))
            out.flush()
            self._drawn = True
        except (OSError, ValueError):
            self.enabled = False


def _raise_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(128 + signum)


@contextlib.contextmanager
def exit_on_sigterm() -> Iterator[None]:
    """While chains run, turn a default SIGTERM into SystemExit, so the `finally` that stops the chain
    processes and removes their files runs (Python's default would end the process at once). Nothing changes
    outside the main thread, or when the application installed its own handler."""
    old = None
    if threading.current_thread() is threading.main_thread():
        with contextlib.suppress(ValueError, OSError):
            if signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
                old = signal.signal(signal.SIGTERM, _raise_sigterm)
    try:
        yield
    finally:
        if old is not None:
            signal.signal(signal.SIGTERM, old)


def indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def chain_failure(chain: int, detail: str, stan_tail: str, settings: SamplerSettings, record: dict) -> Exception:
    """The error for a chain that failed: advice when Stan found no starting point, else what happened."""
    text = f"{detail}\n{stan_tail}"
    rec = {**record, "chain": chain, "stderr_tail": stan_tail, "exception": detail}
    if any(marker in text for marker in _INIT_FAILED):
        return backend_error(
            f"Stan could not find a starting point (chain {chain}): at every random initial value "
            f"(uniform in (-{settings.init:g}, {settings.init:g}) on the unconstrained scale) the log "
            "density or its gradient was not finite. Try init=0.5 (a narrower range), or check the priors "
            "and the data (e.g. a scale that can be zero, extreme predictor values).\n"
            f"Stan's last messages:\n{indent(stan_tail or detail)}",
            rec,
        )
    return backend_error(
        f"Sampling failed in chain {chain}: {detail}\n"
        + (f"Stan's last messages:\n{indent(stan_tail)}\n" if stan_tail else "")
        + f"The program is at: {record.get('program_path')}",
        rec,
    )
