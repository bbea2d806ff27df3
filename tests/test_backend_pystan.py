"""The embedded (httpstan) backend's own parts: the cache, its build (cwd, leftovers, compiler errors), the
message stream httpstan sends, draws parsing. What every backend must do is in test_backend_contract.py."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from stangen.run.backends import BackendError, get_backend
from stangen.run.backends import cache
from stangen.run.backends.httpstan_api import ChainMessages, parse_draw_lines
from stangen.run.backends.pystan import PyStanBackend, assemble_variables, prepare_data

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """\
data { int<lower=0> N; vector[N] y; matrix[N, 2] X; }
parameters { real mu; real<lower=0> sigma; matrix[2, 3] m; }
model { y ~ normal(mu, sigma); to_vector(m) ~ std_normal(); mu ~ normal(0, 10); sigma ~ exponential(1); }
"""

FAST = dict(chains=2, warmup=300, draws=300, quiet=True)


def _data(n: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"N": n, "y": rng.normal(3.0, 2.0, size=n), "X": rng.normal(size=(n, 2))}


# ------------------------------------------------------------------------------------------------
# the cache


def test_cache_root_and_key(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "c"))
    assert cache.cache_root() == tmp_path / "c"
    k = cache.program_key("pystan", "2.35.0", "x")
    assert k != cache.program_key("cmdstan", "2.35.0", "x")
    assert k != cache.program_key("pystan", "2.36.0", "x")
    assert k != cache.program_key("pystan", "2.35.0", "y")
    with cache.locked(k) as lock_path:
        assert lock_path.exists()


def test_lock_excludes_other_processes(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path))
    code = textwrap.dedent(
        """
        import sys, time
        from stangen.run.backends import cache
        with cache.locked("k"):
            print("locked", flush=True)
            time.sleep(1.0)
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    proc = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stdout.readline().strip() == "locked"
        t0 = time.perf_counter()
        with cache.locked("k"):
            waited = time.perf_counter() - t0
    finally:
        proc.wait(30)
    assert waited > 0.5


# ------------------------------------------------------------------------------------------------
# builds: cwd, leftovers, compiler errors (no real C++ compilation in these tests)


def test_model_compiles_drop_debug_information_and_eigens_attribute_warnings() -> None:
    from stangen.run.backends.pch import model_compile_flags
    cmd = ["gcc", "-g", "-O3", "-Wall", "-c", "model_x.cpp", "-o", "model_x.o", "-g"]
    once = model_compile_flags(cmd)
    assert "-g" not in once and once.count("-Wno-ignored-attributes") == 1
    assert once[:-1] == ["gcc", "-O3", "-Wall", "-c", "model_x.cpp", "-o", "model_x.o"]
    assert model_compile_flags(once) == once


def _fake_build(program_code: str, *args, **kwargs):
    """Imitates httpstan's build: object files in cwd/build, the module in httpstan's cache."""
    import httpstan.cache
    import httpstan.models

    async def run():
        obj = Path("build") / "temp.linux-x86_64-cpython-311" / "model.o"
        obj.parent.mkdir(parents=True)
        obj.write_bytes(b"\0" * 1024)
        name = httpstan.models.calculate_model_name(program_code)
        directory = httpstan.cache.model_directory(name)
        directory.mkdir(parents=True, exist_ok=True)
        (directory / "stan_services_fake.cpython-311-x86_64-linux-gnu.so").write_bytes(b"not really")
        print("compiler chatter on fd 2", file=sys.__stderr__)
        return ""

    return run()


def _failing_build(program_code: str, *args, **kwargs):
    async def run():
        Path("build").mkdir()
        os.write(2, b"g++: fatal error: Killed signal terminated program cc1plus\n")
        raise RuntimeError("command '/usr/bin/g++' failed with exit code 1")

    return run()


def _unique_program() -> str:
    return PROGRAM + f"// {uuid.uuid4()}\n"


