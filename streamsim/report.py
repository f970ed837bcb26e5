"""The summary of one run that `replay` and `runs show` print: metrics, quartiles, detectors,
forgetting, the adaptation's resets and the recommendations' health."""

from __future__ import annotations

from dataclasses import asdict, dataclass, fields
from typing import Any

import duckdb

from streamsim.detection import DetectorReport, detector_report
from streamsim.metrics import overall
from streamsim.runs import run_info
from streamsim.segments import quartiles
from streamsim.store import fetch_one


@dataclass(frozen=True)
class Forgetting:
    """The forgetting probe of a run (`streamsim.probe`): NDCG@10 of θ₀ minus the current
    weights on fixed pre-replay requests. `points` = 0 when the run has no probe."""

    points: int
    last: float | None  # at the last probe point
    se_last: float | None  # its standard error (paired per-request differences)
    max: float | None  # the largest over the probe points
    probe_ndcg10_last: float | None  # the probe's NDCG@10 at the end
    top1_flip_last: float | None  # share of probe requests whose top-1 changed vs θ₀


@dataclass(frozen=True)
class Health:
    """Means over a run's micro-batches of the recommendation-diversity diagnostics: top-10
    coverage of the catalogue, Gini of the top-10 counts, marginal entropy of the top-1
    predictions, mean top-10 score entropy (None when not recorded)."""

    coverage: float | None
    rec_gini: float | None
    top1_entropy: float | None
    topk_entropy: float | None


@dataclass(frozen=True)
class RunSummary:
    run_id: str
    policy: str
    model: str
    n_events: int
    events_per_s: float
    metrics: dict[str, float]  # `streamsim.metrics.overall`: ndcg@10, hr@10, ... by group
    quartiles: tuple[float, ...]  # NDCG@10 per quarter of the replay
    detectors: tuple[DetectorReport, ...]
    forgetting: Forgetting
    tta_resets: int  # periodic, drift-triggered or oracle restores of θ₀ (continual policies)
    tta_skipped_steps: int  # test-time steps not taken: non-finite loss or gradient
    health: Health

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out["quartiles"] = list(self.quartiles)
        out["detectors"] = [d.to_json() for d in self.detectors]
        return out


def summarize(con: duckdb.DuckDBPyConnection, run_id: str) -> RunSummary:
    info = run_info(con, run_id)
    q = quartiles(con, run_id, metric="ndcg10")
    return RunSummary(
        run_id=run_id,
        policy=info["policy"],
        model=info["model"],
        n_events=int(info["n_events"]),
        events_per_s=float(info["events_per_s"] or 0.0),
        metrics=overall(con, run_id),
        quartiles=tuple(float(v) for v in q["value"].tolist()),
        detectors=tuple(detector_report(con, run_id)),
        forgetting=forgetting(con, run_id),
        tta_resets=_count(con, "count(*) FILTER (WHERE tta_reset)", run_id),
        tta_skipped_steps=_count(con, "coalesce(sum(tta_skipped_steps), 0)", run_id),
        health=health(con, run_id),
    )


def health(con: duckdb.DuckDBPyConnection, run_id: str) -> Health:
    means = ", ".join(f"avg({f.name})" for f in fields(Health))
    (row,) = con.execute(f"SELECT {means} FROM run_batches_of(?)", [run_id]).fetchall()
    return Health(*(None if v is None else float(v) for v in row))


def _count(con: duckdb.DuckDBPyConnection, aggregate: str, run_id: str) -> int:
    row = fetch_one(con, f"SELECT {aggregate} FROM run_batches_of(?)", [run_id])
    assert row is not None
    return int(row[0])


def forgetting(con: duckdb.DuckDBPyConnection, run_id: str) -> Forgetting:
    row = fetch_one(
        con,
        "SELECT count(forgetting_ndcg10), arg_max(forgetting_ndcg10, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), arg_max(forgetting_se, batch_id)"
        " FILTER (WHERE forgetting_ndcg10 IS NOT NULL), max(forgetting_ndcg10),"
        " arg_max(probe_ndcg10, batch_id) FILTER (WHERE probe_ndcg10 IS NOT NULL),"
        " arg_max(probe_top1_flip, batch_id) FILTER (WHERE probe_top1_flip IS NOT NULL)"
        " FROM run_batches_of(?)",
        [run_id],
    )
    assert row is not None
    n, *rest = row
    return Forgetting(int(n), *(None if v is None else float(v) for v in rest))
