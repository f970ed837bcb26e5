"""`streamsim replay` / `runs` through the CLI, on a toy dataset and a scenario file."""

from __future__ import annotations

import html
import json
from pathlib import Path

import pyarrow.parquet as pq
from typer.testing import CliRunner

from streamsim.cli import app
from tests.support.tiny_scenario import setup, toy_store_and_scenario

SCENARIO = """
name = "tiny-cli"
description = "toy data, tiny T2ARec"
seed = 1

[data]
dataset = "toy"

[split]
valid_start = 0.5
replay_start = 0.6

[model]
name = "t2arec"

[model.config]
max_len = 8
d_model = 16
d_state = 8
chunk = 8
time_block = 8

[train]
epochs = 1
batch_size = 64

[[adaptation.policies]]
name = "none"

[[adaptation.policies]]
name = "reset"
tta = "reset"
tta_lr = 0.01

[replay]
batch_events = 64

[[detectors]]
name = "adwin"
signal = "rr10"
"""


def invoke(store: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(store), *args])


def test_replay_runs_show_and_export(tmp_path: Path) -> None:
    store, scenario = toy_store_and_scenario(tmp_path, SCENARIO)
    result = invoke(store, "replay", "--scenario", str(scenario), "--json", "--no-dashboard")
    assert result.exit_code == 0, result.output
    payload = json.loads(result.stdout[result.stdout.index("{") :])
    runs = {r["policy"]: r for r in payload["runs"]}
    assert set(runs) == {"none", "reset"}
    assert 0.0 <= runs["reset"]["metrics"]["ndcg@10"] <= 1.0
    assert payload["comparison"] is not None
    cold = payload["split_report"]
    assert cold["replay_events"] == runs["reset"]["n_events"]
    assert 0 <= cold["events_unseen_user_or_item"] <= cold["replay_events"]
    health = payload["training_health"]  # the checkpoint's kept epoch, flags and warning
    assert set(health) == {"collapsing", "at_popularity_level", "degenerate_alignment", "warning"}
    assert all(isinstance(health[k], bool) for k in set(health) - {"warning"})

    listed = invoke(store, "runs", "list", "--json")
    assert listed.exit_code == 0
    assert len(json.loads(listed.stdout)) == 2

    run_id = runs["reset"]["run_id"]
    shown = invoke(store, "runs", "show", run_id, "--json")
    assert shown.exit_code == 0
    info = json.loads(shown.stdout)
    assert info["metrics"]["ndcg@10"] == runs["reset"]["metrics"]["ndcg@10"]
    assert info["manifest"]["policy"]["tta"] == "reset"
    assert info["manifest"]["training_health"] == health

    out = tmp_path / "events.parquet"
    exported = invoke(store, "runs", "export", run_id, str(out))
    assert exported.exit_code == 0
    table = pq.read_table(out)
    assert "rank" in table.column_names
    assert table.num_rows == runs["reset"]["n_events"]
    assert min(table.column("rank").to_pylist()) >= 1


