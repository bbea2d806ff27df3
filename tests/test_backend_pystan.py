"""The embedded (httpstan) backend: compiling, caching, sampling, message handling, errors.

All tests that need a compiled model share ONE program (compiling costs about a
minute). The compiled module is cached in $STANGEN_CACHE if set, else in the
default cache (~/.cache/stangen), so reruns do not compile again.
"""
from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time
import uuid
from pathlib import Path

import numpy as np
import pytest

from stangen.backends import BackendError, CompiledModel, Draws, SamplerSettings, get_backend
from stangen.backends import cache
from stangen.backends.pystan import ChainMessages, PyStanBackend, assemble_variables, parse_draw_lines, prepare_data

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


@pytest.fixture(scope="session")
def backend() -> PyStanBackend:
    b = get_backend("pystan")
    assert isinstance(b, PyStanBackend)
    return b


@pytest.fixture(scope="session")
def compiled(backend: PyStanBackend) -> CompiledModel:
    """The one compiled test model; the compile must leave nothing in the cwd."""
    cwd = os.getcwd()
    before = set(os.listdir(cwd))
    model = backend.compile(PROGRAM)
    assert os.getcwd() == cwd
    assert not os.path.exists(os.path.join(cwd, "build"))
    assert set(os.listdir(cwd)) == before
    return model


@pytest.fixture(scope="session")
def draws(backend: PyStanBackend, compiled: CompiledModel) -> Draws:
    return backend.sample(compiled, _data(), SamplerSettings(chains=4, warmup=500, draws=400, seed=11, quiet=True))


# ------------------------------------------------------------------------------------------------
# compile + sample


@pytest.mark.sampling
def test_compiled_model_fields(backend: PyStanBackend, compiled: CompiledModel) -> None:
    assert compiled.backend == "pystan"
    assert compiled.program == PROGRAM
    assert compiled.key == cache.program_key("pystan", backend.stan_version, PROGRAM)
    assert len(compiled.key) == 64
    assert backend.stan_version.startswith("2.")
    assert Path(compiled.handle.module_path).is_file()
    assert Path(compiled.handle.program_path).read_text() == PROGRAM


@pytest.mark.sampling
def test_sample_shapes_and_estimates(draws: Draws) -> None:
    data = _data()
    assert set(draws.variables) == {"mu", "sigma", "m"}
    assert draws.variables["mu"].shape == (4, 400)
    assert draws.variables["sigma"].shape == (4, 400)
    assert draws.variables["m"].shape == (4, 400, 2, 3)
    assert abs(draws.variables["mu"].mean() - data["y"].mean()) < 0.5
    assert abs(draws.variables["sigma"].mean() - data["y"].std()) < 0.6
    assert np.all(draws.variables["sigma"] > 0)
    # the 6 entries of m are distinct parameters (not a column copied around)
    flat = draws.variables["m"].reshape(4 * 400, 6)
    assert np.linalg.matrix_rank(flat) == 6

    stats = draws.sample_stats
    assert set(stats) == {"lp", "acceptance_rate", "step_size", "tree_depth", "n_leapfrog", "diverging", "energy"}
    for value in stats.values():
        assert value.shape == (4, 400)
    assert stats["diverging"].dtype == bool
    assert stats["tree_depth"].dtype.kind == "i" and stats["n_leapfrog"].dtype.kind == "i"
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))
    assert np.all(stats["step_size"] > 0)
    assert np.all(stats["step_size"] == stats["step_size"][:, :1])  # constant after warmup
    assert np.all(np.isfinite(stats["lp"]))

    assert draws.backend == "pystan"
    assert draws.stan_version.startswith("2.")
    assert draws.sample_seconds > 0
    assert draws.settings.chains == 4


@pytest.mark.sampling
def test_chains_differ(draws: Draws) -> None:
    mu = draws.variables["mu"]
    assert not np.array_equal(mu[0], mu[1])


@pytest.mark.sampling
def test_same_seed_identical_other_seed_different(backend: PyStanBackend, compiled: CompiledModel) -> None:
    data = _data()
    a = backend.sample(compiled, data, SamplerSettings(seed=123, **FAST))
    b = backend.sample(compiled, data, SamplerSettings(seed=123, **FAST))
    c = backend.sample(compiled, data, SamplerSettings(seed=124, **FAST))
    for name in a.variables:
        assert np.array_equal(a.variables[name], b.variables[name]), name
    for name in a.sample_stats:
        assert np.array_equal(a.sample_stats[name], b.sample_stats[name]), name
    assert not np.array_equal(a.variables["mu"], c.variables["mu"])


