"""What every backend must do, run on each available one: the embedded backend always, CmdStan when $CMDSTAN
is set (../shared/cmdstan-offline/build.sh builds one offline; without it those cases skip, saying so).

Compile (once: cached by program text), sample with a seed (identical draws for the same seed, also with other
parallelism), shapes and statistics, generated quantities, a failure to initialize, data Stan rejects, a
program stanc rejects, quiet output when not on a terminal, the progress display on one, Ctrl-C and SIGTERM
(every chain process stopped, nothing left behind), and the same draws on both backends.

All of it uses ONE small program, so each backend compiles once (cached afterwards). (Its y_rep is drawn in a
loop: Stan 2.35's vectorized normal_rng crashes the process on a zero-length vector, as the N = 0 case would
find.)
"""
from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import numpy as np
import pytest

from stangen.run.backends import BackendError, CompiledModel, SamplerSettings, get_backend
from stangen.run.backends import cache
from stangen.run.backends.cmdstan import find_cmdstan
from stangen.run.backends.nutpie import NutpieBackend

ROOT = Path(__file__).resolve().parents[1]

PROGRAM = """\
data { int<lower=0> N; vector[N] y; matrix[N, 2] X; }
parameters { real mu; real<lower=0> sigma; matrix[2, 3] m; }
model { y ~ normal(mu, sigma); to_vector(m) ~ std_normal(); mu ~ normal(0, 10); sigma ~ exponential(1); }
generated quantities { vector[N] y_rep; for (n in 1:N) y_rep[n] = normal_rng(mu, sigma); }
"""

FAST = dict(chains=2, warmup=300, draws=300, quiet=True)
NO_CMDSTAN = "CmdStan is not installed here: set CMDSTAN (bash ../shared/cmdstan-offline/build.sh builds one offline)"
NO_NUTPIE = ("nutpie is not set up here: pip install 'stangen[nutpie]' and BRIDGESTAN pointing at BridgeStan's "
             "sources (bash ../shared/bridgestan-offline/setup.sh \"$CMDSTAN\")")
BACKENDS = ["pystan", pytest.param("cmdstan", marks=pytest.mark.skipif(find_cmdstan() is None, reason=NO_CMDSTAN)),
            pytest.param("nutpie", marks=pytest.mark.skipif(not NutpieBackend.usable(), reason=NO_NUTPIE))]


def _data(n: int = 40, seed: int = 0) -> dict:
    rng = np.random.default_rng(seed)
    return {"N": n, "y": rng.normal(3.0, 2.0, size=n), "X": rng.normal(size=(n, 2))}


@pytest.fixture(scope="module", params=BACKENDS)
def backend(request):
    return get_backend(request.param)


@pytest.fixture(scope="module")
def compiled(backend) -> CompiledModel:
    """The one compiled test model; the compile leaves nothing in the cwd."""
    cwd = os.getcwd()
    before = set(os.listdir(cwd))
    model = backend.compile(PROGRAM)
    assert os.getcwd() == cwd and set(os.listdir(cwd)) == before
    return model


@pytest.fixture(scope="module")
def draws(backend, compiled):
    return backend.sample(compiled, _data(), SamplerSettings(chains=4, warmup=500, draws=400, seed=11, quiet=True))


# ------------------------------------------------------------------------------------------------
# compile + sample

@pytest.mark.sampling
def test_compiled_model_fields(backend, compiled) -> None:
    assert compiled.backend == backend.name
    assert compiled.program == PROGRAM
    assert compiled.key == cache.program_key(backend.name, backend.stan_version, PROGRAM)
    assert backend.stan_version.startswith("2.")


@pytest.mark.sampling
def test_second_compile_is_cached(backend, compiled) -> None:
    t0 = time.perf_counter()
    again = backend.compile(PROGRAM)
    assert time.perf_counter() - t0 < 2
    assert again.compiled_now is False and again.key == compiled.key


@pytest.mark.sampling
def test_cache_survives_processes(backend, compiled) -> None:
    code = ("import json, sys\nfrom stangen.run.backends import get_backend\n"
            f"m = get_backend({backend.name!r}).compile(sys.stdin.read())\n"
            "print(json.dumps({'compiled_now': m.compiled_now, 'key': m.key}))")
    done = subprocess.run([sys.executable, "-c", code], input=PROGRAM, capture_output=True, text=True,
                          env=_env(), timeout=300)
    assert done.returncode == 0, done.stderr
    assert f'"compiled_now": false, "key": "{compiled.key}"' in done.stdout


