"""Resumable training (streamsim.resume): an interrupted run continued from its file is the
uninterrupted run, bit for bit; a file for another run or a damaged file is refused."""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import load_file

import models
from streamsim import resume as resume_state
from streamsim.errors import ModelError
from streamsim.leave_one_out import evaluate_loo
from streamsim.progress import ProgressEvent, TrainStep
from streamsim.store import connect_memory
from streamsim.train import ModelSpec, TrainSpec, model_source_files
from tests.support.toy import store_toy

TINY = {
    "sasrec": (("hidden_size", 16), ("inner_size", 32), ("max_len", 8), ("n_layers", 1)),
    "bert4rec": (("hidden_size", 16), ("inner_size", 32), ("max_len", 8), ("n_layers", 1)),
}
SPEC = TrainSpec(epochs=4, batch_size=64, patience=10, eval_batch_size=64)


class _Killed(Exception):
    """Stands in for the process being killed in the middle of an epoch."""


def _con():  # type: ignore[no-untyped-def]
    con = connect_memory()
    store_toy(con, n_events=500, n_users=25, n_items=30)
    return con


def _run(
    model: str, resume_dir: Path | None, kill_in_epoch: int | None = None, device: str = "cpu"
) -> dict[str, Any]:
    def progress(event: ProgressEvent) -> None:
        if isinstance(event, TrainStep) and event.epoch == kill_in_epoch:
            raise _Killed

    spec = ModelSpec(name=model, config=TINY[model])
    return evaluate_loo(
        _con(),
        "toy",
        spec,
        SPEC,
        seed=5,
        eval_batch_size=64,
        progress=progress,
        resume_dir=resume_dir,
        device=device,
    )


def _without_timing(history: Any) -> list[dict[str, float]]:
    return [{k: v for k, v in h.items() if k != "seconds"} for h in history]


@pytest.mark.parametrize("model", ["sasrec", "bert4rec"])  # dropout; BERT4Rec owns a mask RNG
def test_an_interrupted_run_resumes_to_the_uninterrupted_result(model: str, tmp_path: Path) -> None:
    straight = _run(model, None)
    with pytest.raises(_Killed):
        _run(model, tmp_path, kill_in_epoch=2)  # epochs 0 and 1 finished and saved
    (saved,) = tmp_path.iterdir()
    assert saved.name == f"toy-L8-{model}-seed5.pt"
    key, state = resume_state.peek(saved)
    assert (key["model"], key["seed"], state.epochs_done, state.finished) == (model, 5, 2, False)
    assert len(state.history) == 2
    resumed = _run(model, tmp_path)
    assert len(resumed["history"]) == SPEC.epochs
    assert _without_timing(resumed["history"]) == _without_timing(straight["history"])
    assert resumed["test"] == straight["test"]
    assert list(tmp_path.iterdir()) == []  # removed once the result is complete


def test_a_file_without_the_device_generator_still_resumes(tmp_path: Path) -> None:
    """Files written before `device_rng` was saved load with None: on CPU the same run."""
    straight = _run("sasrec", None)
    with pytest.raises(_Killed):
        _run("sasrec", tmp_path, kill_in_epoch=2)
    (saved,) = tmp_path.iterdir()
    payload = torch.load(saved, weights_only=True)
    assert payload.pop("device_rng") is None  # a CPU run saves no device generator
    torch.save(payload, saved)
    assert resume_state.peek(saved)[1].device_rng is None
    resumed = _run("sasrec", tmp_path)
    assert _without_timing(resumed["history"]) == _without_timing(straight["history"])
    assert resumed["test"] == straight["test"]


@pytest.mark.gpu
def test_an_interrupted_cuda_run_resumes_to_the_uninterrupted_result(tmp_path: Path) -> None:
    """Dropout on CUDA draws from the device generator, which the resume file carries."""
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA: the device generator is what is under test")
    straight = _run("sasrec", None, device="cuda")
    with pytest.raises(_Killed):
        _run("sasrec", tmp_path, kill_in_epoch=2, device="cuda")
    (saved,) = tmp_path.iterdir()
    assert resume_state.peek(saved)[1].device_rng is not None
    resumed = _run("sasrec", tmp_path, device="cuda")
    assert _without_timing(resumed["history"]) == _without_timing(straight["history"])
    assert resumed["test"] == straight["test"]


