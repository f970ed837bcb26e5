"""The per-user shift signal: its AUROC against the generator's regime switches, in runs show."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
from typer.testing import CliRunner

from streamsim.cli import app
from streamsim.detector_study import run_seed
from streamsim.store import Workspace
from streamsim.user_shift import _scores, likely_shifted_users, score_user_shift


def test_scores_with_known_answers() -> None:
    shifted = np.array([True, True, False, False, False])
    assert _scores(np.array([1.0, 1, 0, 0, 0]), shifted) == (1.0, 1.0, 1.0)
    auroc, precision, recall = _scores(np.zeros(5), shifted)
    assert auroc == 0.5
    assert math.isnan(precision)
    assert recall == 0.0
    # P(shifted above not) + half the ties: (0.5 + 0.5 + 0.5 + 1 + 1) / 6
    assert _scores(np.array([0.0, 1, 1, 0, 0]), shifted) == (7 / 12, 0.5, 0.5)


def test_a_generated_streams_run_is_scored_and_a_real_log_is_not(tmp_path: Path) -> None:
    run_seed(tmp_path, "weekend-shift", 0, model="transition",
             overrides={"data.synthetic.n_users": 300})  # fmt: skip
    store = tmp_path / "weekend-shift-seed0"
    con = Workspace.resolve(store).connect()
    (run_id,) = [r[0] for r in con.execute("SELECT run_id FROM runs").fetchall()]
    shift = score_user_shift(con, run_id)
    assert shift is not None
    assert 0 < shift.n_shifted < shift.n_requests
    for value in (shift.auroc, shift.history_auroc, shift.recall, shift.history_recall):
        assert 0.0 <= value <= 1.0
    users = likely_shifted_users(con, run_id, last=5, top=4)
    assert len(users) == 4
    assert list(users["flagged"]) == sorted(users["flagged"], reverse=True)
    con.close()
    shown = CliRunner().invoke(app, ["--store", str(store), "runs", "show", run_id, "--json"])
    assert json.loads(shown.stdout)["user_shift"]["auroc"] == shift.auroc
    text = CliRunner().invoke(app, ["--store", str(store), "runs", "show", run_id])
    assert "user shift: top-1 category changed" in text.stdout