def test_build_runs_in_scratch_dir_and_cleans_up(tmp_path, monkeypatch) -> None:
    import httpstan.models

    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(httpstan.models, "build_services_extension_module", _fake_build)
    xdg = os.environ.get("XDG_CACHE_HOME")
    cwd = os.getcwd()
    backend = PyStanBackend()
    model = backend.compile(_unique_program())
    assert model.compiled_now is True
    assert os.getcwd() == cwd
    assert not Path(cwd, "build").exists()
    assert os.environ.get("XDG_CACHE_HOME") == xdg
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []  # scratch folder deleted
    assert Path(model.handle.module_path).read_bytes() == b"not really"
    assert Path(model.handle.module_path).parent.parent.parent.parent == tmp_path / "cache"
    # and the next compile of the same text is a cache hit
    monkeypatch.setattr(httpstan.models, "build_services_extension_module", _failing_build)
    assert backend.compile(model.program).compiled_now is False


def test_failed_build_restores_cwd(tmp_path, monkeypatch) -> None:
    import httpstan.models

    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(httpstan.models, "build_services_extension_module", _failing_build)
    cwd = os.getcwd()
    with pytest.raises(BackendError) as info:
        PyStanBackend().compile(_unique_program())
    assert os.getcwd() == cwd
    assert not Path(cwd, "build").exists()
    assert list((tmp_path / "cache" / "tmp").iterdir()) == []
    message = str(info.value)
    assert "Killed signal terminated program cc1plus" in message  # the compiler's stderr tail
    assert "program" in info.value.record["program_path"]


def test_missing_cxx_compiler(tmp_path, monkeypatch) -> None:
    import httpstan.models

    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("CXX", "/nonexistent/g++")
    monkeypatch.setattr(httpstan.models, "build_services_extension_module", _failing_build)
    with pytest.raises(BackendError) as info:
        PyStanBackend().compile(_unique_program())
    assert "No C++ compiler found" in str(info.value)
    assert "/nonexistent/g++" in str(info.value)


@pytest.mark.stanc
def test_stanc_error_reports_line_without_cxx(tmp_path, monkeypatch) -> None:
    import httpstan.models

    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(
        httpstan.models, "build_services_extension_module", lambda *a, **k: pytest.fail("C++ build attempted")
    )
    bad = "data { int N; }\nparameters {\n  real mu\n  real<lower=0> sigma;\n}\nmodel { mu ~ normal(0, sigma); }\n"
    t0 = time.perf_counter()
    with pytest.raises(BackendError) as info:
        PyStanBackend().compile(bad)
    assert time.perf_counter() - t0 < 20
    err = info.value
    message = str(err)
    assert "bug in stangen" in message
    assert "line 4" in message
    assert "real<lower=0> sigma;" in message  # the failing line, in context
    assert "real mu" in message
    assert err.record["line"] == 4
    path = err.record["program_path"]
    assert path in message and Path(path).read_text() == bad
    assert getattr(err, "exit_code", 3) == 3  # internal error

    undefined = "parameters { real mu; }\nmodel {\n  mu ~ normal(0, undefined_scale);\n}\n"
    with pytest.raises(BackendError) as info:
        PyStanBackend().compile(undefined)
    assert "line 3" in str(info.value) and "undefined_scale" in str(info.value)


# ------------------------------------------------------------------------------------------------
# sampling errors


# ------------------------------------------------------------------------------------------------
# message handling: any batching of the socket stream must work (httpstan's view raised IndexError)


def _logger(text: str) -> bytes:
    return json.dumps({"version": 1, "topic": "logger", "values": [text]}, separators=(",", ":")).encode() + b"\n"


def _sample(values: dict) -> bytes:
    return json.dumps({"version": 1, "topic": "sample", "values": values}, separators=(",", ":")).encode() + b"\n"


def _stream() -> bytes:
    parts = [
        _logger("info:Gradient evaluation took 1.2e-05 seconds"),
        _logger("info:1000 transitions using 10 leapfrog steps per transition would take 0.12 seconds."),
        _logger("info:Adjust your expectations accordingly!"),
        _logger("info:"),
    ]
    for it in (1, 100, 200, 201, 300, 400):
        phase = "Warmup" if it <= 200 else "Sampling"
        parts.append(_logger(f"info:Iteration: {it:4d} / 400 [{int(100 * it / 400):3d}%]  ({phase})"))
    parts.append(_sample(["Adaptation terminated"]))
    parts.append(json.dumps({"version": 1, "topic": "diagnostic", "values": {"lp__": 1.0}}).encode() + b"\n")
    for i in range(3):
        parts.append(_sample({"lp__": -1.5 - i, "accept_stat__": 0.9, "mu": 0.1 * i, "m.1.1": 1.0, "m.2.1": 2.0}))
    parts.append(_logger("warn:something odd"))
    return b"".join(parts)


