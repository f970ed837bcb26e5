"""Sweep wall time: the same 8-cell grid with 1 worker and with 2 workers, same run.

    python benchmarks/sweep.py [--executor local|ray] [--users 300]

The grid: weekend-shift shrunk (`--users` users, 20 events each, a small T2ARec, one epoch,
policies none and reset-entropy with its validation-chosen rate) × seeds 0-3 × two micro-batch
sizes = 8 cells, 4 pretrainings (one per seed, shared by that seed's two cells). Each worker
count runs in a fresh workspace (nothing cached), with one torch thread per cell. Prints both
wall times and the ratio 1 worker / 2 workers: the speed-up from running cells side by side,
which on this 2-core machine is bounded by 2 and lowered by the pretraining wave (one leader
per seed runs before the seed's second cell can start).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from streamsim.store import Workspace
from streamsim.sweep import SweepSpec, run_sweep


def spec(users: int, workers: int, executor: str) -> SweepSpec:
    fixed = {
        "data.synthetic.n_users": users,
        "data.synthetic.events_per_user": 20,
        "model.config.d_model": 16,
        "model.config.max_len": 10,
        "train.epochs": 1,
        "replay.probe_events": 50,
        "policies": ["none", "reset-entropy"],
    }
    return SweepSpec(
        scenario="weekend-shift", seeds=(0, 1, 2, 3), grid=(("replay.batch_events", (64, 128)),),
        fixed=tuple(fixed.items()), executor=executor, workers=workers, threads=1,  # type: ignore[arg-type]
    )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--executor", default="local", choices=("local", "ray"))
    parser.add_argument("--users", type=int, default=300)
    args = parser.parse_args()
    seconds = {}
    with tempfile.TemporaryDirectory() as tmp:
        for workers in (1, 2):
            ws = Workspace.resolve(Path(tmp) / f"w{workers}")
            con = ws.connect()
            start = time.perf_counter()
            result = run_sweep(con, ws, spec(args.users, workers, args.executor))
            seconds[workers] = time.perf_counter() - start
            con.close()
            assert not result.failed, [c.error for c in result.failed]
            print(f"{workers} worker(s): {len(result.cells)} cells in {seconds[workers]:.1f} s")
    print(f"ratio 1 worker / 2 workers: {seconds[1] / seconds[2]:.2f}x ({args.executor})")


if __name__ == "__main__":
    main()
