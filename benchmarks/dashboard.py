"""Dashboard cost for a long run: build time, HTML size and headless Chromium load time.

Fabricates (devtools/fabricate.py) a dataset of `--events` events with two ground-truth drifts and
`--runs` runs over it (no model involved: the run tables are filled directly), writes the
dashboard, and loads it in headless Chromium. Baselines measured in the same invocation: the same
dashboard for a small run (`--small` events) and a blank HTML page in the same browser.

    python benchmarks/dashboard.py                       # 1M events, 3 runs
    python benchmarks/dashboard.py --events 200000 --runs 2
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))  # for devtools.fabricate

from dashboards.page import write_dashboard  # noqa: E402
from devtools import headless  # noqa: E402
from devtools.fabricate import fabricate_dataset, fabricate_run  # noqa: E402
from streamsim import store  # noqa: E402

POLICIES = ("reset", "continual", "none")


def _build(n_events: int, runs: int, out: Path) -> tuple[float, float, int]:
    """(fabricate seconds, build+write seconds, file bytes) for a run set of `n_events`."""
    t0 = time.perf_counter()
    con = store.connect_memory()
    n_days = max(7, min(120, n_events // 5000))
    fabricate_dataset(
        con,
        n_events=n_events,
        n_users=max(50, n_events // 50),
        n_items=5000,
        n_categories=12,
        n_days=n_days,
        drifts=[(n_events // 3, n_events // 3 + n_events // 100), (2 * n_events // 3,) * 2],
    )
    ids = []
    for k in range(runs):
        run_id = f"{POLICIES[k % 3]}-{k}"
        alarms = [("adwin", "rr10", int(n_events * f)) for f in (0.2, 0.34, 0.5, 0.67, 0.9)]
        fabricate_run(
            con,
            run_id,
            policy=run_id,
            seed=k,
            batch_size=256,
            alarms=alarms,
            adapts=k % 3 != 2,
        )
        ids.append(run_id)
    t1 = time.perf_counter()
    path = write_dashboard(con, ids, out)
    t2 = time.perf_counter()
    con.close()
    return t1 - t0, t2 - t1, path.stat().st_size


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--events", type=int, default=1_000_000)
    parser.add_argument("--small", type=int, default=10_000)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3, help="headless loads per page")
    args = parser.parse_args()
    binary = headless.find_chromium()
    with tempfile.TemporaryDirectory() as tmp:
        tmp_path = Path(tmp)
        blank = tmp_path / "blank.html"
        blank.write_text("<!DOCTYPE html><html><head></head><body>blank</body></html>")
        rows = []
        for label, n in (("small", args.small), ("large", args.events)):
            page = tmp_path / f"{label}.html"
            fab, build, size = _build(n, args.runs, page)
            loads: list[float] = []
            errors: list[str] = []
            if binary is not None:
                for _ in range(args.repeats):
                    result = headless.load(page, binary=binary)
                    loads.append(result.seconds)
                    errors += result.console_errors + result.log_errors
            rows.append((label, n, fab, build, size, loads, errors))
        blank_loads = (
            [headless.load(blank, binary=binary).seconds for _ in range(args.repeats)]
            if binary
            else []
        )
    print(f"runs per dashboard: {args.runs}; chromium: {binary or 'not found (loads skipped)'}")
    base_size = rows[0][4]
    base_load = min(rows[0][5]) if rows[0][5] else float("nan")
    blank_load = min(blank_loads) if blank_loads else float("nan")
    print(f"blank page headless load: {blank_load:.2f} s (min of {len(blank_loads)})")
    header = (
        f"{'page':6} {'events':>9} {'fabricate s':>11} {'build s':>8} {'HTML MB':>8}"
        f" {'size/small':>10} {'load s (min)':>12} {'load/small':>10} {'load-blank s':>12}"
        " errors"
    )
    print(header)
    for label, n, fab, build, size, loads, errors in rows:
        load = min(loads) if loads else float("nan")
        print(
            f"{label:6} {n:9d} {fab:11.1f} {build:8.1f} {size / 1e6:8.2f}"
            f" {size / base_size:10.2f} {load:12.2f} {load / base_load:10.2f}"
            f" {load - blank_load:12.2f} {len(errors)}"
        )


if __name__ == "__main__":
    main()
