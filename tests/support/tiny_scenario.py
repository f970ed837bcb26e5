"""A small scenario over a toy dataset with a tiny T2ARec, built without a TOML file."""

from __future__ import annotations

import sys
import time
from pathlib import Path

from streamsim.adapt import PolicySpec
from streamsim.drift import DetectorSpec
from streamsim.pipeline import prepare, replay_policy
from streamsim.replay import ReplaySpec
from streamsim.scenario import DataSpec, Scenario
from streamsim.splits import SplitSpec
from streamsim.store import Workspace, has_dataset
from streamsim.train import ModelSpec, TrainSpec
from tests.support.toy import store_toy

TINY_T2AREC = (
    ("chunk", 8),
    ("d_model", 16),
    ("d_state", 8),
    ("dropout", 0.1),
    ("max_len", 8),
    ("time_block", 8),
)

POLICIES = (
    PolicySpec(name="none"),
    PolicySpec(name="reset", tta="reset", tta_lr=0.01),
    PolicySpec(name="continual", tta="continual", tta_lr=0.01),
    PolicySpec(name="continual-online", tta="continual", tta_lr=0.01, online=True),
)


def tiny_scenario(model: str = "t2arec", config: tuple = TINY_T2AREC) -> Scenario:  # type: ignore[type-arg]
    return Scenario(
        name="tiny",
        description="toy data, tiny model",
        path=Path("tiny.toml"),
        content_hash="tiny-" + model,
        seed=3,
        data=DataSpec(dataset="toy"),
        split=SplitSpec(valid_start=0.5, replay_start=0.6),
        model=ModelSpec(name=model, config=config),
        train=TrainSpec(epochs=2, batch_size=64, patience=1),
        policies=POLICIES,
        replay=ReplaySpec(batch_events=32),
        detectors=(
            DetectorSpec(name="adwin", signal="rr10"),
            DetectorSpec(name="page_hinkley", signal="tta_loss"),
        ),
    )


def toy_store_and_scenario(tmp_path: Path, text: str) -> tuple[Path, Path]:
    """(workspace root with the toy dataset, scenario file holding `text`) for CLI tests."""
    store = tmp_path / "ws"
    setup(store)
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(text)
    return store, scenario


def setup(root: Path) -> tuple[Workspace, object]:
    ws = Workspace.resolve(root)
    con = ws.connect()
    if not has_dataset(con, "toy"):
        store_toy(con, n_events=1200, n_users=40, n_items=30)
    return ws, con


if __name__ == "__main__":  # the process the resume test kills
    ws, con = setup(Path(sys.argv[1]))
    sc = tiny_scenario()
    prepared = prepare(con, ws, sc)  # type: ignore[arg-type]
    replay_policy(
        con,
        ws,
        sc,
        POLICIES[3],
        prepared,  # type: ignore[arg-type]
        progress=lambda *_: time.sleep(0.3),
        chunk_batches=2,
    )
