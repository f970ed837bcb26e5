"""Replay events/s on 1 vs 2 torchrun ranks (gloo, CPU), same scenario, same run.

    python benchmarks/distributed_replay.py [--scenario weekend-shift] [--policy none]
        [--set KEY=VALUE ...]

Pretrains (and tunes) once with a one-process replay (in a temporary workspace, or reusing
`--store`'s checkpoint), then runs
``torchrun --standalone --nproc-per-node N -m streamsim replay --distributed`` for N = 1 and 2
with one torch thread per rank. Prints, per N, the events/s of the time-chunked replay (its wall
time on rank 0: warm-up of each rank's histories, its micro-batches, gathering the rows and
raising the alarms; the store write and the process start-up are not in it) and the whole
command's wall time, and the ratio 2 ranks / 1 rank of events/s.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--scenario", default="weekend-shift")
    parser.add_argument("--policy", action="append", default=None)
    parser.add_argument("--set", action="append", default=[])
    parser.add_argument("--store", default=None, help="a workspace to reuse (default: a new one)")
    args = parser.parse_args()
    policies = args.policy or ["none"]
    common = ["replay", "--scenario", args.scenario, "--no-dashboard", "--json"]
    for p in policies:
        common += ["-p", p]
    for pair in args.set:
        common += ["--set", pair]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    with tempfile.TemporaryDirectory() as tmp:
        store = ["--store", args.store or tmp]
        subprocess.run([sys.executable, "-m", "streamsim", *store, *common], cwd=ROOT, env=env,
                       check=True, capture_output=True)  # fmt: skip
        rates = {}
        for n in (1, 2):
            start = time.perf_counter()
            out = subprocess.run(
                [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc-per-node",
                 str(n), "-m", "streamsim", *store, *common, "--distributed"],
                cwd=ROOT, env=env, check=True, capture_output=True, text=True,
            )  # fmt: skip
            wall = time.perf_counter() - start
            runs = json.loads(out.stdout)["runs"]
            rates[n] = {r["policy"]: r["events_per_s"] for r in runs}
            shown = ", ".join(f"{p} {v:,.0f} events/s" for p, v in rates[n].items())
            print(f"{n} rank(s): {shown}; command {wall:.1f} s")
    for p in policies:
        print(f"{p}: 2 ranks / 1 rank = {rates[2][p] / rates[1][p]:.2f}x events/s")


if __name__ == "__main__":
    main()