def _final_state(cm: ChainMessages) -> tuple:
    return (cm.iteration, cm.total, cm.phase, list(cm.draw_lines), list(cm.log_tail), cm.bad_lines)


def test_httpstan_view_would_fail_on_this_batch() -> None:
    """The reproducer: httpstan's views.logger_callback does findall(...).pop() on a raw chunk."""
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # httpstan's schemas use deprecated marshmallow API
        import httpstan.views

    batch = _logger("info:Gradient evaluation took 1.2e-05 seconds") + _logger("info:Iteration:")[:-1]
    assert b"info:Iteration" in batch
    with pytest.raises(IndexError):
        httpstan.views.iteration_info_re.findall(batch).pop()


def test_batch_with_partial_iteration_line_does_not_raise() -> None:
    cm = ChainMessages()
    full = _logger("info:Iteration:  200 / 2000 [ 10%]  (Warmup)")
    cut = full.index(b"Iteration:") + len(b"Iteration:") + 2  # mid-progress line
    batch = _logger("info:Gradient evaluation took 1.2e-05 seconds") + full[:cut]
    assert b"info:Iteration" in batch
    cm.feed(batch, source=7)  # must not raise
    assert cm.iteration == 0
    assert "Gradient evaluation took 1.2e-05 seconds" in cm.log_tail
    cm.feed(full[cut:], source=7)
    assert (cm.iteration, cm.total, cm.phase) == (200, 2000, "warmup")


def test_info_iteration_without_progress_numbers_does_not_raise() -> None:
    cm = ChainMessages()
    cm.feed(_logger("info:Gradient evaluation took 3e-06 seconds") + _logger("info:Iteration"))
    cm.feed(_logger("info:Iteration: ???"))
    assert cm.iteration == 0
    cm.feed(b"not json at all\n" + b'{"topic":"logger","values":[\n')
    assert cm.bad_lines == 2


@pytest.mark.parametrize("chunk", [1, 2, 3, 7, 64, 100, 4096, None])
def test_any_chunking_gives_the_same_result(chunk) -> None:
    data = _stream()
    whole = ChainMessages()
    whole.feed(data)
    whole.close()
    cm = ChainMessages()
    if chunk is None:  # random cut points
        rng = np.random.default_rng(0)
        cuts = sorted(set(rng.integers(0, len(data), size=40).tolist()) | {0, len(data)})
        pieces = [data[a:b] for a, b in zip(cuts, cuts[1:])]
    else:
        pieces = [data[i : i + chunk] for i in range(0, len(data), chunk)]
    for p in pieces:
        cm.feed(p)
    cm.close()
    assert _final_state(cm) == _final_state(whole)
    assert (whole.iteration, whole.total, whole.phase) == (400, 400, "sampling")
    assert len(whole.draw_lines) == 3
    assert whole.sampler_notes == ["Adaptation terminated"]
    assert "warn: something odd" in whole.log_tail


def test_joined_progress_lines_use_the_last() -> None:
    cm = ChainMessages()
    cm.feed(b"".join(_logger(f"info:Iteration: {i} / 50 [ {2 * i}%]  (Warmup)") for i in (1, 10, 20)))
    assert cm.iteration == 20


def test_sources_are_reassembled_separately() -> None:
    cm = ChainMessages()
    a = _logger("info:Iteration: 5 / 10 [ 50%]  (Sampling)")
    b = _sample({"lp__": -1.0, "mu": 2.0})
    cm.feed(a[:10], source=1)
    cm.feed(b[:10], source=2)
    cm.feed(a[10:], source=1)
    cm.feed(b[10:], source=2)
    assert cm.iteration == 5 and len(cm.draw_lines) == 1


def test_last_line_without_newline_is_kept_on_close() -> None:
    cm = ChainMessages()
    cm.feed(_sample({"lp__": -1.0, "mu": 2.0}).rstrip(b"\n"), source=3)
    assert cm.draw_lines == []
    cm.close(source=3)
    assert len(cm.draw_lines) == 1


# ------------------------------------------------------------------------------------------------
# draws parsing and reshaping


