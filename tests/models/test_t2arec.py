"""T2ARec: step = forward, padding, the two alignment losses, test-time step, options."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import pytest
import torch

import models
from models.base import SeqBatch
from models.t2arec import T2ARec, T2ARecConfig, state_alignment_loss, time_alignment_loss
from streamsim.errors import ModelError
from tests.support.tiny_t2arec import DAY, TINY, random_batch, tiny_t2arec

# ---- forward / step / padding ----------------------------------------------------------------


@pytest.mark.parametrize("block", ["literal", "mamba2_full"])
def test_step_iterated_equals_forward(block: str) -> None:
    model = tiny_t2arec(block=block)
    batch = random_batch(lengths=(7, 7, 7))
    state = model.initial_state(3, dtype=torch.float64)
    for k in range(1, 8):
        out, state = model.step(batch.items[:, k - 1], batch.times[:, k - 1], state)
        prefix = dataclasses.replace(batch, lengths=torch.full((3,), k))
        o_ref, st_ref = model(prefix)
        torch.testing.assert_close(out, o_ref, rtol=1e-10, atol=1e-10)
        for got, want in zip(state, st_ref):
            torch.testing.assert_close(got, want, rtol=1e-10, atol=1e-10)


def test_padded_rows_equal_unpadded_rows() -> None:
    model = tiny_t2arec()
    batch = random_batch(lengths=(7, 4, 1, 0))
    o, state = model(batch)
    for b, n in enumerate(batch.lengths.tolist()):
        alone = SeqBatch(
            batch.items[b : b + 1, :n],
            batch.times[b : b + 1, :n],
            batch.lengths[b : b + 1],
            batch.request_times[b : b + 1],
        )
        o_b, st_b = model(alone)
        torch.testing.assert_close(o[b : b + 1], o_b, rtol=1e-10, atol=1e-10)
        torch.testing.assert_close(state.ssm_state[b : b + 1], st_b.ssm_state)


def test_empty_histories_give_finite_scores_and_padding_is_minus_inf() -> None:
    model = tiny_t2arec()
    scores = model.score(random_batch(lengths=(3, 0)))
    assert scores.shape == (2, 13)
    assert torch.all(scores[:, 0] == float("-inf"))
    assert torch.isfinite(scores[:, 1:]).all()
    empty = SeqBatch(*(torch.zeros(2, 0, dtype=torch.long),) * 2, torch.zeros(2, dtype=torch.long),
                     torch.ones(2, dtype=torch.long))  # fmt: skip
    assert torch.isfinite(model.score(empty)[:, 1:]).all()
    assert torch.isfinite(model.test_time_loss(empty))


# ---- L_time ---------------------------------------------------------------------------------


def _naive_time_loss(dt, dt_next, times, lengths, request, scale, block) -> torch.Tensor:  # type: ignore[no-untyped-def]
    """Loop version of Eq. 14 with end-aligned blocks over positions 2..n+1."""
    total, count = torch.zeros((), dtype=dt.dtype), 0
    for b, n in enumerate(lengths.tolist()):
        t = times[b, :n].tolist() + [int(request[b])]
        d = [dt[b, i, 0] for i in range(n)] + [dt_next[b, 0]]
        gaps = [0] + [t[i] - t[i - 1] for i in range(1, n + 1)]  # T_1..T_{n+1}
        for i in range(1, n + 1):  # 0-based index i is position i+1
            for j in range(i + 1, n + 1):
                if (n - i) // block != (n - j) // block:  # block counted from the end
                    continue
                prod = (d[i] - d[j]) * (gaps[i] - gaps[j]) / scale
                total = total + torch.relu(1 - prod)
                count += 1
    return total / max(count, 1)


@pytest.mark.parametrize("block", [2, 3, 4, 50])
def test_time_loss_matches_naive_pairs(block: int) -> None:
    batch = random_batch(seed=3, lengths=(7, 5, 4, 2, 1, 0))
    g = torch.Generator().manual_seed(1)
    dt = torch.rand(6, 7, 1, generator=g, dtype=torch.float64) * 3
    dt_next = torch.rand(6, 1, generator=g, dtype=torch.float64) * 3
    got = time_alignment_loss(
        dt, dt_next, batch.times, batch.lengths, batch.request_times, scale=DAY, block=block
    )
    want = _naive_time_loss(
        dt, dt_next, batch.times, batch.lengths, batch.request_times, DAY, block
    )
    torch.testing.assert_close(got, want)
    assert 0 < float(got) != 1.0  # the hinge is active and not a constant


def test_time_loss_equal_intervals_give_zero_gradient() -> None:
    times = torch.tensor([[100, 200, 300, 400]])
    # fixed values (not the global RNG): with them the control's hinges are active,
    # |Δ_i − Δ_j|·|T_i − T_j|/λ < 1 for every pair
    dt = torch.tensor([[[0.31], [0.52], [0.44], [0.27]]], dtype=torch.float64, requires_grad=True)
    dt_next = torch.tensor([[0.38]], dtype=torch.float64, requires_grad=True)
    args = (times, torch.tensor([4]))
    loss = time_alignment_loss(dt, dt_next, *args, torch.tensor([500]), scale=100.0, block=50)
    loss.backward()
    assert float(loss.detach()) == 1.0
    assert torch.all(dt.grad == 0)
    assert torch.all(dt_next.grad == 0)
    dt.grad = dt_next.grad = None  # control: an unequal request gap moves the gradient
    loss = time_alignment_loss(dt, dt_next, *args, torch.tensor([900]), scale=100.0, block=50)
    loss.backward()
    assert float(dt_next.grad.abs().sum()) > 0  # type: ignore[union-attr]


@pytest.mark.parametrize("n", [3, 4, 8])
def test_request_interval_is_always_paired(n: int) -> None:
    """With b = 4 and n + 1 positions, Δ_{n+1} shares a block with the latest gaps (end-aligned)."""
    times = torch.arange(1, n + 1)[None, :] * 10 * torch.arange(1, n + 1)[None, :]  # growing gaps
    dt = torch.rand(1, n, 1, dtype=torch.float64)
    dt_next = torch.rand(1, 1, dtype=torch.float64, requires_grad=True)
    request = times[:, -1] + 1000
    loss = time_alignment_loss(dt, dt_next, times, torch.tensor([n]), request, scale=1e6, block=4)
    loss.backward()  # scale 1e6 keeps every hinge active, so a pair means a gradient
    assert float(dt_next.grad.abs().sum()) > 0  # type: ignore[union-attr]


def test_time_loss_without_valid_pairs_is_zero_not_nan() -> None:
    dt = torch.rand(3, 5, 1, dtype=torch.float64, requires_grad=True)
    dt_next = torch.rand(3, 1, dtype=torch.float64, requires_grad=True)
    times = torch.zeros(3, 5, dtype=torch.long)
    times[1, 0] = 10
    lengths = torch.tensor([0, 1, 0])  # at most one valid position per row
    loss = time_alignment_loss(dt, dt_next, times, lengths, torch.tensor([5, 20, 7]), scale=1.0,
                               block=4)  # fmt: skip
    loss.backward()
    assert float(loss.detach()) == 0.0
    assert torch.isfinite(dt.grad).all()
    assert torch.isfinite(dt_next.grad).all()


def test_drop_tied_pairs_removes_ties_from_the_count() -> None:
    times = torch.tensor([[0, 10, 20, 40]])  # gaps T_2 = T_3 = 10, T_4 = 20, T_5 = 60
    dt, dt_next = torch.full((1, 4, 1), 0.5, dtype=torch.float64), torch.tensor([[0.1]]).double()
    args = (times, torch.tensor([4]), torch.tensor([100]))
    keep = time_alignment_loss(dt, dt_next, *args, scale=1e9, block=50)
    drop = time_alignment_loss(dt, dt_next, *args, scale=1e9, block=50, drop_ties=True)
    # 4 valid positions -> 6 pairs, one tie (hinge exactly 1) that drop_ties leaves out
    torch.testing.assert_close(keep * 6, drop * 5 + 1)


# ---- L_state --------------------------------------------------------------------------------


def test_state_loss_matches_hand_computation() -> None:
    g = torch.Generator().manual_seed(0)
    h = torch.randn(1, 1, 3, 2, generator=g, dtype=torch.float64)
    x_n, x_next = torch.randn(2, 1, 1, 3, generator=g, dtype=torch.float64)
    b_next, q = torch.randn(2, 1, 2, generator=g, dtype=torch.float64)
    dt, A, P = torch.tensor([[0.3]]).double(), torch.tensor([-2.0]).double(), torch.tensor([0.7])
    loss = state_alignment_loss(h, x_n, dt, x_next, b_next, q, A, P.double(), torch.tensor([3]))
    d = 0.3
    fwd = math.exp(-2.0 * d) * h[0, 0] + d * torch.outer(x_next[0, 0], b_next[0])
    bwd = math.exp(0.7 * d) * fwd + d * torch.outer(x_n[0, 0], q[0])
    torch.testing.assert_close(loss, torch.linalg.norm(h[0, 0] - bwd) / d**2)
    theorem = state_alignment_loss(h, x_n, dt, x_next, b_next, q, A, None, torch.tensor([3]))
    bwd_t = 0.5 * fwd + d * torch.outer(x_n[0, 0], q[0])  # P̄ = −1/A
    torch.testing.assert_close(theorem, torch.linalg.norm(h[0, 0] - bwd_t) / d**2)


@pytest.mark.parametrize("gap", [0, 10 * 365 * DAY])
def test_losses_finite_for_extreme_request_gaps(gap: int) -> None:
    model = tiny_t2arec()
    batch = random_batch(lengths=(7, 3, 1))
    batch = dataclasses.replace(batch, request_times=batch.times.max(dim=1).values + gap)
    l_time, l_state, delta = model.alignment_losses(batch)
    (l_time + l_state).backward()
    assert torch.isfinite(l_time)
    assert torch.isfinite(l_state)
    assert torch.isfinite(delta).all()
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)


# ---- gradients ------------------------------------------------------------------------------


class _Aligner(torch.nn.Module):
    """Wraps a model so that `functional_call` can swap its parameters for gradcheck inputs."""

    def __init__(self, model: T2ARec) -> None:
        super().__init__()
        self.m = model

    def forward(self, batch: SeqBatch) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        return self.m.alignment_losses(batch)


LIVE = {"state_delta": "live", "state_target": "live"}  # detaching changes the gradient on purpose


@pytest.mark.parametrize(
    ("which", "state_loss"),
    [("time", "dilution"), ("state", "dilution"), ("state", "relative"), ("state", "triangle")],
)
def test_alignment_losses_gradcheck_on_tiny_model(which: str, state_loss: str) -> None:
    model = tiny_t2arec(
        d_model=4, d_state=2, max_len=4, time_block=3, state_loss=state_loss, **LIVE
    )
    batch = random_batch(seed=5, lengths=(4, 3, 2), seq=4)
    names = ["in_proj.weight", "conv1d.weight", "dt_bias", "A_log", "P", "linear2.weight",
             "ffn_in.weight", "item_emb.weight"]  # fmt: skip
    params = dict(model.named_parameters())
    inputs = tuple(params[n].detach().clone().requires_grad_(True) for n in names)
    wrapper, index = _Aligner(model), 0 if which == "time" else 1

    def fn(*tensors: torch.Tensor) -> torch.Tensor:
        swapped = {f"m.{n}": t for n, t in zip(names, tensors)}
        return torch.func.functional_call(wrapper, swapped, (batch,))[index]

    value = fn(*inputs)
    assert torch.isfinite(value)
    assert float(value.detach()) > 0
    assert torch.autograd.gradcheck(fn, inputs, eps=1e-6, atol=1e-6, rtol=1e-4)


# ---- training and test-time losses ----------------------------------------------------------


def test_training_loss_is_ce_plus_weighted_alignment() -> None:
    model = tiny_t2arec(mu_time_train=0.3, mu_state_train=0.02)
    batch = random_batch(lengths=(7, 4, 2))
    ce = torch.nn.functional.cross_entropy(model.score(batch), batch.targets)
    l_time, l_state, _ = model.alignment_losses(batch)
    torch.testing.assert_close(model.loss(batch), ce + 0.3 * l_time + 0.02 * l_state)
    off = tiny_t2arec(mu_time_train=0.0, mu_state_train=0.0)
    torch.testing.assert_close(off.loss(batch), ce)


def test_test_time_loss_ignores_targets_and_uses_test_weights() -> None:
    model = tiny_t2arec()
    batch = random_batch(lengths=(7, 4, 2))
    base = model.test_time_loss(batch)
    other = dataclasses.replace(batch, targets=torch.tensor([5, 6, 7]))
    torch.testing.assert_close(model.test_time_loss(other), base, rtol=0, atol=0)
    torch.testing.assert_close(model.test_time_loss(batch.without_targets()), base, rtol=0, atol=0)
    l_time, l_state, _ = model.alignment_losses(batch)
    torch.testing.assert_close(base, 0.01 * l_time + 0.1 * l_state)


@torch.no_grad()
def test_alignment_losses_depend_on_their_inputs() -> None:
    """Neither loss is a constant: L_time moves with the timestamps, L_state with the items."""
    model = tiny_t2arec()
    batch = random_batch(lengths=(7, 5, 3))
    l_time, l_state, _ = model.alignment_losses(batch)
    later = dataclasses.replace(batch, request_times=batch.request_times + 40 * DAY)
    assert float(model.alignment_losses(later)[0]) != float(l_time)
    items = torch.where(batch.items > 0, batch.items % 12 + 1, 0)
    assert float(model.alignment_losses(dataclasses.replace(batch, items=items))[1]) != float(
        l_state
    )


@pytest.mark.parametrize("lr", [0.005, 0.05])
def test_one_sgd_step_lowers_the_test_time_loss(lr: float) -> None:
    model = tiny_t2arec(d_model=16, d_state=8, max_len=10).float()
    batch = random_batch(seed=2, lengths=(10, 8, 5, 3, 1), seq=10)
    before = model.test_time_loss(batch)
    optim = torch.optim.SGD(model.test_time_parameters(), lr=lr)
    optim.zero_grad()
    before.backward()
    optim.step()
    with torch.no_grad():
        after = model.test_time_loss(batch)
    assert float(after) < float(before.detach())


def test_freeze_embeddings_at_test_keeps_the_table_out() -> None:
    model = tiny_t2arec(freeze_embeddings_at_test=True)
    assert all(p is not model.item_emb.weight for p in model.test_time_parameters())
    model.test_time_loss(random_batch()).backward()
    assert model.item_emb.weight.grad is None
    assert model.in_proj.weight.grad is not None
    assert model.in_proj.weight.grad.abs().sum() > 0
    model.zero_grad(set_to_none=True)
    model.loss(random_batch()).backward()  # training still updates the table
    assert model.item_emb.weight.grad is not None


def test_detach_dilution_changes_the_gradient_not_the_value() -> None:
    batch = random_batch(lengths=(7, 4, 2))
    grads, values = [], []
    for detach in (False, True):
        model = tiny_t2arec(detach_dilution=detach, state_loss="dilution", **LIVE)
        l_state = model.alignment_losses(batch)[1]
        l_state.backward()
        values.append(l_state.detach())
        grads.append(model.dt_bias.grad.clone())  # type: ignore[union-attr]
    torch.testing.assert_close(values[0], values[1])
    assert not torch.allclose(grads[0], grads[1])


OPTIONS = [
    {"block": "mamba2_full"},
    {"refeed_conv": "fresh"},
    {"p_mode": "theorem"},
    {"state_norm": "squared"},
    {"detach_dilution": True},
    {"freeze_embeddings_at_test": True},
    {"drop_tied_pairs": True},
    {"time_scale_s": 3600.0, "time_block": 2},
    {"block": "mamba2_full", "p_mode": "theorem", "refeed_conv": "fresh", "dropout": 0.2},
    # the deviations from the paper (docs/models.md), and their combinations with the readings
    {"state_loss": "dilution", "state_delta": "live", "state_target": "live"},
    {"state_loss": "relative"},
    {"state_loss": "triangle", "state_delta": "detached_clamped"},
    {"state_loss": "triangle", "state_target": "detached", "state_norm": "squared"},
    {"time_scale": "gap_quantile", "time_quantile": 0.9},
    {"time_scale": "standardized", "block": "mamba2_full"},
]


@pytest.mark.parametrize(
    "options", OPTIONS, ids=lambda o: ",".join(f"{k}={v}" for k, v in o.items())
)
def test_every_option_constructs_trains_and_adapts(options: dict[str, Any]) -> None:
    model = tiny_t2arec(**options).train()
    batch = random_batch(lengths=(7, 3, 0))
    loss = model.loss(batch)
    loss.backward()
    assert torch.isfinite(loss)
    assert all(torch.isfinite(p.grad).all() for p in model.parameters() if p.grad is not None)
    assert torch.isfinite(model.test_time_loss(batch))
    assert torch.isfinite(model.eval().score(batch)[:, 1:]).all()
    signals = model.health_signals(batch)
    assert signals["representation"].shape == (3, 8)
    assert signals["state_norm"].shape == signals["delta_next"].shape == (2,)
    assert signals["delta_history"].numel() == 10 * model.nheads
    assert model.config == dataclasses.replace(T2ARecConfig(), **{**TINY, **options})


@torch.no_grad()
def test_options_change_the_losses() -> None:
    batch = random_batch(lengths=(7, 5, 3))
    base = tiny_t2arec().alignment_losses(batch)
    assert float(tiny_t2arec(refeed_conv="fresh").alignment_losses(batch)[1]) != float(base[1])
    assert float(tiny_t2arec(p_mode="theorem").alignment_losses(batch)[1]) != float(base[1])
    assert float(tiny_t2arec(state_norm="squared").alignment_losses(batch)[1]) != float(base[1])
    assert float(tiny_t2arec(time_scale_s=3600.0).alignment_losses(batch)[0]) != float(base[0])


# ---- configuration --------------------------------------------------------------------------


def test_registry_and_defaults() -> None:
    entry = models.get("t2arec")
    assert entry.cls is T2ARec
    assert entry.config_cls is T2ARecConfig
    cfg = T2ARecConfig()
    assert (cfg.max_len, cfg.d_model, cfg.d_state, cfg.d_conv, cfg.chunk) == (50, 64, 32, 4, 50)
    assert (cfg.block, cfg.p_mode, cfg.state_norm, cfg.refeed_conv) == (
        "literal",
        "learnable",
        "frobenius",
        "cached",
    )
    assert (cfg.mu_time_train, cfg.mu_state_train, cfg.mu_time_test, cfg.mu_state_test) == (
        0.1,
        0.1,
        0.01,
        0.1,
    )
    # the deviation chosen on validation (docs/models.md); the paper's reading is one config away
    assert (cfg.state_loss, cfg.state_delta, cfg.state_target, cfg.time_scale) == (
        "triangle",
        "detached_clamped",
        "detached",
        "fixed",
    )
    model = models.create("t2arec", n_items=30)
    assert model.item_table().shape == (31, 64)
    assert model.in_proj.weight.shape == (64 + 2 * 32 + 1, 64)  # type: ignore[union-attr]
    with pytest.raises(ValueError, match="unknown config keys"):
        models.make_config("t2arec", {"lamda": 1.0})


@pytest.mark.parametrize(
    ("overrides", "match"),
    [
        ({"block": "mamba3"}, "`block` must be one of"),
        ({"p_mode": "fixed"}, "`p_mode` must be one of"),
        ({"time_block": 1}, "`time_block` must be >= 2"),
        ({"time_scale_s": 0.0}, "time_scale_s > 0"),
        ({"block": "mamba2_full", "headdim": 48}, "multiple of headdim"),
    ],
)
def test_invalid_options_raise(overrides: dict[str, Any], match: str) -> None:
    with pytest.raises(ModelError, match=match):
        models.make_config("t2arec", overrides)


def test_explicit_mamba_ssm_backend_without_the_extra_raises() -> None:
    from models import ssd_backend

    if ssd_backend._mamba_scan() is not None:
        pytest.skip("mamba_ssm is importable here")
    with pytest.raises(ModelError, match="streamsim\\[mamba\\]"):
        models.create("t2arec", n_items=5, config={"backend": "mamba_ssm"})
