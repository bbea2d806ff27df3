"""Sampling backends: compile a Stan program once (cached on disk), then draw from it.

    backend = get_backend()                 # "auto": CmdStan if installed, else embedded pystan
    model = backend.compile(program_text)   # CompiledModel; compiled_now=False on a cache hit
    draws = backend.sample(model, data, SamplerSettings(chains=4, seed=1))
    draws.variables["beta"]                 # (chains, draws, *dims)
"""
from __future__ import annotations

import os
import sys

from .base import Backend, BackendError, CompiledModel, Draws, SamplerSettings, backend_error

__all__ = [
    "Backend",
    "BackendError",
    "CompiledModel",
    "Draws",
    "SamplerSettings",
    "available_backends",
    "cmdstan_available",
    "get_backend",
]

_ALIASES = {
    "pystan": "pystan",
    "embedded": "pystan",
    "httpstan": "pystan",
    "cmdstan": "cmdstan",
    "cmdstanpy": "cmdstan",
}
_instances: dict[str, Backend] = {}


def cmdstan_available() -> bool:
    """True if a built CmdStan installation is found ($CMDSTAN, else ~/.cmdstan)."""
    from .cmdstan import find_cmdstan

    return find_cmdstan() is not None


_noted: set[str] = set()


def _cmdstan_or_note() -> bool:
    """True if CmdStan is there. When CMDSTAN names something unusable, say so (once) instead of falling
    back to the embedded backend without a word."""
    from .cmdstan import CmdStanMissing, locate_cmdstan

    try:
        locate_cmdstan()
        return True
    except CmdStanMissing as exc:
        if os.environ.get("CMDSTAN") and str(exc) not in _noted:
            _noted.add(str(exc))
            print(f"note: {exc}; using the embedded backend (pystan)", file=sys.stderr)
        return False


def available_backends() -> list[str]:
    names = []
    if cmdstan_available():
        names.append("cmdstan")
    try:
        import httpstan  # noqa: F401

        names.append("pystan")
    except ImportError:  # pragma: no cover
        pass
    return names


def get_backend(name: str = "auto") -> Backend:
    """The backend called `name`: "auto" (CmdStan if installed, else pystan), "pystan" or "cmdstan"."""
    key = (name or "auto").strip().lower()
    if key == "auto":
        key = "cmdstan" if _cmdstan_or_note() else "pystan"
    canonical = _ALIASES.get(key)
    if canonical is None:
        raise backend_error(
            f"Unknown backend {name!r}: choose 'auto', 'pystan' (embedded) or 'cmdstan'.",
            {"what": "get_backend", "requested": name},
        )
    backend = _instances.get(canonical)
    if backend is None:
        if canonical == "cmdstan":
            from .cmdstan import CmdStanBackend

            backend = CmdStanBackend()
        else:
            from .pystan import PyStanBackend

            backend = PyStanBackend()
        _instances[canonical] = backend
    return backend
