"""httpstan's internals that the embedded backend uses (stangen/run/backends/httpstan_api.py), checked against
the installed httpstan: a new httpstan that moves or changes one of them fails here, by name, not somewhere
in a fit."""
from __future__ import annotations

import inspect
import json
import re
import tomllib
from pathlib import Path

import pytest

from stangen.run.backends import httpstan_api

ROOT = Path(__file__).resolve().parents[1]


def pinned_range() -> tuple[tuple[int, ...], tuple[int, ...]]:
    """httpstan's range in pyproject.toml: (lowest allowed, first not allowed)."""
    deps = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    spec = next(d for d in deps if d.startswith("httpstan"))
    low = re.search(r">=([\d.]+)", spec).group(1)
    high = re.search(r"<([\d.]+)", spec).group(1)
    return tuple(map(int, low.split("."))), tuple(map(int, high.split(".")))


def test_the_installed_httpstan_is_the_pinned_one():
    low, high = pinned_range()
    installed = tuple(int(x) for x in re.findall(r"\d+", httpstan_api.version())[:3])
    assert low <= installed < high, f"httpstan {httpstan_api.version()} is outside the range this adapter was checked for"


def test_stan_version_is_read_from_the_headers():
    assert re.fullmatch(r"2\.\d+\.\d+", httpstan_api.stan_version())


def test_the_build_functions_exist_with_the_arguments_used():
    httpstan = httpstan_api.load()
    models, cache = httpstan.models, httpstan.cache
    assert inspect.iscoroutinefunction(models.build_services_extension_module)
    assert list(inspect.signature(models.build_services_extension_module).parameters)[0] == "program_code"
    name = models.calculate_model_name("parameters { real x; } model { x ~ normal(0, 1); }")
    assert isinstance(name, str) and name.startswith("models/")
    assert isinstance(cache.model_directory(name), Path)


def test_an_unbuilt_program_has_no_cached_module(tmp_path, monkeypatch):
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path))  # httpstan's cache follows it
    assert httpstan_api.cached_module("parameters { real never_built_here; } model { }") is None


def test_compiler_commands_wraps_and_restores_setuptools_spawn():
    from setuptools._distutils import ccompiler
    before = ccompiler.CCompiler.__dict__["spawn"]
    seen = []
    with httpstan_api.compiler_commands(lambda cmd: seen.append(cmd) or cmd):
        assert ccompiler.CCompiler.__dict__["spawn"] is not before
    assert ccompiler.CCompiler.__dict__["spawn"] is before


def test_the_message_format_is_read_as_httpstan_writes_it():
    """One message of each topic, in the shape httpstan's socket writers send (newline-delimited JSON)."""
    messages = httpstan_api.ChainMessages()
    lines = [{"version": 1, "topic": "logger", "values": ["info:Iteration: 1 / 20 [  5%]  (Warmup)"]},
             {"version": 1, "topic": "sample", "values": {"lp__": -1.5, "x": 0.25}},
             {"version": 1, "topic": "logger", "values": ["info:Gradient evaluation took 1e-05 seconds"]}]
    for line in lines:
        messages.feed((json.dumps(line, separators=(",", ":")) + "\n").encode(), source=0)
    columns, draws = httpstan_api.parse_draw_lines(messages.draw_lines)
    assert columns == ["lp__", "x"] and draws.tolist() == [[-1.5, 0.25]]
    assert (messages.iteration, messages.total, messages.phase) == (1, 20, "warmup")


@pytest.mark.sampling
def test_a_built_module_offers_the_services_and_their_calling_convention():
    """The compiled module of a small program (cached after the suite's first compile of it)."""
    from stangen.compiler.program import build
    from stangen.run.backends import get_backend
    from stangen.run.backends._data import prepare_data

    program = build(ROOT / "specs" / "sleepstudy.yaml")
    module = httpstan_api.load_module(get_backend("pystan").compile(program.code).handle.module_path)
    for service in (httpstan_api.NUTS, httpstan_api.FIXED_PARAM):
        assert callable(getattr(module, service))
    names, dims = httpstan_api.parameter_names_and_dims(module, prepare_data(program.stan_data))
    assert "Intercept" in names and len(names) == len(dims)
