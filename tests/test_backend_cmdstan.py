"""The CmdStan backend's own parts, without a real CmdStan: finding it (and naming a wrong $CMDSTAN), the cache
per installation, the chain processes' arguments, CSV reading, Stan's timing from the CSV's end, quiet
output, a failed chain. A fake CmdStan stands in: its makefile "builds" a Python script that writes the CSV and
console lines a real chain would. (test_backend_contract.py runs the real one when $CMDSTAN is set.)"""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from stangen.run.backends import BackendError, SamplerSettings, get_backend
from stangen.run.backends.cmdstan import CmdStanBackend, csv_elapsed

PROGRAM = """\
data { int<lower=0> N; vector[N] y; }
parameters { real mu; real<lower=0> sigma; matrix[2, 3] m; }
model { y ~ normal(mu, sigma); to_vector(m) ~ std_normal(); }
"""

FAKE_MODEL = r'''#!{python}
"""A fake CmdStan model executable: arguments as CmdStan takes them; a CSV and console lines as it writes."""
import json, os, sys, time
args = dict(a.split("=", 1) for a in sys.argv[1:] if "=" in a)
record = os.environ.get("FAKE_CMDSTAN_RECORD")
if record:
    with open(record, "a") as fh:
        fh.write(json.dumps(sys.argv[1:]) + "\n")
chain, draws, warmup = int(args["id"]), int(args["num_samples"]), int(args["num_warmup"])
data = json.load(open([a.split("=", 1)[1] for a in sys.argv if a.startswith("file=") and a.endswith(".json")][0]))
print("Gradient evaluation took 1e-05 seconds", flush=True)
if data.get("N") == 99:
    print("Rejecting initial value:\n  Log probability evaluates to log(0), i.e. negative infinity.")
    print("Initialization failed.")
    sys.exit(70)
for it in (1, warmup + draws):
    print(f"Iteration: {{it}} / {{warmup + draws}} [{{100 * it // (warmup + draws)}}%]  (Sampling)", flush=True)
out = [a.split("=", 1)[1] for a in sys.argv if a.startswith("file=") and a.endswith(".csv")][0]
columns = ["lp__", "accept_stat__", "stepsize__", "treedepth__", "n_leapfrog__", "divergent__", "energy__", "mu",
           "sigma"] + [f"m.{{i}}.{{j}}" for j in (1, 2, 3) for i in (1, 2)]  # Stan writes column-major
lines = ["# model = fake", "# id = %d" % chain, ",".join(columns), "# Adaptation terminated", "# Step size = 0.9"]
for k in range(draws):
    m = [1000 * chain + 100 * k + 10 * i + j for j in (1, 2, 3) for i in (1, 2)]
    lines.append(",".join(str(v) for v in [-1.0 - k, 0.9, 0.9, 2, 3, k % 2, 1.5, 0.5 * chain + k, 1.0] + m))
lines += ["# ", "#  Elapsed Time: 0.001 seconds (Warm-up)", "#                0.002 seconds (Sampling)",
          "#                0.003 seconds (Total)", "# "]
open(out, "w").write("\n".join(lines) + "\n")
print("Elapsed Time: 0.003 seconds (Total)")
'''


def fake_cmdstan(folder: Path) -> Path:
    """A folder that passes for a built CmdStan: makefile, bin/stanc (the real one, from httpstan), and a make
    rule that puts the fake model where the executable goes."""
    import httpstan

    (folder / "bin").mkdir(parents=True)
    (folder / "bin" / "stanc").symlink_to(Path(httpstan.__file__).parent / "stanc")
    script = folder / "fake_model.py"
    script.write_text(FAKE_MODEL.format(python=sys.executable))
    (folder / "makefile").write_text(f"CMDSTAN_VERSION := 2.35.0\n%/model: %/model.stan\n\tcp {script} $@ && chmod +x $@\n")
    return folder


