"""`streamsim.train.build_model`: the run seed owns every model's initialisation."""

from __future__ import annotations

import pytest
import torch

import models
from streamsim.scenario import ModelSpec
from streamsim.train import build_model

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