@pytest.mark.sampling
def test_sample_shapes_and_estimates(backend, draws) -> None:
    data = _data()
    assert set(draws.variables) == {"mu", "sigma", "m", "y_rep"}
    assert draws.variables["mu"].shape == (4, 400)
    assert draws.variables["m"].shape == (4, 400, 2, 3)
    assert draws.variables["y_rep"].shape == (4, 400, 40)  # generated quantities
    assert abs(draws.variables["mu"].mean() - data["y"].mean()) < 0.5
    assert abs(draws.variables["sigma"].mean() - data["y"].std()) < 0.6
    assert abs(draws.variables["y_rep"].mean() - data["y"].mean()) < 0.5
    flat = draws.variables["m"].reshape(4 * 400, 6)
    assert np.linalg.matrix_rank(flat) == 6  # 6 distinct parameters, not a column copied around

    stats = draws.sample_stats
    assert set(stats) == {"lp", "acceptance_rate", "step_size", "tree_depth", "n_leapfrog", "diverging", "energy"}
    for value in stats.values():
        assert value.shape == (4, 400)
    assert stats["diverging"].dtype == bool
    assert stats["tree_depth"].dtype.kind == "i" and stats["n_leapfrog"].dtype.kind == "i"
    assert np.all((stats["acceptance_rate"] >= 0) & (stats["acceptance_rate"] <= 1))
    assert np.all(stats["step_size"] > 0) and np.all(stats["step_size"] == stats["step_size"][:, :1])
    assert np.all(np.isfinite(stats["lp"]))
    assert draws.backend == backend.name and draws.sample_seconds > 0
    assert len(draws.chain_seconds) == 4 and all(c.get("sampling", 0) > 0 for c in draws.chain_seconds)
    assert any(m.startswith("chain 4: ") for m in draws.messages)  # Stan's messages, kept for stan.log


@pytest.mark.sampling
def test_chains_differ(draws) -> None:
    assert not np.array_equal(draws.variables["mu"][0], draws.variables["mu"][1])


@pytest.mark.sampling
def test_same_seed_identical_other_seed_different(backend, compiled) -> None:
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
def test_parallel_chains_do_not_change_draws(backend, compiled) -> None:
    data = _data()
    serial = backend.sample(compiled, data, SamplerSettings(seed=5, parallel_chains=1, **FAST))
    parallel = backend.sample(compiled, data, SamplerSettings(seed=5, parallel_chains=2, **FAST))
    assert np.array_equal(serial.variables["m"], parallel.variables["m"])


@pytest.mark.sampling
def test_zero_rows_and_list_data(backend, compiled) -> None:
    empty = backend.sample(compiled, {"N": 0, "y": np.zeros(0), "X": np.zeros((0, 2))}, SamplerSettings(**FAST))
    assert empty.variables["m"].shape == (2, 300, 2, 3)
    as_lists = backend.sample(compiled, {"N": 0, "y": [], "X": []}, SamplerSettings(**FAST))
    assert as_lists.variables["mu"].shape == (2, 300)
    plain = backend.sample(compiled, {"N": np.int64(3), "y": [1.0, 2, 3.5], "X": [[0, 1], [1, 0], [2, 2]]},
                           SamplerSettings(**FAST))
    assert plain.variables["sigma"].shape == (2, 300)


@pytest.mark.sampling
def test_no_output_when_not_a_tty(backend, compiled, capfd) -> None:
    backend.sample(compiled, _data(), SamplerSettings(chains=2, warmup=100, draws=100, quiet=False))
    out, err = capfd.readouterr()
    assert out == "" and err == ""


@pytest.mark.sampling
def test_chains_start_at_their_inits(backend, compiled) -> None:
    """SamplerSettings.inits: each chain starts at its own values (mu far from the posterior here, so a
    one-draw run without warmup shows where it began); the other parameters start as Stan starts them."""
    if not backend.takes_inits:
        pytest.skip(f"{backend.name} starts each chain its own way (its module docstring says how)")
    starts = ({"mu": 300.0, "sigma": 2.0}, {"mu": -300.0, "sigma": 2.0})
    out = backend.sample(compiled, _data(), SamplerSettings(chains=2, warmup=0, draws=1, max_treedepth=1,
                                                            inits=starts, quiet=True))
    mu = out.variables["mu"][:, 0]
    assert abs(mu[0] - 300) < 50 and abs(mu[1] + 300) < 50, mu
    with pytest.raises(BackendError, match="one set of values per chain"):
        backend.sample(compiled, _data(), SamplerSettings(chains=3, inits=starts, quiet=True))


# ------------------------------------------------------------------------------------------------
# failures