@pytest.mark.sampling
def test_parallel_chains_do_not_change_draws(backend: PyStanBackend, compiled: CompiledModel) -> None:
    data = _data()
    serial = backend.sample(compiled, data, SamplerSettings(seed=5, parallel_chains=1, **FAST))
    parallel = backend.sample(compiled, data, SamplerSettings(seed=5, parallel_chains=2, **FAST))
    assert np.array_equal(serial.variables["m"], parallel.variables["m"])


@pytest.mark.sampling
def test_zero_rows_and_list_data(backend: PyStanBackend, compiled: CompiledModel) -> None:
    empty = backend.sample(compiled, {"N": 0, "y": np.zeros(0), "X": np.zeros((0, 2))}, SamplerSettings(**FAST))
    assert empty.variables["m"].shape == (2, 300, 2, 3)
    as_lists = backend.sample(compiled, {"N": 0, "y": [], "X": []}, SamplerSettings(**FAST))
    assert as_lists.variables["mu"].shape == (2, 300)
    plain = backend.sample(
        compiled, {"N": np.int64(3), "y": [1.0, 2, 3.5], "X": [[0, 1], [1, 0], [2, 2]]}, SamplerSettings(**FAST)
    )
    assert plain.variables["sigma"].shape == (2, 300)


@pytest.mark.sampling
def test_no_progress_output_when_not_a_tty(backend: PyStanBackend, compiled: CompiledModel, capfd) -> None:
    backend.sample(compiled, _data(), SamplerSettings(chains=2, warmup=100, draws=100, quiet=False))
    out, err = capfd.readouterr()
    assert "chain" not in err and "chain" not in out


# ------------------------------------------------------------------------------------------------
# the cache


@pytest.mark.sampling
def test_second_compile_is_cached(backend: PyStanBackend, compiled: CompiledModel, monkeypatch) -> None:
    import httpstan.models

    def forbidden(*args, **kwargs):
        raise AssertionError("compiled although the program is cached")

    monkeypatch.setattr(httpstan.models, "build_services_extension_module", forbidden)
    t0 = time.perf_counter()
    again = backend.compile(PROGRAM)
    assert time.perf_counter() - t0 < 2
    assert again.compiled_now is False
    assert again.key == compiled.key
    assert again.handle.module_path == compiled.handle.module_path


@pytest.mark.sampling
def test_cache_survives_processes(compiled: CompiledModel) -> None:
    code = textwrap.dedent(
        """
        import json, sys
        from stangen.backends import get_backend
        m = get_backend("pystan").compile(sys.stdin.read())
        print(json.dumps({"compiled_now": m.compiled_now, "key": m.key, "seconds": m.compile_seconds}))
        """
    )
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))
    done = subprocess.run(
        [sys.executable, "-c", code], input=PROGRAM, capture_output=True, text=True, env=env, timeout=300
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["compiled_now"] is False
    assert result["key"] == compiled.key


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
        from stangen.backends import cache
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


@pytest.mark.sampling
def test_initialization_failure_message(backend: PyStanBackend, compiled: CompiledModel) -> None:
    data = {"N": 3, "y": [1.0, float("nan"), 2.0], "X": np.zeros((3, 2))}
    with pytest.raises(BackendError) as info:
        backend.sample(compiled, data, SamplerSettings(**FAST))
    message = str(info.value)
    assert "could not find a starting point" in message
    assert "init=0.5" in message
    assert "is nan" in message  # the tail of Stan's own messages
    assert "httpstan_" not in message  # temp paths replaced by the cached program path
    assert info.value.record["stderr_tail"]


@pytest.mark.sampling
def test_data_mismatch_message(backend: PyStanBackend, compiled: CompiledModel) -> None:
    with pytest.raises(BackendError) as info:
        backend.sample(compiled, {"N": 4, "y": [1.0, 2.0, 3.0], "X": np.zeros((4, 2))}, SamplerSettings(**FAST))
    assert "rejected the data" in str(info.value) and "y" in str(info.value)
    with pytest.raises(BackendError):
        backend.sample(compiled, {"N": 1, "y": ["a"], "X": np.zeros((1, 2))}, SamplerSettings(**FAST))
    with pytest.raises(BackendError):
        backend.sample(compiled, _data(), SamplerSettings(seed=-1))


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


_RUNNER = textwrap.dedent(
    """
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started from a background shell
    import numpy as np
    from stangen.backends import SamplerSettings, get_backend
    b = get_backend("pystan")
    m = b.compile(sys.argv[1])
    settings = SamplerSettings(chains=3, parallel_chains=2, warmup=int(sys.argv[2]), draws=int(sys.argv[2]), quiet=False)
    print("sampling", flush=True)
    try:
        d = b.sample(m, {"N": 3, "y": [1.0, 2.0, 3.0], "X": np.zeros((3, 2))}, settings)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    print("done", d.variables["m"].shape, flush=True)
    """
)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.mark.sampling
def test_progress_on_tty(compiled: CompiledModel) -> None:
    pty = pytest.importorskip("pty")
    import threading

    master, slave = pty.openpty()
    chunks: list[bytes] = []

    def read_master() -> None:
        while True:
            try:
                data = os.read(master, 65536)
            except OSError:  # EIO once the child side is closed
                return
            if not data:
                return
            chunks.append(data)

    reader = threading.Thread(target=read_master, daemon=True)
    reader.start()
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", _RUNNER, PROGRAM, "15000"],
            stdout=subprocess.PIPE, stderr=slave, env=_env(), text=True,
        )
        os.close(slave)
        out, _ = proc.communicate(timeout=120)
        reader.join(10)
    finally:
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "done (3, 15000, 2, 3)" in out
    assert "chain 1: " in err and "chain 3: " in err
    assert "chain 3: waiting" in err  # parallel_chains=2
    assert "(warmup)" in err or "(sampling)" in err  # an update while running
    assert "30000/30000 done" in err


