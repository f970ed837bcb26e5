"""Which users just shifted? A label-free per-user signal, scored against known user shifts.

The signal of a request is the model's own reaction to the user's history, known before the
request's target is revealed: whether the category of the model's top-1 recommendation for the
user changed since the user's previous request in the replay (1) or not (0). A user whose recent
events moved to another topic gets recommendations from another category; a user who stayed
gets the same kind.

Ground truth, on synthetic data (`event_regimes`): a request "just shifted" when the user's
regime differs from the regime of one of the user's previous `window` events (the first
`window` requests after each of the user's regime switches, in either direction; a recurring
weekend shift switches twice a week). Reported: AUROC of the signal for "just shifted" (ties
count half; 0.5 is chance), and the precision and recall of the flagged requests (signal 1).
On a real log with per-user changes a user added (`streamsim datasets changes --scope`), a
request "just shifted" when it is among the user's first `window` requests at or after one of
the user's change times. Beside it, a baseline that needs no model: the user's last two
revealed events belong to different categories. Computed from what a run stores
(`run_events.top1`, the items' and events' categories), on demand: no replay is needed, and no
target is read to compute either signal.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass
from typing import Any

import duckdb
import numpy as np
import pandas as pd
from scipy import stats

from streamsim.runs import run_info
from streamsim.store import known_user_changes

WINDOW = 3  # requests after a regime switch that count as "just shifted"


@dataclass(frozen=True)
class UserShiftScore:
    """How well the per-user signal ranks "just shifted" requests above the others."""

    n_requests: int  # replay requests with a previous request of the same user
    n_shifted: int  # of them, within `window` requests of a regime switch
    auroc: float
    precision: float  # flagged requests (signal 1) that just shifted
    recall: float  # just-shifted requests that were flagged
    # the same for a data baseline without any model: the user's last two revealed events are
    # of different categories (what the model's reaction is to be compared with)
    history_auroc: float
    history_precision: float
    history_recall: float
    window: int

    def to_json(self) -> dict[str, Any]:
        return {k: (None if isinstance(v, float) and math.isnan(v) else v)
                for k, v in asdict(self).items()}  # fmt: skip


def user_shift_frame(con: duckdb.DuckDBPyConnection, run_id: str) -> pd.DataFrame:
    """Per replay request with a previous request of the same user: ``idx, user_id, ts,
    signal`` (0/1) and, with a generator's regimes, ``regime`` and ``prev_regimes`` (the regimes
    of the user's previous `WINDOW` events, anywhere before)."""
    dataset = run_info(con, run_id)["dataset"]
    frame = con.execute(
        "WITH r AS (SELECT e.idx, e.user_id, e.ts, i.category AS c FROM run_events_of($run) e"
        " LEFT JOIN dataset_items($ds) i ON i.item_id = e.top1),"
        " s AS (SELECT *, lag(c) OVER (PARTITION BY user_id ORDER BY idx) AS c_prev,"
        " row_number() OVER (PARTITION BY user_id ORDER BY idx) AS k FROM r),"
        " h AS (SELECT idx, lag(category, 1) OVER w AS h1, lag(category, 2) OVER w AS h2"
        " FROM dataset_events($ds) WINDOW w AS (PARTITION BY user_id ORDER BY idx)),"
        " g AS (SELECT d.idx, g.regime, list(g.regime) OVER (PARTITION BY d.user_id"
        f" ORDER BY d.idx ROWS BETWEEN {WINDOW} PRECEDING AND 1 PRECEDING) AS prev_regimes"
        " FROM dataset_events($ds) d JOIN dataset_regimes($ds) g ON g.idx = d.idx)"
        " SELECT s.idx, s.user_id, s.ts,"
        " CASE WHEN s.c IS DISTINCT FROM s.c_prev THEN 1 ELSE 0 END AS signal,"
        " CASE WHEN h.h1 IS DISTINCT FROM h.h2 THEN 1 ELSE 0 END AS history_signal,"
        " g.regime, g.prev_regimes FROM s JOIN h ON h.idx = s.idx LEFT JOIN g ON g.idx = s.idx"
        " WHERE s.k > 1 ORDER BY s.idx",
        {"run": run_id, "ds": dataset},
    ).df()
    return frame


def score_user_shift(con: duckdb.DuckDBPyConnection, run_id: str) -> UserShiftScore | None:
    """The signal scored against the dataset's regimes, or against the per-user changes a user
    added to a real log (`streamsim.changes`, ``--scope``); None with neither."""
    frame = user_shift_frame(con, run_id)
    if frame.empty:
        return None
    if not frame["regime"].isna().all():
        shifted = np.array(
            [
                any(p != r for p in prev) if prev is not None else False
                for r, prev in zip(frame["regime"], frame["prev_regimes"], strict=True)
            ]  # fmt: skip
        )
    else:
        known = known_user_changes(con, str(run_info(con, run_id)["dataset"]))
        if not known:
            return None
        shifted = after_known_changes(frame, known)
    signal = frame["signal"].to_numpy(dtype=np.float64)
    auroc, precision, recall = _scores(signal, shifted)
    h_auroc, h_precision, h_recall = _scores(frame["history_signal"].to_numpy(np.float64), shifted)
    return UserShiftScore(
        len(frame), int(shifted.sum()), auroc, precision, recall, h_auroc, h_precision,
        h_recall, WINDOW,
    )  # fmt: skip


def after_known_changes(frame: pd.DataFrame, changes: list[tuple[int, int]]) -> np.ndarray:
    """Per request of `frame` (``user_id``, ``ts``, in replay order): whether it is among its
    user's first `WINDOW` requests at or after one of that user's known change times."""
    shifted = np.zeros(len(frame), dtype=bool)
    by_user: dict[int, list[int]] = {}
    for user, ts in changes:
        by_user.setdefault(user, []).append(ts)
    users = frame["user_id"].to_numpy()
    times = frame["ts"].to_numpy()
    for user, starts in by_user.items():
        rows = np.flatnonzero(users == user)  # replay order
        for start in starts:
            after = rows[times[rows] >= start][:WINDOW]
            shifted[after] = True
    return shifted


def _scores(signal: np.ndarray, shifted: np.ndarray) -> tuple[float, float, float]:
    """AUROC (ties count half), and precision and recall of the flagged (signal 1) requests."""
    n_pos, n = int(shifted.sum()), len(signal)
    auroc = math.nan
    if 0 < n_pos < n:
        ranks = stats.rankdata(signal)
        auroc = float((ranks[shifted].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * (n - n_pos)))
    flagged = signal == 1
    precision = float(shifted[flagged].mean()) if flagged.any() else math.nan
    recall = float(flagged[shifted].mean()) if n_pos else math.nan
    return auroc, precision, recall


def likely_shifted_users(
    con: duckdb.DuckDBPyConnection, run_id: str, *, last: int = 5, top: int = 10
) -> pd.DataFrame:
    """The users most likely to have shifted lately: ``user_id``, how many of their last `last`
    requests were flagged, their last request time; `top` rows, most flagged first."""
    frame = user_shift_frame(con, run_id)
    if frame.empty:
        return pd.DataFrame(columns=["user_id", "flagged", "requests", "last_ts"])
    recent = frame.groupby("user_id", sort=False).tail(last)
    out = recent.groupby("user_id").agg(
        flagged=("signal", "sum"), requests=("signal", "size"), last_ts=("ts", "max")
    )
    out = out.reset_index().sort_values(["flagged", "last_ts"], ascending=[False, False])
    return out.head(top).reset_index(drop=True)
