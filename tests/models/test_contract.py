"""The contract every registered model keeps (parametrized over `models.list_models()`).

Tiny sizes (V = 31, L = 8, B = 4) so the whole file runs in seconds. Ids read "<model>-<check>".
"""

from __future__ import annotations

import dataclasses
import io
import pickle
from collections.abc import Callable
from typing import Any

import pytest
import torch

import models
from models.base import Recommender, SeqBatch, sum_terms
from streamsim.rng import seeded
from tests.support.tiny import NAMES, build_tiny, random_seq_batch

N_ITEMS, SEQ = 30, 8
LENGTHS = (8, 5, 1, 0)
DAY = 86_400


def _build(name: str, seed: int = 0) -> Recommender:
    return build_tiny(name, n_items=N_ITEMS, max_len=SEQ, seed=seed)


def _batch(seed: int = 0, lengths: tuple[int, ...] = LENGTHS) -> SeqBatch:
    return random_seq_batch(N_ITEMS, SEQ, lengths, seed=seed)


def _prepared(name: str, seed: int = 0) -> Recommender:
    """A model, with some observed events when it is a count model (so scores are not flat)."""
    model = _build(name, seed)
    if not model.trainable:
        for s in range(3):
            b = _batch(100 + s)
            model.observe(dataclasses.replace(b, request_times=b.request_times - 10 * DAY))
    return model


def _scores(model: Recommender, batch: SeqBatch) -> torch.Tensor:
    with torch.no_grad():
        return model.score(batch.without_targets())


def _ids(check: str) -> Callable[[str], str]:
    return lambda name: f"{name}-{check}"


@pytest.mark.parametrize("name", NAMES, ids=_ids("shapes"))
def test_shapes_and_finite(name: str) -> None:
    model = _prepared(name)
    scores = _scores(model, _batch())
    assert scores.shape == (len(LENGTHS), N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()  # including the empty history (length 0)
    rep, _ = model(_batch().without_targets())
    assert rep.shape[0] == len(LENGTHS)
    assert torch.isfinite(rep[rep != float("-inf")]).all()
    assert model.max_len == SEQ


@pytest.mark.parametrize("name", NAMES, ids=_ids("all-empty"))
def test_all_empty_histories(name: str) -> None:
    model = _prepared(name)
    scores = _scores(model, _batch(lengths=(0, 0)))
    assert scores.shape == (2, N_ITEMS + 1)
    assert torch.isfinite(scores[:, 1:]).all()
    assert torch.equal(scores[0], scores[1])  # two empty histories look alike


@pytest.mark.parametrize("name", NAMES, ids=_ids("deterministic"))
def test_same_seed_same_scores(name: str) -> None:
    a, b = _scores(_prepared(name, 3), _batch()), _scores(_prepared(name, 3), _batch())
    assert torch.equal(a, b)
    model = _prepared(name, 3)
    assert torch.equal(_scores(model, _batch()), _scores(model, _batch()))  # eval: no dropout


@pytest.mark.parametrize("name", NAMES, ids=_ids("state-dict"))
def test_state_dict_round_trip(name: str) -> None:
    model = _prepared(name, 1)
    buffer = io.BytesIO()
    torch.save(model.state_dict(), buffer)
    buffer.seek(0)
    other = _build(name, 2)
    other.load_state_dict(torch.load(buffer, weights_only=True))
    assert torch.equal(_scores(model, _batch()), _scores(other, _batch()))


@pytest.mark.parametrize("name", NAMES, ids=_ids("pickle"))
def test_pickle_round_trip(name: str) -> None:
    """The replay pickles count models to resume; the copy scores and keeps learning alike."""
    model = _prepared(name, 1)
    other = pickle.loads(pickle.dumps(model))
    assert torch.equal(_scores(model, _batch()), _scores(other, _batch()))
    if not model.trainable:
        for m in (model, other):
            m.observe(_batch(7))
        after = _scores(model, _batch())
        assert torch.equal(after, _scores(other, _batch()))
        assert not torch.equal(after, _scores(_prepared(name, 1), _batch()))


@pytest.mark.parametrize("name", NAMES, ids=_ids("no-peeking"))
def test_padding_beyond_lengths_is_ignored(name: str) -> None:
    model = _prepared(name)
    batch = _batch()
    valid = torch.arange(SEQ)[None, :] < batch.lengths[:, None]
    g = torch.Generator().manual_seed(9)
    junk_items = torch.randint(1, N_ITEMS + 1, batch.items.shape, generator=g)
    junk_times = torch.randint(1, 2_000_000_000, batch.times.shape, generator=g)
    poisoned = dataclasses.replace(
        batch,
        items=torch.where(valid, batch.items, junk_items),
        times=torch.where(valid, batch.times, junk_times),
    )
    torch.testing.assert_close(_scores(model, poisoned), _scores(model, batch))


def _recurrent(name: str) -> Recommender:
    """The tiny model in float64; the test is skipped when the model has no step()."""
    model = _build(name).double()
    if not hasattr(model, "step"):
        pytest.skip(f"{name} is not recurrent (no step)")
    return model


@pytest.mark.parametrize("name", NAMES, ids=_ids("step"))
def test_step_matches_forward(name: str) -> None:
    model = _recurrent(name)
    batch = _batch(lengths=(8, 5, 3, 1))
    rep, _ = model(batch.without_targets())
    state = model.initial_state(batch.size, dtype=torch.float64)  # type: ignore[operator]
    outs = []
    with torch.no_grad():
        for t in range(SEQ):
            out, state = model.step(batch.items[:, t], batch.times[:, t], state)  # type: ignore[operator]
            outs.append(out)
    stepped = torch.stack(outs, dim=1)[torch.arange(batch.size), batch.lengths - 1]
    torch.testing.assert_close(stepped, rep.detach(), rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES, ids=_ids("step-after-forward"))
def test_step_continues_forward_state(name: str) -> None:
    """forward(history of n) → state; step(event n+1) equals forward(history of n+1)."""
    model = _recurrent(name)
    full = _batch(lengths=(7, 5, 1, 0))
    longer = dataclasses.replace(full, lengths=full.lengths + 1)
    g = torch.Generator().manual_seed(4)
    rows = torch.arange(full.size)
    items = full.items.clone()
    times = full.times.clone()
    items[rows, full.lengths] = torch.randint(1, N_ITEMS + 1, (full.size,), generator=g)
    times[rows, full.lengths] = full.request_times
    longer = dataclasses.replace(longer, items=items, times=times)
    with torch.no_grad():
        _, state = model(full.without_targets())
        out, _ = model.step(items[rows, full.lengths], times[rows, full.lengths], state)  # type: ignore[operator]
        expected, _ = model(longer.without_targets())
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("name", NAMES, ids=_ids("loss"))
def test_loss_finite_and_backward(name: str) -> None:
    model = _build(name).train()
    if not model.trainable:
        assert not any(p.requires_grad for p in model.parameters())
        pytest.skip(f"{name} is a count model (trained by observe)")
    loss = model.loss(_batch())
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.requires_grad]
    assert any(g is not None and g.abs().sum() > 0 for g in grads)
    assert all(g is None or torch.isfinite(g).all() for g in grads)