def _children(pid: int) -> list[int]:
    kids = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                kids.append(int(entry))
    return kids


def _alive(pid: int) -> bool:
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.sampling
def test_ctrl_c_stops_all_chain_processes(compiled: CompiledModel) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", _RUNNER, PROGRAM, "5000000"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=_env(), text=True,
    )
    try:
        assert proc.stdout.readline().strip() == "sampling"
        deadline = time.monotonic() + 30
        kids: list[int] = []
        while time.monotonic() < deadline:
            kids = _children(proc.pid)
            if len(kids) >= 2:
                break
            time.sleep(0.1)
        assert len(kids) == 2, "expected two chain processes (parallel_chains=2)"
        time.sleep(0.5)
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert "interrupted" in out
    assert "KeyboardInterrupt" in err
    assert proc.returncode != 0
    assert not [k for k in kids if _alive(k)]


def test_get_backend_names() -> None:
    from stangen.backends import cmdstan_available

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


# ------------------------------------------------------------------------------------------------
# the CmdStan backend's plumbing, against a fake CmdStan (no CmdStan can be installed here)

_CSV_HEADER = """# stan_version_major = 2
# stan_version_minor = 35
# stan_version_patch = 0
# model = model_model
# method = sample (Default)
#   sample
#     num_samples = {draws}
#     num_warmup = {warmup}
#     save_warmup = false
#     thin = 1 (Default)
#     adapt
#       engaged = true (Default)
#       delta = 0.8 (Default)
#     algorithm = hmc (Default)
#       hmc
#         engine = nuts (Default)
#           nuts
#             max_depth = 10 (Default)
#         metric = diag_e (Default)
#         stepsize = 1 (Default)
#         stepsize_jitter = 0 (Default)
#     num_chains = 1 (Default)
# id = {chain}
# data
#   file = data.json
# init = 2 (Default)
# random
#   seed = {seed}
# output
#   file = out.csv
# stanc_version = stanc3 v2.35.0
"""
_CSV_COLUMNS = ["lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__", "mu",
                "sigma"] + [f"m.{i}.{j}" for j in (1, 2, 3) for i in (1, 2)]  # Stan writes column-major


def _write_csvs(out_dir: str, chains: int, draws: int, warmup: int, seed: int) -> list[str]:
    files = []
    for chain in range(1, chains + 1):
        lines = [_CSV_HEADER.format(draws=draws, warmup=warmup, chain=chain, seed=seed).rstrip("\n"),
                 ",".join(_CSV_COLUMNS), "# Adaptation terminated", "# Step size = 0.9",
                 "# Diagonal elements of inverse mass matrix:", "# " + ", ".join(["1"] * 8)]
        for k in range(draws):
            m = {f"m.{i}.{j}": 1000 * chain + 100 * k + 10 * i + j for i in (1, 2) for j in (1, 2, 3)}
            row = [-1.0 - k, 0.9, 0.9, 2, 3, k % 2, 1.5, 0.5 * chain + k, 1.0] + [m[c] for c in _CSV_COLUMNS[9:]]
            lines.append(",".join(str(v) for v in row))
        lines += ["# ", "#  Elapsed Time: 0.001 seconds (Warm-up)", "#                0.002 seconds (Sampling)",
                  "#                0.003 seconds (Total)", "# "]
        path = os.path.join(out_dir, f"model-{chain}.csv")
        Path(path).write_text("\n".join(lines) + "\n")
        files.append(path)
    return files


