"""Sampling backends: compile a Stan program once (cached on disk), then draw from it.

    backend = get_backend()                 # "auto": CmdStan if installed, else embedded pystan
    model = backend.compile(program_text)   # CompiledModel; compiled_now=False on a cache hit
    draws = backend.sample(model, data, SamplerSettings(chains=4, seed=1))
    draws.variables["beta"]                 # (chains, draws, *dims)

Every backend is one module with one class (base.Backend: its name, aliases, `usable()`, compile, sample)
and one entry in BACKENDS below; nothing else names a backend.
"""
from __future__ import annotations

from .base import Backend, BackendError, CompiledModel, Draws, SamplerSettings, backend_error
from .cmdstan import CmdStanBackend, find_cmdstan
from .nutpie import NutpieBackend
from .pystan import PyStanBackend

# every backend, in the order `auto` tries them (the first usable one whose `chosen_by_auto` is not False;
# the last is the fallback, whose constructor says what is missing)
BACKENDS: tuple[type, ...] = (CmdStanBackend, NutpieBackend, PyStanBackend)

__all__ = [
    "BACKENDS",
    "Backend",
    "BackendError",
    "CompiledModel",
    "Draws",
    "SamplerSettings",
    "available_backends",
    "cmdstan_available",
    "get_backend",
]

_instances: dict[str, Backend] = {}


def _by_name() -> dict[str, type]:
    return {alias: cls for cls in BACKENDS for alias in (cls.name, *cls.aliases)}


def cmdstan_available() -> bool:
    """True if a built CmdStan installation is found ($CMDSTAN, else ~/.cmdstan)."""
    return find_cmdstan() is not None


def available_backends() -> list[str]:
    """The names of the backends that can run here, in `auto`'s order."""
    return [cls.name for cls in BACKENDS if cls.usable()]


def get_backend(name: str = "auto") -> Backend:
    """The backend called `name` (or one of its aliases): "auto" (the first usable of BACKENDS: CmdStan if
    installed, else pystan), "pystan" or "cmdstan"."""
    key = (name or "auto").strip().lower()
    if key == "auto":
        chosen = next((cls for cls in BACKENDS if getattr(cls, "chosen_by_auto", True) and cls.usable(explain=True)),
                      BACKENDS[-1])
    else:
        chosen = _by_name().get(key)
    if chosen is None:
        choices = ", ".join(f"'{cls.name}'" + (f" ({cls.summary})" if cls.summary else "") for cls in BACKENDS)
        raise backend_error(f"Unknown backend {name!r}: choose 'auto' or one of {choices}.",
                            {"what": "get_backend", "requested": name})
    backend = _instances.get(chosen.name)
    if backend is None:
        backend = _instances[chosen.name] = chosen()
    return backend
