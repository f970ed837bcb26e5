"""`streamsim models list`, `streamsim train` and `streamsim evaluate` through the CLI."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

import models
from streamsim.cli import app
from tests.support.tiny_scenario import setup, toy_store_and_scenario
from tests.test_cli_replay import SCENARIO


def invoke(store: Path, *args: str):  # type: ignore[no-untyped-def]
    return CliRunner().invoke(app, ["--store", str(store), *args])


def test_models_list(tmp_path: Path) -> None:
    res = invoke(tmp_path, "models", "list", "--json")
    assert res.exit_code == 0, res.output
    rows = {r["name"]: r for r in json.loads(res.stdout)}
    assert set(rows) == {e.name for e in models.list_models()}
    assert rows["t2arec"]["test_time_loss"] is True
    assert rows["popularity"]["trainable"] is False
    text = invoke(tmp_path, "models", "list")
    assert "mamba4rec" in text.stdout


def test_train_writes_a_cached_checkpoint(tmp_path: Path) -> None:
    store, scenario = toy_store_and_scenario(tmp_path, SCENARIO)
    first = invoke(store, "train", "--scenario", str(scenario), "--json")
    assert first.exit_code == 0, first.output
    ckpt = json.loads(first.stdout[first.stdout.index("{") :])
    path = Path(ckpt["checkpoint"])
    assert (path / "model.safetensors").is_file()
    manifest = json.loads((path / "manifest.json").read_text())
    assert manifest["model"] == "t2arec"
    assert manifest["data_fingerprint"]
    assert "valid.ndcg@10" in manifest["best"]
    again = invoke(store, "train", "--scenario", str(scenario), "--json")
    assert json.loads(again.stdout[again.stdout.index("{") :])["hash"] == ckpt["hash"]


def test_train_prints_health_per_epoch_and_the_manifest_keeps_it(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    setup(store)
    scenario = tmp_path / "tiny.toml"
    scenario.write_text(SCENARIO)
    res = invoke(store, "train", "--scenario", str(scenario))
    assert res.exit_code == 0, res.output
    assert "health: rank-1 R²" in res.stdout
    path = Path(res.stdout.split("checkpoint ", 1)[1].split()[0])
    manifest = json.loads((path / "manifest.json").read_text())
    best = manifest["best"]
    for key in ("rank1_r2", "shared_energy", "popularity_ndcg@10", "delta_ratio", "collapsing"):
        assert f"health.{key}" in best
    warning = manifest["health_warning"]  # the kept epoch's, or None when healthy
    flagged = any(best[f"health.{k}"] for k in ("collapsing", "at_popularity_level"))
    assert (warning is not None) == (flagged or bool(best["health.degenerate_alignment"]))
    if warning is not None:
        assert "warning: t2arec" in res.stdout


def test_evaluate_loo_with_model_options_and_tta(tmp_path: Path) -> None:
    store = tmp_path / "ws"
    setup(store)
    args = ["evaluate", "--dataset", "toy", "--model", "t2arec", "--max-len", "8", "--epochs", "1"]
    tiny = ["-c", "d_model=16", "-c", "d_state=8", "-c", "chunk=8", "-c", "time_block=8"]
    res = invoke(store, *args, *tiny, "--seeds", "2", "--tta", "--batch-size", "256", "--json")
    assert res.exit_code == 0, res.output
    doc = json.loads(res.stdout[res.stdout.index("{") :])
    assert len(doc["runs"]) == 2
    assert set(doc["test"]) >= {"recall@10", "ndcg@10", "mrr@10", "recall@50", "ndcg@50"}
    assert "test_tta" in doc
    mean, std = doc["test"]["ndcg@10"]
    assert 0.0 <= mean <= 1.0
    assert std >= 0.0
    bad = invoke(store, *args, "-c", "d_model")
    assert bad.exit_code == 1
    assert "expected KEY=VALUE" in bad.output
    unknown = invoke(store, *args, "-c", "d_modle=16")
    assert unknown.exit_code == 1
    assert "unknown config keys ['d_modle']" in unknown.output
    tta_wrong = invoke(store, "evaluate", "--dataset", "toy", "--model", "sasrec", "--tta")
    assert tta_wrong.exit_code == 1
    assert "has no test-time loss" in tta_wrong.output


def test_evaluate_resume_dir_refuses_a_file_for_other_settings(tmp_path: Path) -> None:
    """`--resume-dir` reaches the training loop: a resume file for other settings is refused
    with its name, exit 1 and no traceback; a matching run completes and removes its file."""
    store, resume = tmp_path / "ws", tmp_path / "resume"
    setup(store)
    args = ["evaluate", "--dataset", "toy", "--model", "sasrec", "--max-len", "8", "--epochs", "1"]
    tiny = ["-c", "hidden_size=16", "-c", "inner_size=32", "-c", "n_layers=1"]
    resume.mkdir()
    stale = resume / "toy-L8-sasrec-seed0.pt"
    stale.write_bytes(b"junk")
    bad = invoke(store, *args, *tiny, "--resume-dir", str(resume))
    assert bad.exit_code == 1
    assert "toy-L8-sasrec-seed0.pt: not a streamsim resume file" in bad.output
    assert "Traceback" not in bad.output
    stale.unlink()
    ok = invoke(store, *args, *tiny, "--resume-dir", str(resume), "--json")
    assert ok.exit_code == 0, ok.output
    assert list(resume.iterdir()) == []