@pytest.fixture
def fake_cmdstan(tmp_path, monkeypatch):
    """$CMDSTAN → a directory with a makefile and the real stanc; CmdStanModel replaced by a fake."""
    import httpstan
    import cmdstanpy

    home = tmp_path / "cmdstan-2.35.0"
    (home / "bin").mkdir(parents=True)
    (home / "makefile").write_text("CMDSTAN_VERSION := 2.35.0\n")
    (home / "bin" / "stanc").symlink_to(Path(httpstan.__file__).parent / "stanc")
    monkeypatch.setenv("CMDSTAN", str(home))
    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    calls: list = []

    class FakeModel:
        def __init__(self, stan_file=None, exe_file=None, **kwargs):
            calls.append(("init", stan_file, exe_file))
            if exe_file is None:  # "compile"
                Path(stan_file).with_suffix("").write_text("#!/bin/false\n")

        def sample(self, data=None, **kwargs):
            calls.append(("sample", data, kwargs))
            files = _write_csvs(kwargs["output_dir"], kwargs["chains"], kwargs["iter_sampling"],
                                kwargs["iter_warmup"], kwargs["seed"])
            return cmdstanpy.from_csv(files)

    monkeypatch.setattr(cmdstanpy, "CmdStanModel", FakeModel)
    return calls


def test_cmdstan_backend_with_fake_cmdstan(fake_cmdstan, tmp_path) -> None:
    from stangen.backends import cmdstan_available
    from stangen.backends.cmdstan import CmdStanBackend

    assert cmdstan_available()
    backend = CmdStanBackend()
    assert backend.stan_version == "2.35.0"
    model = backend.compile(PROGRAM)
    assert model.compiled_now is True and model.backend == "cmdstan"
    assert model.key == cache.program_key("cmdstan", "2.35.0", PROGRAM)
    again = backend.compile(PROGRAM)
    assert again.compiled_now is False
    assert [c[0] for c in fake_cmdstan] == ["init"]  # compiled once

    draws = backend.sample(model, {"N": 0, "y": np.zeros(0), "X": np.zeros((0, 2))},
                           SamplerSettings(chains=2, warmup=7, draws=3, seed=9, init=0.5, quiet=True))
    _, data, kwargs = fake_cmdstan[-1]
    assert data == {"N": 0, "y": [], "X": []}
    assert (kwargs["chains"], kwargs["iter_warmup"], kwargs["iter_sampling"], kwargs["seed"]) == (2, 7, 3, 9)
    assert kwargs["inits"] == 0.5 and kwargs["show_progress"] is False
    assert not Path(kwargs["output_dir"]).exists()  # CSV scratch folder removed
    assert draws.variables["m"].shape == (2, 3, 2, 3)
    assert draws.variables["m"][1, 2].tolist() == [[2211, 2212, 2213], [2221, 2222, 2223]]  # row-major
    assert draws.variables["mu"].tolist() == [[0.5, 1.5, 2.5], [1.0, 2.0, 3.0]]
    assert draws.sample_stats["diverging"].tolist() == [[False, True, False]] * 2
    assert draws.sample_stats["tree_depth"].dtype.kind == "i"
    assert draws.backend == "cmdstan"

    with pytest.raises(BackendError) as info:
        backend.compile("parameters { real mu }\nmodel { }\n")
    assert "bug in stangen" in str(info.value) and "line 1" in str(info.value)


def test_cmdstan_missing_message(tmp_path, monkeypatch) -> None:
    from stangen.backends.cmdstan import CmdStanBackend

    monkeypatch.setenv("CMDSTAN", str(tmp_path / "nowhere"))
    with pytest.raises(BackendError) as info:
        CmdStanBackend()
    message = str(info.value)
    assert "not available" in message and "install-cmdstan" in message and "pystan" in message


def test_stans_own_chain_timing_is_read_from_console_lines_and_csv_comments() -> None:
    """Both backends report Stan's per-chain phase times (the benchmark's µs/gradient divides by them):
    PyStan's console messages arrive one line at a time; CmdStan writes them as comments ending its CSV."""
    from stangen.backends.base import elapsed_seconds

    cm = ChainMessages()
    for line in ("info:Elapsed Time: 0.05 seconds (Warm-up)", "info:               0.04 seconds (Sampling)",
                 "info:               0.09 seconds (Total)"):
        cm.feed(_logger(line))
    assert cm.elapsed == {"warmup": 0.05, "sampling": 0.04, "total": 0.09}
    csv_tail = ("lp__,accept_stat__\n-1.2,0.9\n#\n#  Elapsed Time: 1.5e-02 seconds (Warm-up)\n"
                "#                0.037 seconds (Sampling)\n#                0.052 seconds (Total)\n#\n")
    assert elapsed_seconds(csv_tail) == {"warmup": 0.015, "sampling": 0.037, "total": 0.052}
    assert elapsed_seconds("no timing here") == {}
