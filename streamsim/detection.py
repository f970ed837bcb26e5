"""Detector summaries of a run: alarm counts and, for synthetic data, scores against ground truth.

Each detector's alarms are scored against the dataset's global drifts that start inside the
replayed period (`streamsim.drift.score_alarms`), next to river's `DummyDriftDetector` firing
periodically with the same number of alarms (Bifet 2017: a detector only "works" if it beats
that periodic trigger) and, seeded, with random triggers at about the same rate (`random_*`).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

import duckdb

from streamsim.drift import periodic_alarms, random_alarms, score_alarms


def delta_max_for(n_events: int) -> int:
    """Acceptance window after a drift's end: 10% of the replay, at most 2000 events."""
    return max(1, min(2000, n_events // 10))


def detector_report(con: duckdb.DuckDBPyConnection, run_id: str) -> list[dict[str, Any]]:
    """One row per (detector, signal) of the run, scored against ground truth when there is any."""
    run = con.execute(
        "SELECT dataset, min(e.idx), max(e.idx), count(*) FROM runs r JOIN run_events e"
        " USING (run_id) WHERE run_id = ? GROUP BY dataset",
        [run_id],
    ).fetchall()
    if not run:
        return []
    dataset, first, last, n_events = run[0]
    drifts = con.execute(
        "SELECT start_idx, end_idx, start_ts FROM drifts WHERE dataset = ? AND user_id IS NULL"
        " AND start_idx >= ? AND start_idx <= ? ORDER BY start_idx",
        [dataset, first, last],
    ).fetchall()
    watched = con.execute(
        "SELECT DISTINCT json_extract_string(d.value, '$.name'), "
        " json_extract_string(d.value, '$.signal')"
        " FROM runs, json_each(json_extract(manifest, '$.detectors')) AS d WHERE run_id = ?",
        [run_id],
    ).fetchall()
    delta_max = delta_max_for(int(n_events))
    rows = []
    for name, signal in sorted(watched):
        alarms = con.execute(
            "SELECT idx, ts FROM run_alarms WHERE run_id = ? AND detector = ? AND signal = ?"
            " ORDER BY idx",
            [run_id, name, signal],
        ).fetchall()
        row: dict[str, Any] = {"detector": name, "signal": signal, "alarms": len(alarms)}
        if drifts:
            score = score_alarms(
                [a[0] for a in alarms],
                [a[1] for a in alarms],
                drifts,
                n_events=int(n_events),
                delta_max=delta_max,
            )
            row.update({f"{k}": v for k, v in asdict(score).items()})
            # PROTOCOL.md §6.8.3: how much the acceptance window decides the score
            row["delta_max_sensitivity"] = {
                f"{factor}x": {
                    k: v
                    for k, v in asdict(
                        score_alarms(
                            [a[0] for a in alarms],
                            [a[1] for a in alarms],
                            drifts,
                            n_events=int(n_events),
                            delta_max=max(1, round(factor * delta_max)),
                        )
                    ).items()
                    if k in ("detected", "missed_rate", "delay_events", "far_per_10k")
                }
                for factor in (0.5, 2)
            }
            dummy_idx = periodic_alarms(int(n_events), len(alarms), offset=int(first))
            dummy_ts = _timestamps(con, run_id, dummy_idx)
            baseline = score_alarms(
                dummy_idx, dummy_ts, drifts, n_events=int(n_events), delta_max=delta_max
            )
            row.update({f"periodic_{k}": v for k, v in asdict(baseline).items()})
            rand_idx = random_alarms(int(n_events), len(alarms), offset=int(first))
            rand = score_alarms(
                rand_idx,
                _timestamps(con, run_id, rand_idx),
                drifts,
                n_events=int(n_events),
                delta_max=delta_max,
            )
            row.update({f"random_{k}": v for k, v in asdict(rand).items()})
            row["delta_max"] = delta_max
        rows.append(row)
    return rows


def _timestamps(con: duckdb.DuckDBPyConnection, run_id: str, idx: list[int]) -> list[int]:
    if not idx:
        return []
    found = dict(
        con.execute(
            "SELECT idx, ts FROM run_events WHERE run_id = ? AND list_contains(?, idx)",
            [run_id, idx],
        ).fetchall()
    )
    return [int(found.get(i, 0)) for i in idx]
