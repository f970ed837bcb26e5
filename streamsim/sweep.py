"""Sweeps: a grid of one scenario's settings × seeds, each cell an independent replay.

`run_sweep` expands ``--seeds`` × every ``--set KEY=V1,V2`` into cells, runs each cell as its
own task on an executor, and stores every run in the workspace exactly as ``streamsim replay``
with that cell's ``--seed``/``--set`` would (same run keys, manifests and tables):

- ``local`` (default): a pool of worker processes on this machine (`concurrent.futures`
  threads, each starting one ``python -m streamsim.sweep CELL_DIR`` process, so a cell that
  crashes or is killed for memory takes no other cell with it);
- ``ray``: one Ray task per cell (the optional ``[ray]`` extra), on a local Ray instance started
  on the fly or on the cluster at ``--address``. The sweep directory lies under the workspace,
  so every Ray node must see the workspace's filesystem (one machine, or a shared disk).

DuckDB allows one writer per database file, so a cell never opens the workspace's store. It
replays in a scratch workspace of its own (``sweeps/<sweep>/cell-<k>/workspace``: its own DuckDB
file holding a copy of the dataset, exported once per sweep as Parquet; the checkpoints and
tuning directories are the workspace's own, linked) and exports its runs as one Parquet file
per run table. This process — the only writer of the store — imports them (`runs.import_runs`,
one transaction per cell) as cells finish.

Pretraining is done once per distinct checkpoint key: the first cell of each key (its leader)
runs alone with that key, and the cells sharing it start once it has finished, reusing the
checkpoint and the learning rates tuned on validation. A synthetic scenario swept over seeds
gets one dataset per seed (``<dataset>-seed<N>``): each seed draws its own stream, and one seed
never replaces another's data. A cell that raises, returns non-finite metrics or dies is
recorded as failed with its error and does not stop the grid. The sweep's directory name is a
hash of its grid: the same command run again skips finished cells (their runs are in the store)
and resumes unfinished ones from their scratch workspace (`replay --resume` semantics). A stored
cell's scratch workspace and exported rows are deleted (its ``result.json`` stays); a failed
cell's are kept, for its rerun and for a look at what went wrong.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import math
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Sequence
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

import duckdb

from streamsim import scenario as scenario_mod
from streamsim.errors import ScenarioError, StreamsimError
from streamsim.runs import complete_runs, import_runs, tag_sweep_cell
from streamsim.store import Workspace

SHARED_DIRS = ("checkpoints", "tuning")  # what every cell reads from the workspace itself


@dataclass(frozen=True, slots=True)
class SweepSpec:
    """What to sweep and where to run it (`executor`, `workers`, `address`, `threads` do not
    change the results' identity: they are left out of the sweep's hash)."""

    scenario: str  # bundled name or path
    seeds: tuple[int, ...] = ()
    grid: tuple[tuple[str, tuple[Any, ...]], ...] = ()  # --set KEY=V1,V2: key, values
    fixed: tuple[tuple[str, Any], ...] = ()  # overrides every cell shares (--policy, --model)
    executor: Literal["local", "ray"] = "local"
    workers: int = 2
    address: str | None = None  # ray: an existing cluster ("auto"); None starts one
    threads: int | None = None  # torch threads per cell; None: cores // workers


@dataclass(frozen=True, slots=True)
class Cell:
    """One grid point: its overrides (as ``streamsim replay --set`` takes them)."""

    index: int
    overrides: dict[str, Any]
    label: str  # "seed=1 train.lr=0.001"


@dataclass
class CellResult:
    """How one cell ended: complete (its runs stored), failed (with the error), or skipped (a
    finished cell of an earlier invocation)."""

    cell: Cell
    status: Literal["complete", "failed", "skipped"]
    run_ids: list[str] = field(default_factory=list)
    error: str | None = None
    seconds: float = 0.0


@dataclass
class SweepResult:
    directory: Path
    cells: list[CellResult]

    @property
    def failed(self) -> list[CellResult]:
        return [c for c in self.cells if c.status == "failed"]


def expand(spec: SweepSpec, *, synthetic_dataset: str | None) -> list[Cell]:
    """Every combination of the seeds and the ``--set`` values, seeds slowest (an axis with
    one value is a setting every cell shares, left out of the labels). A synthetic scenario's
    seeds each get their own dataset name (`synthetic_dataset`-seedN)."""
    fixed = dict(spec.fixed) | {k: v[0] for k, v in spec.grid if len(v) == 1}
    axes = [(k, v) for k, v in spec.grid if len(v) > 1]  # a one-value axis is a fixed setting
    keys = [k for k, _ in axes]
    seeds: Sequence[int | None] = spec.seeds or (None,)
    cells: list[Cell] = []
    for seed in seeds:
        for values in itertools.product(*(v for _, v in axes)):
            over: dict[str, Any] = dict(fixed)
            label = []
            if seed is not None:
                over["seed"] = seed
                label.append(f"seed={seed}")
                if synthetic_dataset is not None:
                    over["data.dataset"] = f"{synthetic_dataset}-seed{seed}"
            for key, value in zip(keys, values, strict=True):
                over[key] = value
                label.append(f"{key}={value}")
            cells.append(Cell(len(cells), over, " ".join(label) or "default"))
    return cells


def sweep_dir(workspace: Workspace, spec: SweepSpec, name: str, path: Path) -> Path:
    """``sweeps/<scenario>-<hash>``: the hash of the grid (scenario file content, seeds, values)."""
    body = {
        "scenario": hashlib.sha256(path.read_bytes()).hexdigest(),
        "seeds": spec.seeds,
        "grid": spec.grid,
        "fixed": spec.fixed,
    }
    digest = hashlib.sha256(json.dumps(body, sort_keys=True, default=str).encode()).hexdigest()
    return workspace.subdir("sweeps") / f"{name}-{digest[:12]}"


def run_sweep(
    con: duckdb.DuckDBPyConnection,
    workspace: Workspace,
    spec: SweepSpec,
    *,
    progress: Callable[[CellResult], None] | None = None,
) -> SweepResult:
    """Run every cell of the grid (resuming an earlier invocation of the same grid) and store
    its runs; every cell's scenario is validated before anything is written."""
    from streamsim.parquet_io import export_dataset
    from streamsim.pipeline import ensure_data
    from streamsim.splits import resolve_split
    from streamsim.train import checkpoint_key

    base = scenario_mod.load(spec.scenario, dict(spec.fixed))
    synthetic = base.data.dataset if base.data.synthetic is not None and spec.seeds else None
    cells = expand(spec, synthetic_dataset=synthetic)
    scenarios = [scenario_mod.load(spec.scenario, c.overrides) for c in cells]
    for sc, cell in zip(scenarios, cells, strict=True):
        scenario_mod.check(sc, where=f"{sc.path} (sweep cell {cell.label})")
    root = sweep_dir(workspace, spec, base.name, base.path)
    for name in SHARED_DIRS:
        workspace.subdir(name)
    keys: list[str] = []
    for sc, cell in zip(scenarios, cells, strict=True):  # data in the store; one export each
        info = ensure_data(con, sc)
        data_dir = root / "data" / info.name
        if _exported_fingerprint(data_dir) != info.fingerprint:  # none yet, or stale
            export_dataset(con, info.name, data_dir)
        split = resolve_split(con, info.name, sc.split)
        key, _ = checkpoint_key(info.fingerprint, split, sc.model, sc.train, sc.seed)
        keys.append(key)
        _write_json(root / f"cell-{cell.index}" / "cell.json", {
            "scenario": str(base.path),
            "overrides": cell.overrides,
            "label": cell.label,
            "workspace": str(workspace.root),
            "dataset": info.name,
            "data_dir": str(data_dir),
            "threads": spec.threads or max(1, (os.cpu_count() or 1) // spec.workers),
        })  # fmt: skip
    results: dict[int, CellResult] = {}
    todo = []
    for cell in cells:
        done = _finished(con, root / f"cell-{cell.index}")
        if done is not None:
            results[cell.index] = CellResult(cell, "skipped", done)
            if progress is not None:
                progress(results[cell.index])
        else:
            todo.append(cell)
    # the first cell of each checkpoint key pretrains; the others wait for it
    leaders: list[Cell] = []
    followers: list[Cell] = []
    seen: set[str] = set()
    for cell in todo:
        (followers if keys[cell.index] in seen else leaders).append(cell)
        seen.add(keys[cell.index])
    execute, shutdown = _ray_executor(spec) if spec.executor == "ray" else _local_executor(spec)
    try:
        for wave in (leaders, followers):
            for cell, outcome, seconds in execute([root / f"cell-{c.index}" for c in wave], wave):
                cell_dir = root / f"cell-{cell.index}"
                results[cell.index] = _store(con, cell_dir, cell, outcome, seconds)
                if progress is not None:
                    progress(results[cell.index])
    finally:
        shutdown()
    return SweepResult(root, [results[c.index] for c in cells])


# -- executors: run cells, yield (cell, run ids or an error, seconds) as they finish ------------
Outcome = list[str] | BaseException


Executor = tuple[Callable[[list[Path], list[Cell]], Any], Callable[[], None]]  # run, shut down


def _local_executor(spec: SweepSpec) -> Executor:
    def execute(dirs: list[Path], cells: list[Cell]) -> Any:
        with ThreadPoolExecutor(max_workers=spec.workers) as pool:
            started = {}
            pending: dict[Future[Outcome], Cell] = {}
            for d, c in zip(dirs, cells, strict=True):
                started[c.index] = time.perf_counter()
                pending[pool.submit(_cell_process, d)] = c
            while pending:
                finished, _ = wait(pending, return_when=FIRST_COMPLETED)
                for fut in finished:
                    c = pending.pop(fut)
                    yield c, fut.result(), time.perf_counter() - started[c.index]

    return execute, lambda: None


def _cell_process(cell_dir: Path) -> Outcome:
    """One cell in a fresh interpreter: its run ids, or the error it ended with."""
    proc = subprocess.run(
        [sys.executable, "-m", "streamsim.sweep", str(cell_dir)],
        capture_output=True, text=True, check=False,
    )  # fmt: skip
    if proc.returncode != 0:
        tail = (proc.stderr or proc.stdout).strip().splitlines()[-1:] or ["no output"]
        code = proc.returncode
        how = f"exit code {code}" if code > 0 else f"killed by signal {-code}"
        return RuntimeError(f"{how}: {tail[0]}")
    return list(json.loads((cell_dir / "done.json").read_text())["run_ids"])


def _ray_executor(spec: SweepSpec) -> Executor:
    """Ray tasks on the cluster at `spec.address`, or on a local Ray instance started here with
    `spec.workers` CPUs (and shut down when the sweep ends)."""
    try:
        import ray
    except ImportError:
        msg = (
            "--executor ray: Ray is not installed; expected the optional extra"
            " (pip install -e '.[ray]'), or use --executor local"
        )
        raise ScenarioError(msg) from None
    started_here = not ray.is_initialized()
    if started_here:
        if spec.address is not None:
            ray.init(address=spec.address, log_to_driver=False)
        else:
            ray.init(num_cpus=spec.workers, include_dashboard=False, log_to_driver=False)
    remote = ray.remote(num_cpus=1, max_retries=0)(run_cell)

    def execute(dirs: list[Path], cells: list[Cell]) -> Any:
        started = time.perf_counter()
        pending = {remote.remote(str(d)): c for d, c in zip(dirs, cells, strict=True)}
        while pending:
            finished, _ = ray.wait(list(pending), num_returns=1)
            for ref in finished:
                c = pending.pop(ref)
                try:
                    outcome: Outcome = list(ray.get(ref))
                except Exception as exc:  # noqa: BLE001  a task's error, or its worker died
                    outcome = exc
                yield c, outcome, time.perf_counter() - started

    return execute, (ray.shutdown if started_here else lambda: None)


# -- the worker side ---------------------------------------------------------------------------
def run_cell(cell_dir: str | Path) -> list[str]:
    """Replay one cell in its scratch workspace and export its runs; the run ids. Run in a
    worker process (``python -m streamsim.sweep CELL_DIR`` or a Ray task), never in the process
    that holds the workspace's store."""
    import torch

    from streamsim.parquet_io import import_dataset
    from streamsim.pipeline import run_scenario
    from streamsim.runs import export_runs
    from streamsim.store import has_dataset

    cell_dir = Path(cell_dir)
    spec = json.loads((cell_dir / "cell.json").read_text())
    torch.set_num_threads(int(spec["threads"]))
    ws = Workspace(cell_dir / "workspace")
    ws.root.mkdir(parents=True, exist_ok=True)
    for name in SHARED_DIRS:  # the workspace's own checkpoints and tuned rates
        link = ws.root / name
        if not link.exists():
            link.symlink_to(Path(spec["workspace"]) / name, target_is_directory=True)
    con = ws.connect()
    try:
        if not has_dataset(con, spec["dataset"]):
            import_dataset(con, spec["data_dir"], name=spec["dataset"])
        sc = scenario_mod.load(spec["scenario"], spec["overrides"])
        result = run_scenario(con, ws, sc, resume=True, dashboard=False)
        bad = [
            f"{s.policy}: {k} = {v}"
            for s in result.summaries for k, v in s.metrics.items()
            if isinstance(v, float) and not math.isfinite(v)
        ]  # fmt: skip
        if bad:
            msg = f"non-finite metrics ({'; '.join(bad[:3])})"
            raise StreamsimError(msg)
        run_ids = list(result.run_ids)
        export_runs(con, run_ids, cell_dir / "runs")
    finally:
        con.close()
    _write_json(cell_dir / "done.json", {"run_ids": run_ids})
    return run_ids


def _store(
    con: duckdb.DuckDBPyConnection, cell_dir: Path, cell: Cell, outcome: Outcome, seconds: float
) -> CellResult:
    """Import a finished cell's runs into the store (this process is its only writer) and record
    how the cell ended in ``result.json``."""
    if isinstance(outcome, BaseException):
        result = CellResult(cell, "failed", error=_one_line(outcome), seconds=seconds)
    else:
        try:
            run_ids = import_runs(con, cell_dir / "runs")
            tag_sweep_cell(con, run_ids, cell.label)
            result = CellResult(cell, "complete", run_ids, seconds=seconds)
        except StreamsimError as exc:
            result = CellResult(cell, "failed", error=str(exc), seconds=seconds)
        else:  # stored: the scratch copy of the dataset and the exported rows are not needed
            _remove_scratch(cell_dir)
    _write_json(cell_dir / "result.json", {
        "status": result.status, "run_ids": result.run_ids, "error": result.error,
        "seconds": result.seconds,
    })  # fmt: skip
    return result


def _exported_fingerprint(data_dir: Path) -> str | None:
    """The fingerprint of the dataset exported into `data_dir` (None: no export there)."""
    meta = data_dir / "meta.json"
    return str(json.loads(meta.read_text()).get("fingerprint")) if meta.exists() else None


def _remove_scratch(cell_dir: Path) -> None:
    """Delete a stored cell's scratch workspace and exported runs (the links to the workspace's
    shared directories are unlinked first, so nothing they point to is touched)."""
    scratch = cell_dir / "workspace"
    for name in SHARED_DIRS:
        link = scratch / name
        if link.is_symlink():
            link.unlink()
    for path in (scratch, cell_dir / "runs"):
        if path.exists():
            shutil.rmtree(path)


def _finished(con: duckdb.DuckDBPyConnection, cell_dir: Path) -> list[str] | None:
    """The run ids of a cell an earlier invocation completed and stored, else None."""
    path = cell_dir / "result.json"
    if not path.exists():
        return None
    got = json.loads(path.read_text())
    if got.get("status") != "complete":
        return None
    ids = list(got["run_ids"])
    return ids if complete_runs(con, ids) == len(ids) else None


def _one_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {text[-1] if text else ''}".strip()


def _write_json(path: Path, data: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(data, indent=2, default=str) + "\n")
    os.replace(tmp, path)


def cell_summaries(con: duckdb.DuckDBPyConnection, result: SweepResult) -> list[dict[str, Any]]:
    """Per setting (the cell's overrides without the seed) × policy: NDCG@10 and Recall@10
    means over the seeds with 95% t-intervals, the number of seeds and of failed cells."""
    from streamsim.report import summarize
    from streamsim.stats import t_interval

    groups: dict[tuple[str, str], dict[str, list[float]]] = {}
    failed: dict[str, int] = {}
    for c in result.cells:
        parts = [p for p in c.cell.label.split() if not p.startswith("seed=")]
        setting = " ".join(parts) or "default"
        if c.status == "failed":
            failed[setting] = failed.get(setting, 0) + 1
            continue
        for run_id in c.run_ids:
            s = summarize(con, run_id)
            cell = groups.setdefault((setting, s.policy), {"ndcg@10": [], "hr@10": []})
            for metric in cell:
                cell[metric].append(float(s.metrics[metric]))
    rows = []
    for (setting, policy), values in groups.items():
        row: dict[str, Any] = {
            "setting": setting,
            "policy": policy,
            "seeds": len(values["ndcg@10"]),
            "failed": failed.get(setting, 0),
        }
        for metric, v in values.items():
            low, high, _ = t_interval(v)  # type: ignore[arg-type]
            row[metric] = sum(v) / len(v)
            row[f"{metric}_ci"] = [low, high]
        rows.append(row)
    return rows


def write_dashboards(con: duckdb.DuckDBPyConnection, result: SweepResult) -> list[Path]:
    """One dashboard per group of stored cells that replayed the same events (one dataset: a
    grid over settings shares it, each seed of a synthetic scenario has its own), in the sweep's
    directory; runs are labelled by their cell where policies repeat."""
    from dashboards.page import write_dashboard
    from streamsim.runs import run_row

    groups: dict[tuple[Any, ...], list[str]] = {}
    for c in result.cells:
        for run_id in c.run_ids:
            row = run_row(con, run_id)
            key = (row["dataset"], row["data_fingerprint"], row["n_events"])
            groups.setdefault(key, []).append(run_id)
    paths = []
    for (dataset, fingerprint, _), run_ids in groups.items():
        path = result.directory / f"dashboard-{dataset}-{str(fingerprint)[:8]}.html"
        paths.append(Path(write_dashboard(con, run_ids, path)))
    return paths


def to_json(result: SweepResult) -> dict[str, Any]:
    return {
        "directory": str(result.directory),
        "cells": [
            {
                **asdict(c.cell),
                "status": c.status,
                "run_ids": c.run_ids,
                "error": c.error,
                "seconds": c.seconds,
            }  # fmt: skip
            for c in result.cells
        ],
    }


if __name__ == "__main__":  # a local worker: python -m streamsim.sweep CELL_DIR
    try:
        run_cell(sys.argv[1])
    except StreamsimError as exc:
        sys.stderr.write(f"error: {exc}\n")
        sys.exit(1)
