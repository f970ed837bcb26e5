"""Caser, BERT4Rec, TTT4Rec, the TTT-Linear recommender and TiM4Rec at tiny sizes.

Generic checks (shape, finite, empty histories, padding invariance, loss + backward) plus the
model-specific ones: BERT4Rec's mask token at inference, TTT4Rec's top-K entropy loss, TiM4Rec's
use of time gaps.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import pytest
import torch

import models
from models.base import Recommender, SeqBatch
from streamsim.rng import seeded
from tests.support.tiny import random_seq_batch

N_ITEMS, SEQ = 25, 7
LENGTHS = (7, 4, 1, 0)
DAY = 86_400
TINY: dict[str, dict[str, Any]] = {
    "caser": {"embedding_size": 8, "n_v": 2, "n_h": 3},
    "bert4rec": {"hidden_size": 8, "inner_size": 16},
    "ttt4rec": {"hidden_size": 16, "intermediate_size": 32, "num_heads": 2, "mini_batch_size": 3},
    "ttt_linear_rec": {"hidden_size": 8, "num_heads": 2, "mini_batch_size": 3},
    "tim4rec": {"d_model": 16, "d_state": 8, "headdim": 8, "chunk": 4},
}
NAMES = [n for n in TINY if n in {e.name for e in models.list_models()}]


pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is much faster


def _build(name: str, **extra: Any) -> Recommender:
    with seeded(0):
        model = models.create(name, n_items=N_ITEMS, config={"max_len": SEQ, **TINY[name], **extra})
    return model.eval()


def _batch(seed: int = 0, lengths: tuple[int, ...] = LENGTHS) -> SeqBatch:
    return random_seq_batch(N_ITEMS, SEQ, lengths, seed=seed)


def _shifted_targets(batch: SeqBatch) -> torch.Tensor:
    assert batch.targets is not None
    return batch.targets % N_ITEMS + 1


def _scores(model: Recommender, batch: SeqBatch) -> torch.Tensor:
    with torch.no_grad():
        return model.score(batch.without_targets())


@pytest.mark.parametrize("name", NAMES)
def test_scores_shape_finite_and_empty(name: str) -> None:
    model = _build(name)
    scores = _scores(model, _batch())
    assert scores.shape == (len(LENGTHS), N_ITEMS + 1)
    assert torch.isneginf(scores[:, 0]).all()
    assert torch.isfinite(scores[:, 1:]).all()
    empty = _scores(model, _batch(lengths=(0, 0)))
    assert torch.isfinite(empty[:, 1:]).all()
    torch.testing.assert_close(empty[0], empty[1])


@pytest.mark.parametrize("name", NAMES)
def test_padding_beyond_lengths_is_ignored(name: str) -> None:
    model = _build(name)
    batch = _batch()
    valid = torch.arange(SEQ)[None, :] < batch.lengths[:, None]
    g = torch.Generator().manual_seed(5)
    poisoned = dataclasses.replace(
        batch,
        items=torch.where(valid, batch.items, torch.randint(1, N_ITEMS + 1, (4, SEQ), generator=g)),
        times=torch.where(valid, batch.times, torch.randint(1, 2**31, (4, SEQ), generator=g)),
    )
    torch.testing.assert_close(_scores(model, poisoned), _scores(model, batch))


@pytest.mark.parametrize("name", NAMES)
def test_history_changes_scores(name: str) -> None:
    """A different last item changes the scores (the models do read the history)."""
    model = _build(name)
    batch = _batch()
    items = batch.items.clone()
    items[0, 6] = items[0, 6] % N_ITEMS + 1
    other = dataclasses.replace(batch, items=items)
    assert not torch.allclose(_scores(model, other)[0], _scores(model, batch)[0])


@pytest.mark.parametrize("name", NAMES)
def test_loss_finite_and_backward(name: str) -> None:
    model = _build(name).train()
    loss = model.loss(_batch())
    assert loss.ndim == 0
    assert torch.isfinite(loss)
    loss.backward()
    grads = [p.grad for p in model.parameters() if p.grad is not None]
    assert grads
    assert all(torch.isfinite(g).all() for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0


def test_bert4rec_inference_puts_mask_at_request_position() -> None:
    model = _build("bert4rec")
    batch = _batch()
    seqs, at = model.inference_sequences(batch)  # type: ignore[operator]
    mask = N_ITEMS + 1
    # lengths 7 (full window of 7: shift left by one), 4, 1, 0
    assert at.tolist() == [6, 4, 1, 0]
    assert torch.equal(seqs[0], torch.cat([batch.items[0, 1:7], torch.tensor([mask])]))
    assert torch.equal(seqs[1, :5], torch.cat([batch.items[1, :4], torch.tensor([mask])]))
    assert seqs[1, 5:].eq(0).all()
    assert seqs[3].tolist() == [mask] + [0] * (SEQ - 1)
    assert (seqs == mask).sum() == batch.size


def test_bert4rec_scores_read_the_mask_token_not_the_target() -> None:
    model = _build("bert4rec")
    batch = _batch()
    before = _scores(model, batch)
    other_targets = dataclasses.replace(batch, targets=_shifted_targets(batch))
    with torch.no_grad():
        torch.testing.assert_close(model.score(other_targets), before, rtol=0, atol=0)
        model.get_parameter("item_emb.weight")[N_ITEMS + 1] += 1.0
    assert not torch.allclose(_scores(model, batch), before)


def test_bert4rec_training_masks_always_include_the_last_position() -> None:
    model = _build("bert4rec", mask_ratio=0.5, ft_ratio=0.0)
    lengths = torch.tensor([7, 3, 1, 5])
    masks = model.training_masks(lengths)  # type: ignore[operator]
    assert masks[torch.arange(4), lengths - 1].all()
    assert not (masks & (torch.arange(SEQ)[None, :] >= lengths[:, None])).any()
    assert masks.sum() > 4  # some earlier positions too at ratio 0.5
    fresh = _build("bert4rec", mask_ratio=0.5, ft_ratio=0.0)
    assert torch.equal(fresh.training_masks(lengths), masks)  # type: ignore[operator]
    only_last = _build("bert4rec", ft_ratio=1.0).training_masks(lengths)  # type: ignore[operator]
    assert only_last.sum(1).tolist() == [1, 1, 1, 1]


def test_topk_entropy_is_on_the_renormalised_top_k() -> None:
    from models.ttt4rec import topk_entropy

    logits = torch.tensor([[-torch.inf, 3.0, 2.0, 0.0, -1.0], [-torch.inf, 1.0, 1.0, 1.0, 1.0]])
    p = torch.softmax(logits, -1)
    top = p.topk(2, -1).values
    top = top / top.sum(-1, keepdim=True)
    expected = -(top * top.log()).sum(-1)
    torch.testing.assert_close(topk_entropy(logits, 2), expected)
    torch.testing.assert_close(topk_entropy(logits, 2)[1], torch.log(torch.tensor(2.0)))
    full = -(p[:, 1:] * p[:, 1:].log()).sum(-1)
    assert not torch.allclose(topk_entropy(logits, 2), full)


@pytest.mark.parametrize("variant", [{}, {"inner": "linear"}, {"backbone": "mamba"}])
def test_ttt4rec_test_time_loss(variant: dict[str, Any]) -> None:
    from models.ttt4rec import topk_entropy

    model = _build("ttt4rec", **variant)
    assert model.has_test_time_loss
    batch = _batch()
    loss = model.test_time_loss(batch)
    with torch.no_grad():
        expected = topk_entropy(model.score(batch.without_targets()), 10).mean()
    torch.testing.assert_close(loss.detach(), expected)
    other = dataclasses.replace(batch, targets=_shifted_targets(batch))
    torch.testing.assert_close(model.test_time_loss(other).detach(), expected)  # inputs only
    loss.backward()
    params = model.test_time_parameters()  # type: ignore[operator]
    assert params
    assert all(p.grad is not None and torch.isfinite(p.grad).all() for p in params)


def test_adapter_updates_only_the_test_time_parameters() -> None:
    """Continual TTA on TTT4Rec moves the q/k/v/o projections (ETA-Rec) and nothing else."""
    from streamsim.adapt import Adapter, PolicySpec

    model = _build("ttt4rec")
    before = {k: v.clone() for k, v in model.state_dict().items()}
    adapter = Adapter(model, PolicySpec(name="c", tta="continual", tta_lr=0.5))
    with adapter.adapted(_batch().without_targets()):
        pass
    adapted = {id(p) for p in model.test_time_parameters()}
    names = {n for n, p in model.named_parameters() if id(p) in adapted}
    assert names
    assert all(n.rsplit(".", 2)[-2] in {"q_proj", "k_proj", "v_proj", "o_proj"} for n in names)
    changed = {k for k, v in model.state_dict().items() if not torch.equal(v, before[k])}
    assert changed
    assert changed <= names
    assert adapter.param_distance() > 0


def test_ttt_linear_rec_online_and_mini_batch_differ() -> None:
    batch = _batch()
    online = _scores(_build("ttt_linear_rec", mini_batch_size=1), batch)
    mini = _scores(_build("ttt_linear_rec", mini_batch_size=10), batch)
    assert torch.isfinite(online[:, 1:]).all()
    torch.testing.assert_close(online[2], mini[2])  # one event: one gradient at W0 either way
    assert not torch.allclose(online[0], mini[0])


def test_tim4rec_gaps_are_causally_standardised() -> None:
    from models.tim4rec import standardised_gaps

    times = torch.tensor([[100, 160, 160, 1000, 5000, 0], [7, 9, 0, 0, 0, 0]])
    lengths = torch.tensor([5, 2])
    g = standardised_gaps(times, lengths, 1e-5, torch.nn.Identity())
    raw = torch.log1p(torch.tensor([0.0, 60.0, 0.0, 840.0, 4000.0], dtype=torch.float64))
    for t in range(5):
        prefix = raw[: t + 1]
        var = prefix.var(unbiased=False)
        expected = (raw[t] - prefix.mean()) / torch.sqrt(var + 1e-5)
        torch.testing.assert_close(g[0, t], expected)
    assert g[0, 5] == 0
    assert g[1, 2:].eq(0).all()
    later = times.clone()
    later[0, 4] = 9_000_000  # a later gap never changes earlier values
    torch.testing.assert_close(
        standardised_gaps(later, lengths, 1e-5, torch.nn.Identity())[0, :4], g[0, :4]
    )


def test_tim4rec_reads_time_gaps_not_absolute_times() -> None:
    model = _build("tim4rec")
    with torch.no_grad():  # at init dt_raw ≈ 0 hides the time path (Δ = softplus(dt_raw·τ + b))
        for name, param in model.named_parameters():
            if "in_proj" in name or "time_" in name:
                param.mul_(50.0)
    batch = _batch()
    base = _scores(model, batch)
    valid = torch.arange(SEQ)[None, :] < batch.lengths[:, None]
    shifted = dataclasses.replace(batch, times=torch.where(valid, batch.times + 12_345, 0))
    torch.testing.assert_close(_scores(model, shifted), base)
    times = batch.times.clone()
    times[0, 3:7] += 40 * DAY  # one long gap inside the history
    assert not torch.allclose(_scores(model, dataclasses.replace(batch, times=times))[0], base[0])


NO_DROPOUT: dict[str, dict[str, Any]] = {
    "caser": {"dropout": 0.0},
    "bert4rec": {"hidden_dropout": 0.0, "attn_dropout": 0.0, "ft_ratio": 1.0},
    "ttt4rec": {"dropout": 0.0},
    "ttt_linear_rec": {"dropout": 0.0},
    "tim4rec": {"dropout": 0.0, "time_dropout": 0.0},
}


@pytest.mark.parametrize("name", NAMES)
def test_training_fits_a_small_batch(name: str) -> None:
    """A few Adam steps on one batch lower the training loss a lot (the model can learn)."""
    model = _build(name, **NO_DROPOUT[name]).train()
    batch = _batch(3, lengths=(7, 6, 5, 4, 3, 2))
    opt = torch.optim.Adam(model.parameters(), lr=1e-2)
    first = float(model.loss(batch).detach())
    for _ in range(20):
        opt.zero_grad()
        model.loss(batch).backward()
        opt.step()
    assert float(model.loss(batch).detach()) < 0.5 * first


@pytest.mark.parametrize(
    ("name", "config", "policy"),
    [
        ("bert4rec", (("hidden_size", 8), ("inner_size", 16), ("max_len", 8)), 0),
        ("ttt4rec", (("hidden_size", 8), ("intermediate_size", 16), ("max_len", 8)), 2),
    ],
)
def test_train_and_replay_on_toy_data(
    tmp_path: Path, name: str, config: tuple[tuple[str, Any], ...], policy: int
) -> None:
    """The pipeline trains the model and replays it (TTT4Rec with continual test-time steps)."""
    from streamsim.pipeline import prepare, replay_policy
    from tests.support.tiny_scenario import POLICIES, setup, tiny_scenario

    ws, con = setup(tmp_path)
    scenario = tiny_scenario(name, config)
    prepared = prepare(con, ws, scenario)  # type: ignore[arg-type]
    run_id = replay_policy(con, ws, scenario, POLICIES[policy], prepared)  # type: ignore[arg-type]
    assert run_id


@pytest.mark.parametrize("layers", [1, 2])
def test_tim4rec_step_matches_forward(layers: int) -> None:
    from models.tim4rec import TiM4Rec

    model = _build("tim4rec", num_layers=layers, d_conv=3).double()
    assert isinstance(model, TiM4Rec)
    batch = _batch(2).without_targets()
    rep, _ = model(batch)
    state = model.initial_state(batch.size, dtype=torch.float64)
    outs = []
    with torch.no_grad():
        for t in range(SEQ):
            out, state = model.step(batch.items[:, t], batch.times[:, t], state)
            outs.append(out)
    have = batch.lengths > 0
    stepped = torch.stack(outs, 1)[torch.arange(batch.size), (batch.lengths - 1).clamp(min=0)]
    torch.testing.assert_close(stepped[have], rep.detach()[have], rtol=1e-9, atol=1e-9)
    # continuing from forward's state: a history of 4 plus one event equals a history of 5
    short = dataclasses.replace(batch, lengths=torch.full((batch.size,), 4))
    longer = dataclasses.replace(batch, lengths=torch.full((batch.size,), 5))
    with torch.no_grad():
        _, st = model(short)
        out, _ = model.step(batch.items[:, 4], batch.times[:, 4], st)
        expected, _ = model(longer)
    torch.testing.assert_close(out, expected, rtol=1e-9, atol=1e-9)


@pytest.mark.parametrize("length", [1, 4, 7, 13])
@pytest.mark.parametrize("group", [1, 3, 5, 20])
def test_caser_stacked_horizontal_convs_equal_recbole_loop(length: int, group: int) -> None:
    """The fast path (heights stacked into zero-padded conv1d's) = the per-height conv2d loop:
    values and the gradients of the input and of every kernel and bias, float64."""
    from models.caser import horizontal_pool, horizontal_pool_ref

    g = torch.Generator().manual_seed(length * 31 + group)
    convs = [torch.nn.Conv2d(1, 3, (h, 5)).double() for h in range(1, length + 1)]
    for conv in convs:
        torch.nn.init.normal_(conv.weight, generator=g)
        assert conv.bias is not None
        torch.nn.init.normal_(conv.bias, generator=g)
    img = torch.randn(4, 1, length, 5, dtype=torch.float64, generator=g)
    img[1, :, : length // 2] = 0.0  # a padded (short) history
    weights = torch.randn(4, 3 * length, dtype=torch.float64, generator=g)
    grads = []
    for fn in (horizontal_pool_ref, lambda i, c: horizontal_pool(i, c, group=group)):
        x = img.clone().requires_grad_(True)
        out = fn(x, convs)
        params = [x] + [p for conv in convs for p in conv.parameters()]
        grads.append((out, torch.autograd.grad((out * weights).sum(), params)))
    (ref, ref_grads), (fast, fast_grads) = grads
    assert fast.shape == ref.shape == (4, 3 * length)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
    for got, want in zip(fast_grads, ref_grads, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)


def test_caser_scores_equal_through_either_horizontal_path(monkeypatch: pytest.MonkeyPatch) -> None:
    """The whole model (ragged and empty histories): the same scores through the oracle."""
    import models.caser as caser

    model = _build("caser").double()
    batch = _batch()
    fast = model.score(batch)
    monkeypatch.setattr(
        caser, "horizontal_pool", lambda img, convs: caser.horizontal_pool_ref(img, convs)
    )
    ref = model.score(batch)
    torch.testing.assert_close(fast, ref, rtol=1e-12, atol=1e-12)