@pytest.fixture
def fake(tmp_path, monkeypatch):
    home = fake_cmdstan(tmp_path / "cmdstan-2.35.0")
    monkeypatch.setenv("CMDSTAN", str(home))
    monkeypatch.setenv("STANGEN_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("FAKE_CMDSTAN_RECORD", str(tmp_path / "calls.jsonl"))
    return tmp_path


@pytest.mark.stanc
def test_compiles_once_per_program_and_installation(fake, tmp_path, monkeypatch) -> None:
    backend = CmdStanBackend()
    assert backend.stan_version == "2.35.0"
    model = backend.compile(PROGRAM)
    assert model.compiled_now and Path(model.handle["exe_file"]).is_file()
    assert backend.compile(PROGRAM).compiled_now is False
    # another installation (same version) builds its own executable: its libraries are linked in
    other = fake_cmdstan(tmp_path / "elsewhere" / "cmdstan-2.35.0")
    monkeypatch.setenv("CMDSTAN", str(other))
    again = CmdStanBackend().compile(PROGRAM)
    assert again.compiled_now and again.handle["exe_file"] != model.handle["exe_file"]
    assert json.loads((Path(again.handle["exe_file"]).parent / "build.json").read_text())["cmdstan"] == str(other)


@pytest.mark.stanc
def test_sample_runs_one_process_per_chain_and_reads_their_csv(fake, capfd) -> None:
    backend = CmdStanBackend()
    model = backend.compile(PROGRAM)
    capfd.readouterr()
    draws = backend.sample(model, {"N": 2, "y": [1.0, 2.0]},
                           SamplerSettings(chains=3, parallel_chains=2, warmup=7, draws=4, seed=9, init=0.5,
                                           adapt_delta=0.9, max_treedepth=8, quiet=False))
    out, err = capfd.readouterr()
    assert out == "" and err == ""  # not a terminal: no progress, and Stan's console never printed
    calls = [json.loads(line) for line in (fake / "calls.jsonl").read_text().splitlines()]
    assert sorted(c[0] for c in calls) == ["id=1", "id=2", "id=3"]
    first = next(c for c in calls if c[0] == "id=1")
    assert first[1:4] == ["random", "seed=9", "data"] and "init=0.5" in first and "sig_figs=12" in first
    assert ["num_samples=4", "num_warmup=7"] == [a for a in first if a.startswith("num_")]
    assert "delta=0.9" in first and "max_depth=8" in first
    assert draws.variables["m"].shape == (3, 4, 2, 3)
    assert draws.variables["m"][1, 2].tolist() == [[2211, 2212, 2213], [2221, 2222, 2223]]  # row-major
    assert draws.variables["mu"][:, 0].tolist() == [0.5, 1.0, 1.5]
    assert draws.sample_stats["diverging"][0].tolist() == [False, True, False, True]
    assert draws.sample_stats["tree_depth"].dtype.kind == "i"
    assert draws.chain_seconds == [{"warmup": 0.001, "sampling": 0.002, "total": 0.003}] * 3
    assert "chain 2: Gradient evaluation took 1e-05 seconds" in draws.messages
    assert not any("Iteration" in m for m in draws.messages)
    assert not list((fake / "cache" / "tmp").glob("run-*"))  # scratch removed


@pytest.mark.stanc
def test_a_chain_that_finds_no_starting_point_gets_the_advice(fake) -> None:
    backend = CmdStanBackend()
    with pytest.raises(BackendError) as info:
        backend.sample(backend.compile(PROGRAM), {"N": 99, "y": [0.0] * 99}, SamplerSettings(chains=2, quiet=True))
    assert "could not find a starting point" in str(info.value) and "init=0.5" in str(info.value)
    assert "Rejecting initial value" in str(info.value)
    assert not list((fake / "cache" / "tmp").glob("run-*"))


def test_a_wrong_cmdstan_is_named(tmp_path, monkeypatch, capsys) -> None:
    monkeypatch.setenv("CMDSTAN", str(tmp_path / "nowhere"))
    with pytest.raises(BackendError) as info:
        CmdStanBackend()
    assert f"CMDSTAN={tmp_path / 'nowhere'} does not exist" in str(info.value)
    assert "pystan" in str(info.value) and "cmdstan-offline" in str(info.value)
    # `auto` falls back to the embedded backend, and says why
    assert get_backend("auto").name == "pystan"
    assert f"note: CMDSTAN={tmp_path / 'nowhere'} does not exist; using the embedded backend" in capsys.readouterr().err
    (tmp_path / "unbuilt").mkdir()
    (tmp_path / "unbuilt" / "makefile").write_text("CMDSTAN_VERSION := 2.35.0\n")
    monkeypatch.setenv("CMDSTAN", str(tmp_path / "unbuilt"))
    with pytest.raises(BackendError, match="never built"):
        CmdStanBackend()


def test_timing_is_read_from_the_end_of_the_csv_only(tmp_path) -> None:
    """A long fit's CSV is megabytes: the elapsed-time comments are its last lines, and only those are read."""
    path = tmp_path / "chain.csv"
    rows = "\n".join("1.0,2.0,3.0" for _ in range(20000))
    path.write_text("#  Elapsed Time: 9 seconds (Warm-up)\nlp__,a,b\n" + rows +
                    "\n#  Elapsed Time: 0.5 seconds (Warm-up)\n#   0.25 seconds (Sampling)\n#   0.75 seconds (Total)\n")
    assert csv_elapsed(path) == {"warmup": 0.5, "sampling": 0.25, "total": 0.75}
    path.write_text("#  Elapsed Time: 9 seconds (Warm-up)\nlp__,a,b\n" + rows + "\n")
    assert csv_elapsed(path) == {}  # a match far from the end is not looked at


@pytest.mark.stanc
def test_a_compiler_that_fails_is_reported_with_its_messages(fake) -> None:
    home = fake / "cmdstan-2.35.0"
    (home / "makefile").write_text("CMDSTAN_VERSION := 2.35.0\n%/model: %/model.stan\n"
                                   "\t@echo 'g++: fatal error: out of memory' && false\n")
    with pytest.raises(BackendError) as info:
        CmdStanBackend().compile(PROGRAM)
    assert "Compiling the Stan program with CmdStan failed" in str(info.value)
    assert "out of memory" in str(info.value) and info.value.exit_code == 2