def test_the_history_differs_without_the_saved_generators(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The exactness above is not vacuous: losing the shuffling/dropout state changes the run."""
    straight = _run("sasrec", None)
    with pytest.raises(_Killed):
        _run("sasrec", tmp_path, kill_in_epoch=2)
    real_load = resume_state.load

    def load_without_rng(resume: resume_state.ResumeFile) -> resume_state.FitState | None:
        state = real_load(resume)
        assert state is not None
        state.torch_rng = torch.Generator().manual_seed(123).get_state()
        return state

    monkeypatch.setattr(resume_state, "load", load_without_rng)
    resumed = _run("sasrec", tmp_path)
    assert _without_timing(resumed["history"])[:2] == _without_timing(straight["history"])[:2]
    assert _without_timing(resumed["history"])[2:] != _without_timing(straight["history"])[2:]


def test_a_file_for_another_run_is_refused_and_kept(tmp_path: Path) -> None:
    with pytest.raises(_Killed):
        _run("sasrec", tmp_path, kill_in_epoch=1)
    (saved,) = tmp_path.iterdir()
    before = saved.read_bytes()
    other = TrainSpec(epochs=4, batch_size=32, patience=10, eval_batch_size=64)
    with pytest.raises(
        ModelError, match=r"toy-L8-sasrec-seed5\.pt: written for another run \('train'"
    ):
        evaluate_loo(
            _con(),
            "toy",
            ModelSpec(name="sasrec", config=TINY["sasrec"]),
            other,
            seed=5,
            resume_dir=tmp_path,
        )
    assert saved.read_bytes() == before


def test_a_damaged_file_is_refused_with_its_name(tmp_path: Path) -> None:
    path = tmp_path / "toy-L8-sasrec-seed5.pt"
    path.write_bytes(b"not a checkpoint")
    with pytest.raises(ModelError, match=r"toy-L8-sasrec-seed5\.pt: not a streamsim resume file"):
        _run("sasrec", tmp_path)
    assert path.read_bytes() == b"not a checkpoint"


def test_a_file_missing_an_entry_is_refused_with_its_name_and_the_entry(tmp_path: Path) -> None:
    with pytest.raises(_Killed):
        _run("sasrec", tmp_path, kill_in_epoch=1)
    (saved,) = tmp_path.iterdir()
    payload = torch.load(saved, weights_only=True)
    del payload["optimizer"]
    torch.save(payload, saved)
    before = saved.read_bytes()
    with pytest.raises(ModelError, match=r"toy-L8-sasrec-seed5\.pt: .* lacks 'optimizer'"):
        _run("sasrec", tmp_path)
    with pytest.raises(ModelError, match=r"lacks 'optimizer'"):
        resume_state.peek(saved)
    assert saved.read_bytes() == before


def test_a_finished_run_is_not_trained_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Killed after training but before the test metrics: the rerun only evaluates."""
    import streamsim.leave_one_out as evaluate_module

    straight = _run("sasrec", None)

    def killed_metrics(*args: Any, **kwargs: Any) -> Any:
        raise _Killed

    with monkeypatch.context() as patch:
        patch.setattr(evaluate_module, "full_ranking_metrics", killed_metrics)
        with pytest.raises(_Killed):
            _run("sasrec", tmp_path)
    resumed = _run("sasrec", tmp_path, kill_in_epoch=0)  # any training step would raise
    assert resumed["test"] == straight["test"]
    assert _without_timing(resumed["history"]) == _without_timing(straight["history"])


def _train(root: Path, kill_in_epoch: int | None = None):  # type: ignore[no-untyped-def]
    from streamsim.pipeline import prepare
    from tests.support.tiny_scenario import setup, tiny_scenario

    def progress(event: ProgressEvent) -> None:
        if isinstance(event, TrainStep) and event.epoch == kill_in_epoch:
            raise _Killed

    ws, con = setup(root)
    sc = tiny_scenario("sasrec", TINY["sasrec"])
    sc = dataclasses.replace(sc, train=dataclasses.replace(sc.train, epochs=3, patience=5))
    return prepare(con, ws, sc, progress=progress).checkpoint  # type: ignore[arg-type]


def test_scenario_training_resumes_to_the_same_checkpoint(tmp_path: Path) -> None:
    """`streamsim train` / `replay` pretraining: killed in epoch 1, rerun, same weights."""
    straight = _train(tmp_path / "a")
    with pytest.raises(_Killed):
        _train(tmp_path / "b", kill_in_epoch=1)
    (pending,) = (tmp_path / "b" / "checkpoints").glob("*.resume.pt")
    resumed = _train(tmp_path / "b")
    assert resumed.hash == straight.hash
    assert not pending.exists()
    a, b = (
        load_file(straight.path / "model.safetensors"),
        load_file(resumed.path / "model.safetensors"),
    )
    assert a.keys() == b.keys()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert _without_timing(resumed.manifest["history"]) == _without_timing(
        straight.manifest["history"]
    )


def test_a_resume_file_covers_the_models_own_code_only() -> None:
    """The resume key hashes the model's module and the `models` modules it imports."""
    files = {
        name: {p.name for p in model_source_files(models.get(name).cls)}
        for name in ("mamba4rec", "bert4rec", "sasrec")
    }
    assert {"mamba4rec.py", "selective_scan.py", "base.py"} <= files["mamba4rec"]
    assert "sasrec.py" not in files["mamba4rec"]
    assert "sasrec.py" in files["bert4rec"]  # BERT4Rec reuses SASRec's blocks
    assert "bert4rec.py" not in files["sasrec"]