@pytest.mark.parametrize("name", NAMES, ids=_ids("loss_terms"))
def test_loss_terms_sum_to_the_loss_bit_for_bit(name: str) -> None:
    """Training optimises sum_terms(loss_terms(b)); it must be `loss(b)` exactly (same masks)."""
    model, twin = _build(name).train(), _build(name).train()  # twins: owned mask RNGs too
    if not model.trainable:
        pytest.skip(f"{name} is a count model (trained by observe)")
    with seeded(3):
        terms = model.loss_terms(_batch())
    with seeded(3):
        loss = twin.loss(_batch())
    assert list(terms)[0] == "rec"
    assert all(t.ndim == 0 for t in terms.values())
    assert torch.equal(sum_terms(terms), loss)


@pytest.mark.parametrize("name", NAMES, ids=_ids("observe"))
def test_observe_changes_count_models_only_through_targets(name: str) -> None:
    model = _build(name)
    before = _scores(model, _batch())
    model.observe(_batch(5))  # the hook exists for every model; count models learn from it
    after = _scores(model, _batch())
    if model.trainable:
        assert torch.equal(before, after)
    else:
        assert not torch.equal(before, after)


@pytest.mark.parametrize("name", NAMES, ids=_ids("config"))
def test_make_config_rejects_unknown_keys(name: str) -> None:
    config: Any = models.make_config(name)
    assert "max_len" in {f.name for f in dataclasses.fields(config)}
    assert config.max_len >= 1
    with pytest.raises(ValueError, match="unknown config keys"):
        models.make_config(name, {"no_such_key": 1})
    with pytest.raises(ValueError, match="must be int"):
        models.make_config(name, {"max_len": "long"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.max_len = 3