@pytest.mark.sampling
def test_initialization_failure_message(backend, compiled) -> None:
    data = {"N": 3, "y": [1.0, float("nan"), 2.0], "X": np.zeros((3, 2))}
    with pytest.raises(BackendError) as info:
        backend.sample(compiled, data, SamplerSettings(**FAST))
    message = str(info.value)
    assert "could not find a starting point" in message and "init=0.5" in message
    assert "is nan" in message  # the tail of Stan's own messages
    assert "httpstan_" not in message
    assert info.value.record["stderr_tail"]


@pytest.mark.sampling
def test_data_mismatch_message(backend, compiled) -> None:
    with pytest.raises(BackendError) as info:
        backend.sample(compiled, {"N": 4, "y": [1.0, 2.0, 3.0], "X": np.zeros((4, 2))}, SamplerSettings(**FAST))
    assert "y" in str(info.value)
    with pytest.raises(BackendError):
        backend.sample(compiled, {"N": 1, "y": ["a"], "X": np.zeros((1, 2))}, SamplerSettings(**FAST))
    with pytest.raises(BackendError):
        backend.sample(compiled, _data(), SamplerSettings(seed=-1))


@pytest.mark.stanc
@pytest.mark.parametrize("name", BACKENDS)
def test_program_stanc_rejects_is_reported_as_a_stangen_bug(name, tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path))
    with pytest.raises(BackendError) as info:
        get_backend(name).compile("parameters { real mu }\nmodel { }\n")
    assert "bug in stangen" in str(info.value) and "line 1" in str(info.value)
    assert info.value.exit_code == 3


# ------------------------------------------------------------------------------------------------
# progress and interrupts (in a child process, as a user's terminal would run it)

_RUNNER = textwrap.dedent(
    """
    import signal, sys
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even if started from a background shell
    import numpy as np
    from stangen.run.backends import SamplerSettings, get_backend
    b = get_backend(sys.argv[1])
    m = b.compile(sys.argv[2])
    settings = SamplerSettings(chains=3, parallel_chains=2, warmup=int(sys.argv[3]), draws=int(sys.argv[3]), quiet=False)
    print("sampling", flush=True)
    try:
        d = b.sample(m, {"N": 3, "y": [1.0, 2.0, 3.0], "X": np.zeros((3, 2))}, settings)
    except KeyboardInterrupt:
        print("interrupted", flush=True)
        raise
    except SystemExit:
        print("terminated", flush=True)
        raise
    print("done", d.variables["m"].shape, flush=True)
    """
)


def _env() -> dict:
    return dict(os.environ, PYTHONPATH=os.pathsep.join(filter(None, [str(ROOT), os.environ.get("PYTHONPATH")])))


@pytest.mark.sampling
def test_progress_on_tty(backend, compiled) -> None:
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
        proc = subprocess.Popen([sys.executable, "-c", _RUNNER, backend.name, PROGRAM, "15000"],
                                stdout=subprocess.PIPE, stderr=slave, env=_env(), text=True)
        os.close(slave)
        out, _ = proc.communicate(timeout=180)
        reader.join(10)
    finally:
        os.close(master)
    err = b"".join(chunks).decode(errors="replace")
    assert proc.returncode == 0, err
    assert "done (3, 15000, 2, 3)" in out
    # a tqdm bar per chain: "chain 3: <bar> 0/30000 waiting" (parallel_chains=2), the phase in the bar's last slot
    assert "chain 1: " in err and re.search(r"chain 3: [^\r\n]*0/30000 waiting", err)
    assert re.search(r"/30000 (warmup|sampling)", err)  # an update while running
    assert "30000/30000 done" in err
    assert "Gradient evaluation" not in err and "Iteration:" not in err  # Stan's own chatter stays out


def _descendants(pid: int) -> list[int]:
    """Every process below `pid` (a CmdStan chain runs in its own session, but is still a child)."""
    parent_of = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path("/proc", entry, "stat").read_text()
            except OSError:
                continue
            parent_of[int(entry)] = int(stat.rsplit(")", 1)[1].split()[1])
    out, frontier = [], [pid]
    while frontier:
        p = frontier.pop()
        kids = [k for k, parent in parent_of.items() if parent == p]
        out += kids
        frontier += kids
    return out