def test_bad_scenario_key_is_one_clean_error(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    setup(store)
    scenario = tmp_path / "bad.toml"
    scenario.write_text(SCENARIO.replace("batch_events = 64", "batchsize = 64"))
    result = invoke(store, "replay", "--scenario", str(scenario))
    assert result.exit_code == 1
    assert "batchsize" in result.output
    assert "bad.toml" in result.output
    assert "Traceback" not in result.output


def test_unknown_run_is_one_clean_error(tmp_path: Path) -> None:
    result = invoke(tmp_path / "ws", "runs", "show", "nope")
    assert result.exit_code == 1
    assert "unknown run 'nope'" in result.output


def test_text_output_is_wide_and_prints_names_verbatim(tmp_path: Path) -> None:
    """Piped output is laid out wide, and bracketed names are not eaten as rich markup."""
    store, scenario = toy_store_and_scenario(tmp_path, SCENARIO)
    result = invoke(store, "replay", "--scenario", str(scenario), "--no-dashboard")
    assert result.exit_code == 0, result.output
    assert "[none] adwin(rr10):" in result.stdout
    assert "[reset] adwin(rr10):" in result.stdout
    widest = max(len(line) for line in result.stdout.splitlines())
    assert 80 < widest <= 200
    assert "NDCG@10 by quartile" in result.stdout  # the header is not folded
    assert "replay period: " in result.stdout
    assert "split: pretrain " in result.stdout
    assert "split: replay " in result.stdout
    assert "unseen before the cut:" in result.stdout
    # the step size stands next to every adaptation result, and the output reads the comparison
    assert "step ‖Δθ‖/‖θ‖" in result.stdout
    assert "Δ NDCG@10 vs none [95% CI]" in result.stdout
    reading = [line for line in result.stdout.splitlines() if line.startswith("reading: ")]
    assert len(reading) == 2
    assert reading[0].startswith("reading: t2arec/reset: ")
    assert "label-free test-time adaptation" in reading[1]  # the answer to the question
    assert "its model steps (lr 0.01) moved the weights by" in reading[0]
    assert any(v in reading[0] for v in ("no detectable difference", "better than", "worse than"))


def test_set_overrides_scenario_values_through_the_loader(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    setup(store)
    path = tmp_path / "tiny.toml"
    path.write_text(SCENARIO)
    res = invoke(
        store, "replay", "-s", str(path), "-p", "none", "--no-dashboard", "--json",
        "--set", "replay.max_events=64", "--set", "replay.probe_events=0",
    )  # fmt: skip
    assert res.exit_code == 0, res.output
    (run,) = json.loads(res.stdout)["runs"]
    assert run["n_events"] == 64
    assert run["forgetting"]["points"] == 0
    bad = invoke(store, "replay", "-s", str(path), "--set", "train.patiense=6")
    assert bad.exit_code == 1
    assert "[train] unknown key 'patiense'" in bad.output
    assert "Traceback" not in bad.output
    malformed = invoke(store, "train", "-s", str(path), "--set", "patience")
    assert malformed.exit_code == 1
    assert "--set 'patience': expected KEY=VALUE, e.g. train.patience=6" in malformed.output


def test_continual_is_read_against_reset_and_a_step_against_its_placebo(tmp_path: Path) -> None:
    """Each continual run is paired with the reset run taking the same step (rule, steps, lr),
    and each label-free step with the placebo of its rule, schedule and rate: the reading,
    `--json` and the dashboard say whether the pair differs, with its CI; a continual run with
    another learning rate is left unpaired."""
    policies = """
[[adaptation.policies]]
name = "continual"
tta = "continual"
tta_lr = 0.01

[[adaptation.policies]]
name = "continual-other-lr"
tta = "continual"
tta_lr = 0.02

[[adaptation.policies]]
name = "placebo"
tta = "reset"
tta_step = "placebo"
tta_lr = 0.01
"""
    store, scenario = toy_store_and_scenario(
        tmp_path, SCENARIO.replace("[replay]", policies + "\n[replay]")
    )
    result = invoke(store, "replay", "--scenario", str(scenario), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout[result.stdout.index("{") :])
    ids = {r["policy"]: r["run_id"] for r in out["runs"]}
    carried, placebo = out["contrasts"]
    assert (carried["base"], carried["other"]) == (ids["reset"], ids["continual"])
    assert (placebo["base"], placebo["other"]) == (ids["placebo"], ids["reset"])
    assert carried["ci_low"] <= carried["mean_diff"] <= carried["ci_high"]
    lines = [r for r in out["reading"] if " vs reset (" in r or " vs placebo (" in r]
    assert len(lines) == 2
    assert lines[0].startswith("t2arec/continual vs reset (the same step, carried forward")
    assert lines[1].startswith("t2arec/reset vs placebo (its step vs a random one of the same")
    for line, pair in zip(lines, (carried, placebo), strict=True):
        assert f"{pair['mean_diff']:+.4f} NDCG@10 [95% CI" in line
        assert "no detectable difference" in line or " than " in line
    page = Path(out["dashboard"]).read_text()
    assert '<section class="reading" id="reading">' in page
    assert all(html.escape(line) in page for line in lines)


def test_off_a_terminal_progress_is_plain_lines_per_epoch_and_per_tenth(tmp_path: Path) -> None:
    """A log file or CI gets one line per training epoch and per 10% of each replay (no bars,
    no control characters), as they happen."""
    store, scenario = toy_store_and_scenario(tmp_path, SCENARIO)
    result = invoke(store, "replay", "--scenario", str(scenario), "--no-dashboard")
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert any(line.startswith("epoch 0: train loss") for line in lines)
    for policy in ("none", "reset"):
        steps = [x for x in lines if x.startswith(f"replay {policy}: ") and "% events" not in x]
        shares = [x for x in steps if "%)" in x]
        assert 5 <= len(shares) <= 11, shares  # about one per tenth of the replay
        assert shares[-1].split("events (")[1].startswith("100%")
    assert "\r" not in result.output
    assert "\x1b[" not in result.output
