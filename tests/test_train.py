"""`streamsim.train`: the run seed owns every model's initialisation; training logs loss terms."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import models
from streamsim.train import ModelSpec, TrainSpec, _fit, build_model
from streamsim.training_examples import Examples

TRAINABLE = [e.name for e in models.list_models() if e.cls.trainable]


def _weights(
    name: str, seed: int, config: tuple[tuple[str, object], ...] = ()
) -> dict[str, torch.Tensor]:
    spec = ModelSpec(name=name, config=(("max_len", 8), *config))
    return build_model(spec, n_items=40, seed=seed).state_dict()


@pytest.mark.parametrize("name", TRAINABLE)
def test_seed_changes_the_initial_weights_and_repeats(name: str) -> None:
    a, b, again = _weights(name, 0), _weights(name, 1), _weights(name, 0)
    assert all(torch.equal(a[k], again[k]) for k in a)
    assert any(not torch.equal(a[k], b[k]) for k in a)


def test_explicit_seed_in_the_model_config_wins() -> None:
    a = _weights("t2arec", 0, (("seed", 7),))
    b = _weights("t2arec", 1, (("seed", 7),))
    assert all(torch.equal(a[k], b[k]) for k in a)


def _examples(seed: int, n: int, n_items: int = 40, max_len: int = 8) -> Examples:
    rng = np.random.default_rng(seed)
    lengths = rng.integers(1, max_len + 1, n)
    valid = np.arange(max_len)[None, :] < lengths[:, None]
    items = rng.integers(1, n_items + 1, (n, max_len)) * valid
    times = (1_600_000_000 + np.cumsum(rng.integers(0, 86_400, (n, max_len)), axis=1)) * valid
    request = times.max(axis=1) + 60
    targets = rng.integers(1, n_items + 1, n)
    return Examples(items, times, lengths, request, targets, np.ones(n_items + 1, dtype=bool))


@pytest.mark.parametrize(
    ("config", "terms"),
    [((), ["rec", "time", "state"]), ((("mu_time_train", 0), ("mu_state_train", 0)), [])],
)
def test_fit_logs_the_epoch_mean_of_each_loss_term(
    config: tuple[tuple[str, object], ...], terms: list[str]
) -> None:
    spec = ModelSpec(name="t2arec", config=(("max_len", 8), ("d_model", 16), *config))
    model = build_model(spec, n_items=40, seed=0)
    train = TrainSpec(epochs=2, batch_size=16, patience=5, eval_batch_size=64)
    history = _fit(model, _examples(0, 48), _examples(1, 16), train, seed=0, progress=None)
    for record in history:
        logged = sorted(k[len("train.") :] for k in record if k.startswith("train."))
        assert logged == sorted(terms)  # one-term losses log only train_loss
        if terms:
            total = sum(record[f"train.{k}"] for k in terms)
            assert total == pytest.approx(record["train_loss"], rel=1e-6)  # float32 sums
            assert record["train.state"] > 0
            assert record["train.time"] > 0