def _alive(pid: int) -> bool:
    try:
        stat = Path("/proc", str(pid), "stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not Path("/proc/self/stat").exists(), reason="needs /proc")
@pytest.mark.sampling
@pytest.mark.parametrize("signum", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_stops_every_chain_process_and_leaves_nothing(backend, compiled, signum, tmp_path) -> None:
    """The signal goes to the stangen process alone (not its process group): it must stop its chains itself
    (chain processes, or, for nutpie, the threads of the process, which must then end at once)."""
    env = dict(_env(), STANGEN_CACHE=str(cache.cache_root()))
    scratch_before = set((cache.cache_root() / "tmp").glob("*")) if (cache.cache_root() / "tmp").exists() else set()
    proc = subprocess.Popen([sys.executable, "-c", _RUNNER, backend.name, PROGRAM, "5000000"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout.readline().strip() == "sampling"
        deadline = time.monotonic() + (60 if backend.chain_processes else 2)
        chains: list[int] = []
        while time.monotonic() < deadline:
            chains = [k for k in _descendants(proc.pid) if _alive(k)]
            if len(chains) >= 2:
                break
            time.sleep(0.1)
        assert len(chains) >= 2 or not backend.chain_processes, "expected two chain processes (parallel_chains=2)"
        time.sleep(0.5)
        sent = time.monotonic()
        proc.send_signal(signum)
        out, err = proc.communicate(timeout=30)
        took = time.monotonic() - sent
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert ("interrupted" if signum == signal.SIGINT else "terminated") in out, err
    assert proc.returncode != 0
    assert took < 5, f"took {took:.1f} s to stop"
    assert not [k for k in chains if _alive(k)], "chain processes left running"
    scratch_after = set((cache.cache_root() / "tmp").glob("*")) if (cache.cache_root() / "tmp").exists() else set()
    # its own scratch (named <prefix><pid>-…): another test worker may be compiling into the same cache meanwhile
    stopped = {proc.pid, *chains}
    left = {p for p in scratch_after - scratch_before if _scratch_owner(p.name) in stopped}
    assert not left, f"scratch left behind: {left}"


def _scratch_owner(name: str) -> int | None:
    """The pid in a scratch folder's name (core.files.scratch_folder: <prefix><pid>-<random>)."""
    found = re.match(r"[A-Za-z_-]*?(\d+)-", name)
    return int(found.group(1)) if found else None


# ------------------------------------------------------------------------------------------------
# the backends agree

@pytest.mark.sampling
@pytest.mark.skipif(find_cmdstan() is None, reason=NO_CMDSTAN)
def test_both_backends_give_the_same_draws() -> None:
    """Same program, data, seed and settings: the same draws to 12 significant figures (CmdStan writes 12)."""
    settings = SamplerSettings(seed=42, **FAST)
    out = {}
    for name in ("pystan", "cmdstan"):
        b = get_backend(name)
        out[name] = b.sample(b.compile(PROGRAM), _data(), settings)
    for var in ("mu", "sigma", "m", "y_rep"):
        np.testing.assert_allclose(out["cmdstan"].variables[var], out["pystan"].variables[var], rtol=1e-11,
                                   err_msg=var)
    np.testing.assert_array_equal(out["cmdstan"].sample_stats["n_leapfrog"], out["pystan"].sample_stats["n_leapfrog"])
    # and from the same initial values (stangen's start: some parameters given, the rest uniform)
    settings = SamplerSettings(seed=42, inits=({"mu": 2.0}, {"mu": 4.0}), **FAST)
    started = {name: get_backend(name).sample(get_backend(name).compile(PROGRAM), _data(), settings)
               for name in ("pystan", "cmdstan")}
    for var in ("mu", "sigma", "m"):
        np.testing.assert_allclose(started["cmdstan"].variables[var], started["pystan"].variables[var], rtol=1e-11,
                                   err_msg=var)
    assert not np.allclose(started["pystan"].variables["mu"], out["pystan"].variables["mu"])


def test_a_backend_is_one_class_and_one_registry_entry(monkeypatch):
    """get_backend finds a backend by its name or alias, `auto` takes the first usable one in BACKENDS' order,
    and an unknown name lists every registered backend: nothing else names a backend."""
    from stangen.run import backends

    class Fake:
        name, aliases, summary = "fake", ("pretend",), "for this test"
        threads_within_chain = takes_initial_metric = chain_processes = False

        @classmethod
        def usable(cls, *, explain: bool = False) -> bool:
            return True

    monkeypatch.setattr(backends, "BACKENDS", (Fake, *backends.BACKENDS))
    monkeypatch.setattr(backends, "_instances", {})
    assert isinstance(backends.get_backend("pretend"), Fake)
    assert isinstance(backends.get_backend("auto"), Fake)
    assert backends.available_backends()[0] == "fake"
    with pytest.raises(backends.BackendError, match="'fake' \\(for this test\\).*'pystan' \\(embedded\\)"):
        backends.get_backend("nonesuch")
