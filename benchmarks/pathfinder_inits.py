"""Does a Pathfinder start shorten warmup on InstEval? CmdStan 2.35 (needs CMDSTAN), the program stangen
writes for specs/insteval.yaml, seed 1; 4 chains, 2 at a time, from random inits or from Pathfinder draws.

    python benchmarks/pathfinder_inits.py plain|pathfinder
"""
import json, subprocess, sys, tempfile, time
from pathlib import Path

import numpy as np
ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))
from stangen.compiler.program import build
from stangen.run.backends import get_backend
from stangen.run.backends._data import prepare_data

out = Path(tempfile.mkdtemp(prefix="stangen_pathfinder_"))
program = build(ROOT / "specs" / "insteval.yaml")
backend = get_backend("cmdstan")
model = backend.compile(program.code)
exe = model.handle["exe_file"]
data = out / "data.json"
data.write_text(json.dumps({k: v.tolist() for k, v in prepare_data(program.stan_data).items()}))
mode = sys.argv[1]  # plain | pathfinder
inits = [None] * 4
extra_s = 0.0
if mode == "pathfinder":
    start = time.perf_counter()
    subprocess.run([exe, "method=pathfinder", "num_paths=4", "num_psis_draws=4", "data", f"file={data}",
                    "random", "seed=1", "output", f"file={out/'pf.csv'}", "sig_figs=12"], check=True,
                   capture_output=True)
    extra_s = time.perf_counter() - start
    lines = [l for l in (out / "pf.csv").read_text().splitlines() if not l.startswith("#")]
    header = lines[0].split(",")
    rows = [list(map(float, l.split(","))) for l in lines[1:]]
    parameters = list((model.handle.get("info") or {}).get("parameters") or {})
    for k in range(4):
        row = dict(zip(header, rows[k % len(rows)]))
        init = {}
        for name in parameters:
            if name in row:
                init[name] = row[name]
            else:
                init[name] = [row[c] for c in header if c.startswith(name + ".")]
        path = out / f"init{k+1}.json"
        path.write_text(json.dumps(init))
        inits[k] = path
    print(f"pathfinder {extra_s:.1f} s", flush=True)
procs, start = [], time.perf_counter()
def launch(k):
    cmd = [exe, f"id={k+1}", "random", "seed=1", "data", f"file={data}", f"init={inits[k] or 2}", "output",
           f"file={out}/{mode}-{k+1}.csv", "sig_figs=6", "method=sample", "num_samples=1000", "num_warmup=1000",
           "adapt", "delta=0.8"]
    return subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
pending = list(range(4)); running = []
while pending or running:
    while pending and len(running) < 2:
        running.append(launch(pending.pop(0)))
    for p in list(running):
        if p.poll() is not None:
            running.remove(p)
    time.sleep(0.1)
wall = time.perf_counter() - start
print(f"{mode}: sampling wall {wall:.1f} s (+ {extra_s:.1f} s pathfinder)")
import re
for k in range(4):
    text = (out / f"{mode}-{k+1}.csv").read_text()
    times = re.findall(r"Elapsed Time: ([\d.]+) seconds \(Warm-up\)\s*#\s*([\d.]+) seconds \(Sampling\)", text)
    lines = [l for l in text.splitlines() if not l.startswith("#")]
    header = lines[0].split(","); arr = np.array([list(map(float, l.split(","))) for l in lines[1:]])
    print(k + 1, times, "stepsize", arr[:, header.index("stepsize__")].mean().round(3),
          "treedepth", arr[:, header.index("treedepth__")].mean().round(2), "lp mean", arr[:, 0].mean().round(1))
