"""What every backend does around its running chains: the progress display, stopping on SIGTERM, and turning
a failed chain into advice. One piece each, shared by the embedded and the CmdStan backend."""
from __future__ import annotations

import contextlib
import os
import re
import signal
import sys
import threading
import time
from typing import Any, Iterator, Protocol

from tqdm import tqdm

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


def in_notebook() -> bool:
    """Running in a Jupyter kernel (IPython's ZMQ shell), where stderr is shown under the cell."""
    ipython = sys.modules.get("IPython")
    shell = getattr(ipython, "get_ipython", lambda: None)() if ipython is not None else None
    return type(shell).__name__ == "ZMQInteractiveShell"


def display_mode() -> str:
    """Where progress goes: 'live' (a terminal or a notebook: tqdm bars redrawn in place) or 'log' (a file, a
    pipe, CI: a plain line every LOG_SECONDS)."""
    return "live" if stderr_is_tty() or in_notebook() else "log"


LOG_SECONDS = 10.0  # a progress line in a log at most this often


def terminal_size(default: tuple[int, int] = (100, 50)) -> tuple[int, int]:
    """stderr's (columns, rows), each `default`'s where it has none (a notebook; a pseudo-terminal that reports
    0 x 0, where tqdm would hide every bar)."""
    try:
        size = os.get_terminal_size(sys.stderr.fileno())
        return size.columns or default[0], size.lines or default[1]
    except (AttributeError, OSError, ValueError):
        return default


class Progress:
    """Per-chain progress on stderr: in a terminal or a notebook a tqdm bar per chain (tqdm handles widths,
    refresh rates and notebooks; it is installed with cmdstanpy anyway), in a log one line every LOG_SECONDS.
    Off when not `enabled` (quiet). What Stan says goes to stan.log either way."""

    def __init__(self, chains: list[RunningChain], total: int, enabled: bool):
        self.chains, self.total, self.enabled = chains, total, enabled
        self.mode = display_mode()
        self._bars: list[Any] = []
        self._last = time.monotonic()

    def _text(self, c: RunningChain) -> tuple[int, str]:
        iteration, total, phase = c.position()
        if c.state in ("waiting", "failed"):
            return 0, c.state
        if c.state == "done":
            return self.total, "done"
        if not total:
            return 0, "starting"
        return iteration, "warmup" if phase.lower().startswith("warm") else "sampling"

    def update(self, force: bool = False) -> None:
        if not self.enabled:
            return
        try:
            if self.mode == "live":
                self._draw()
            elif force or time.monotonic() - self._last >= LOG_SECONDS:
                self._last = time.monotonic()
                if force and all(c.state == "done" for c in self.chains):
                    return  # (the fit's own lines say it finished)
                states = [self._text(c) for c in self.chains]
                print("; ".join(f"chain {c.index + 1}: {n}/{self.total} {what}" for c, (n, what)
                                in zip(self.chains, states)), file=sys.stderr, flush=True)
        except (OSError, ValueError):
            self.enabled = False

    def _draw(self) -> None:
        if not self._bars:
            # (tqdm.std's text bars: a notebook shows them in the cell's output too, without ipywidgets)
            columns, rows = terminal_size()
            self._bars = [tqdm(total=self.total, desc=f"chain {c.index + 1}", position=k, leave=True,
                               file=sys.stderr, mininterval=0.25, ncols=columns,
                               nrows=max(rows, len(self.chains) + 1),
                               unit="starting", bar_format="{desc}: {bar} {n_fmt}/{total_fmt} {unit}")
                          for k, c in enumerate(self.chains)]
        for bar, c in zip(self._bars, self.chains):
            n, what = self._text(c)
            if n != bar.n or bar.unit != what:  # (the unit slot shows the phase: warmup, sampling, done)
                bar.n, bar.unit = n, what
                bar.refresh()
        if all(c.state in ("done", "failed") for c in self.chains):
            self.close()

    def close(self) -> None:
        for bar in self._bars:
            bar.close()
        self._bars = []


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