def test_parse_and_assemble_row_major() -> None:
    # Stan writes matrix[2, 3] m column-major: m.1.1, m.2.1, m.1.2, ...
    cols = ["lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__", "mu"]
    m_cols = [f"m.{i}.{j}" for j in (1, 2, 3) for i in (1, 2)]
    lines = []
    for d in range(4):
        values = dict(zip(cols, [-1.0 - d, 0.9, 0.5, 2, 3, d % 2, 1.0, 0.25 * d]))
        values.update({name: float(name[2]) * 10 + float(name[4]) + 100 * d for name in m_cols})
        lines.append(_sample(values).rstrip(b"\n"))
    columns, arr = parse_draw_lines(lines)
    assert columns == cols + m_cols and arr.shape == (4, 14)
    variables, stats = assemble_variables(columns, np.stack([arr, arr]), ["mu", "m"], [[], [2, 3]])
    m = variables["m"]
    assert m.shape == (2, 4, 2, 3)
    assert m[0, 0].tolist() == [[11, 12, 13], [21, 22, 23]]
    assert m[1, 3, 1, 2] == 323
    assert variables["mu"].shape == (2, 4)
    assert stats["diverging"].tolist()[0] == [False, True, False, True]
    assert stats["tree_depth"].dtype.kind == "i"
    assert stats["lp"][0].tolist() == [-1, -2, -3, -4]


def test_assemble_complex_zero_size_and_unknown() -> None:
    columns = ["lp__", "z.real", "z.imag", "q.1", "q.2", "t:1"]
    arr = np.array([[[-1.0, 1.5, -2.5, 7.0, 8.0, 9.0]]])
    variables, _ = assemble_variables(columns, arr, ["z", "e", "q"], [[2], [0, 3], [2]], {"z"})
    assert variables["z"][0, 0] == 1.5 - 2.5j
    assert variables["e"].shape == (1, 1, 0, 3)
    assert variables["q"][0, 0].tolist() == [7.0, 8.0]
    assert variables["t:1"][0, 0] == 9.0  # not understood: kept under its flat name


def test_prepare_data_types() -> None:
    data = prepare_data({"a": 3, "b": [1.5, 2], "c": np.zeros((0, 2)), "d": [True, False], "e": np.arange(6).reshape(2, 3)})
    assert data["a"].shape == () and data["a"].dtype == np.int64
    assert data["b"].dtype == np.float64
    assert data["c"].shape == (0, 2)
    assert data["d"].dtype == np.int64
    assert data["e"].shape == (2, 3)
    with pytest.raises(BackendError):
        prepare_data({"big": [2**40]})
    with pytest.raises(BackendError):
        prepare_data({"ragged": [[1, 2], [3]]})


# ------------------------------------------------------------------------------------------------
# processes: progress on a TTY, Ctrl-C


def test_get_backend_names() -> None:
    from stangen.run.backends import cmdstan_available

    assert get_backend("pystan") is get_backend("embedded")
    with pytest.raises(BackendError):
        get_backend("nonsense")
    if cmdstan_available():
        assert get_backend("auto").name == "cmdstan"
    else:
        assert get_backend("auto").name == "pystan"
        with pytest.raises(BackendError) as info:
            get_backend("cmdstan")
        assert "not available" in str(info.value)
        assert "install-cmdstan" in str(info.value) and "pystan" in str(info.value)


def test_stans_own_chain_timing_is_read_from_console_lines_and_csv_comments() -> None:
    """Both backends report Stan's per-chain phase times (the benchmark's µs/gradient divides by them):
    PyStan's console messages arrive one line at a time; CmdStan writes them as comments ending its CSV."""
    from stangen.run.backends.base import elapsed_seconds

    cm = ChainMessages()
    for line in ("info:Elapsed Time: 0.05 seconds (Warm-up)", "info:               0.04 seconds (Sampling)",
                 "info:               0.09 seconds (Total)"):
        cm.feed(_logger(line))
    assert cm.elapsed == {"warmup": 0.05, "sampling": 0.04, "total": 0.09}
    csv_tail = ("lp__,accept_stat__\n-1.2,0.9\n#\n#  Elapsed Time: 1.5e-02 seconds (Warm-up)\n"
                "#                0.037 seconds (Sampling)\n#                0.052 seconds (Total)\n#\n")
    assert elapsed_seconds(csv_tail) == {"warmup": 0.015, "sampling": 0.037, "total": 0.052}
    assert elapsed_seconds("no timing here") == {}
