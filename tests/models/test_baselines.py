"""Baseline-specific checks: the Mamba-1 scan, Mamba4Rec's init quirk, SASRec/GRU4Rec details,
and the two count models (time-strict popularity, transitions with a popularity backoff)."""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
from torch import Tensor

import models
from models.base import SeqBatch
from models.mamba4rec import Mamba4Rec, MambaLayer
from models.popularity import Popularity, window_counts
from models.selective_scan import selective_scan, selective_scan_ref
from models.transition import Transition
from streamsim.errors import ModelError
from streamsim.rng import seeded

DAY = 86_400
T0 = 1_600_000_000


def _scan_inputs(seed: int = 0, bsz: int = 2, seq: int = 6, chans: int = 3, nstate: int = 4):  # type: ignore[no-untyped-def]
    g = torch.Generator().manual_seed(seed)
    kw: dict[str, Any] = {"dtype": torch.float64, "generator": g}
    u = torch.randn(bsz, seq, chans, **kw)
    dt = torch.rand(bsz, seq, chans, **kw) * 0.8
    A = -torch.rand(chans, nstate, **kw) * 3 - 0.1
    B, C = torch.randn(bsz, seq, nstate, **kw), torch.randn(bsz, seq, nstate, **kw)
    D, z = torch.randn(chans, **kw), torch.randn(bsz, seq, chans, **kw)
    return u, dt, A, B, C, D, z


# ---- the selective scan ----------------------------------------------------------------------


SCANS = pytest.mark.parametrize("scan", [selective_scan, selective_scan_ref], ids=["fast", "ref"])


@SCANS
def test_selective_scan_matches_closed_form(scan: Any) -> None:
    """h_t = Σ_{s≤t} exp(A·Σ_{r=s+1..t} Δ_r) Δ_s u_s B_s; y_t = (C_t·h_t + D u_t)·SiLU(z_t)."""
    u, dt, A, B, C, D, z = _scan_inputs()
    y, h_last = scan(u, dt, A, B, C, D, z)
    cum = torch.cumsum(dt, dim=1)  # (B, L, E)
    seq = u.shape[1]
    expected = torch.zeros_like(y)
    for t in range(seq):
        decay = torch.exp((cum[:, t, None, :] - cum[:, : t + 1])[..., None] * A)  # (B, s, E, N)
        terms = decay * (dt[:, : t + 1] * u[:, : t + 1])[..., None] * B[:, : t + 1, None, :]
        h_t = terms.sum(1)  # (B, E, N)
        expected[:, t] = torch.einsum("ben,bn->be", h_t, C[:, t])
        if t == seq - 1:
            torch.testing.assert_close(h_last, h_t, rtol=1e-12, atol=1e-12)
    expected = (expected + D * u) * F.silu(z)
    torch.testing.assert_close(y, expected, rtol=1e-12, atol=1e-12)


@SCANS
def test_selective_scan_zero_dt_padding_keeps_final_state(scan: Any) -> None:
    u, dt, A, B, C, _, _ = _scan_inputs(1, seq=7)
    _, h_real = scan(u[:, :4], dt[:, :4], A, B[:, :4], C[:, :4])
    dt_padded = dt.clone()
    dt_padded[:, 4:] = 0.0
    _, h_pad = scan(u, dt_padded, A, B, C)
    torch.testing.assert_close(h_pad, h_real, rtol=1e-13, atol=1e-13)


@SCANS
def test_selective_scan_gradcheck(scan: Any) -> None:
    """Both outputs (y and the final state) and the initial state h0 are checked."""
    inputs = _scan_inputs(2, bsz=2, seq=4, chans=2, nstate=3)
    h0 = torch.randn(2, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(1))
    args = tuple(t.requires_grad_() for t in (*inputs, h0))

    def fn(*a: Tensor) -> tuple[Tensor, Tensor]:
        u, dt, A, B, C, D, z, h0 = a
        return scan(u, dt, A, B, C, D, z, h0=h0)

    assert torch.autograd.gradcheck(fn, args)


@pytest.mark.parametrize("seq", [1, 5, 13])
def test_fast_selective_scan_matches_the_reference_values_and_gradients(seq: int) -> None:
    """The hand-written backward against autograd through the oracle loop, float64, ragged Δ = 0
    padding, with a nonzero h0 and weights on both outputs; and the no-grad path."""
    u, dt, A, B, C, D, z = _scan_inputs(3, bsz=3, seq=seq, chans=4, nstate=5)
    dt = (
        dt
        * (torch.arange(seq)[None, :] < torch.tensor([seq, max(seq - 2, 1), 1])[:, None])[..., None]
    )
    g = torch.Generator().manual_seed(seq)
    h0 = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    args = [t.clone().requires_grad_() for t in (u, dt, A, B, C, D, z, h0)]
    u, dt, A, B, C, D, z, h0 = args
    w_y = torch.randn(3, seq, 4, dtype=torch.float64, generator=g)
    w_h = torch.randn(3, 4, 5, dtype=torch.float64, generator=g)
    grads = []
    for scan in (selective_scan_ref, selective_scan):
        y, h = scan(u, dt, A, B, C, D, z, h0=h0)
        grads.append((y, h, torch.autograd.grad((y * w_y).sum() + (h * w_h).sum(), args)))
    (y_ref, h_ref, g_ref), (y_fast, h_fast, g_fast) = grads
    torch.testing.assert_close(y_fast, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_fast, h_ref, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(["u", "dt", "A", "B", "C", "D", "z", "h0"], g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")
    with torch.no_grad():
        y_eval, h_eval = selective_scan(u, dt, A, B, C, D, z, h0=h0)
    torch.testing.assert_close(y_eval, y_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_eval, h_ref.detach(), rtol=1e-12, atol=1e-12)


@pytest.mark.parametrize("lengths", [[5, 0, 2, 5, 1], [0, 0, 0, 0, 0], [3, 3, 3, 3, 3]])
def test_fast_selective_scan_skips_padding_given_lengths(lengths: list[int]) -> None:
    """`lengths` (rows unsorted, empty rows, Δ left nonzero on padding): values and every input
    gradient equal the oracle's with Δ zeroed on padding, in float64; padding outputs read the
    carried h_n; the no-grad path too. Positions past every length (here L = 7) are covered."""
    u, dt, A, B, C, D, z = _scan_inputs(5, bsz=5, seq=7, chans=4, nstate=3)
    lens = torch.tensor(lengths)
    g = torch.Generator().manual_seed(11)
    h0 = torch.randn(5, 4, 3, dtype=torch.float64, generator=g)
    args = [t.clone().requires_grad_() for t in (u, dt, A, B, C, D, z, h0)]
    u, dt, A, B, C, D, z, h0 = args
    w_y = torch.randn(5, 7, 4, dtype=torch.float64, generator=g)
    w_h = torch.randn(5, 4, 3, dtype=torch.float64, generator=g)
    mask = (torch.arange(7)[None, :] < lens[:, None])[..., None]
    y_ref, h_ref = selective_scan_ref(u, dt * mask, A, B, C, D, z, h0=h0)
    g_ref = torch.autograd.grad((y_ref * w_y).sum() + (h_ref * w_h).sum(), args)
    y, h = selective_scan(u, dt, A, B, C, D, z, h0=h0, lengths=lens)
    g_fast = torch.autograd.grad((y * w_y).sum() + (h * w_h).sum(), args)
    torch.testing.assert_close(y, y_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h, h_ref, rtol=1e-12, atol=1e-12)
    for name, a, b in zip(["u", "dt", "A", "B", "C", "D", "z", "h0"], g_fast, g_ref, strict=True):
        torch.testing.assert_close(a, b, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")
    # the oracle given the same lengths masks Δ itself
    y_ref2, _ = selective_scan_ref(u, dt, A, B, C, D, z, h0=h0, lengths=lens)
    torch.testing.assert_close(y_ref2, y_ref, rtol=0, atol=0)
    with torch.no_grad():
        y_eval, h_eval = selective_scan(u, dt, A, B, C, D, z, h0=h0, lengths=lens)
    torch.testing.assert_close(y_eval, y_ref.detach(), rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_eval, h_ref.detach(), rtol=1e-12, atol=1e-12)


def test_fast_selective_scan_gradcheck_with_lengths() -> None:
    inputs = _scan_inputs(6, bsz=3, seq=4, chans=2, nstate=3)
    h0 = torch.randn(3, 2, 3, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    args = tuple(t.requires_grad_() for t in (*inputs, h0))
    lens = torch.tensor([1, 4, 0])

    def fn(*a: Tensor) -> tuple[Tensor, Tensor]:
        u, dt, A, B, C, D, z, h0 = a
        return selective_scan(u, dt, A, B, C, D, z, h0=h0, lengths=lens)

    assert torch.autograd.gradcheck(fn, args)


def test_selective_scan_rejects_bad_lengths() -> None:
    u, dt, A, B, C, _, _ = _scan_inputs()  # B = 2, L = 6
    with pytest.raises(ValueError, match=r"expected lengths in \[0, 6\], got 0..7"):
        selective_scan(u, dt, A, B, C, lengths=torch.tensor([7, 0]))
    with pytest.raises(ValueError, match=r"expected integer lengths of shape \(2,\)"):
        selective_scan(u, dt, A, B, C, lengths=torch.tensor([1.0, 2.0]))


def test_fast_selective_scan_empty_sequence_keeps_h0() -> None:
    u, dt, A, B, C, D, z = (t.requires_grad_() for t in _scan_inputs(4, seq=0))
    h0 = torch.randn(
        u.shape[0],
        u.shape[2],
        A.shape[1],
        dtype=torch.float64,
        generator=torch.Generator().manual_seed(4),
    )
    y, h = selective_scan(u, dt, A, B, C, D, z, h0=h0)
    assert y.shape == (u.shape[0], 0, u.shape[2])
    torch.testing.assert_close(h, h0)


def test_selective_scan_rejects_bad_shapes() -> None:
    u, dt, A, B, C, _, _ = _scan_inputs()
    with pytest.raises(ValueError, match="expected B and C"):
        selective_scan(u, dt, A, B[:, :-1], C)


# ---- Mamba4Rec -------------------------------------------------------------------------------


def _mamba(**overrides: Any) -> Mamba4Rec:
    with seeded(0):
        model = models.create("mamba4rec", n_items=20, config={"max_len": 6, **overrides})
    assert isinstance(model, Mamba4Rec)
    return model


def _layer(model: Mamba4Rec, index: int = 0) -> MambaLayer:
    layer = model.layers[index]
    assert isinstance(layer, MambaLayer)
    return layer


def test_mamba4rec_faithful_init_reinitialises_dt_proj() -> None:
    dt_proj = _layer(_mamba()).mamba.dt_proj
    assert torch.count_nonzero(dt_proj.bias) == 0  # Δ starts at softplus(0 + x·W) ≈ 0.69
    assert dt_proj.weight.std().item() == pytest.approx(0.02, rel=0.3)
    mamba_dt = _layer(_mamba(faithful_init=False)).mamba.dt_proj
    dt0 = F.softplus(mamba_dt.bias)
    assert dt0.min() >= 1e-4  # Mamba-1's log-uniform dt init in [1e-3, 0.1]
    assert dt0.max() <= 0.1 + 1e-6


def test_mamba4rec_fast_scan_gives_the_reference_loss_and_gradients(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The whole model, float64, ragged right-padded histories, two layers: the training loss
    and every parameter gradient are the same through the hand-written scan as through the
    autograd oracle (`models.mamba4rec` calls the scan by name, so the oracle is patched in)."""
    import models.mamba4rec as mamba4rec_module

    model = _mamba(num_layers=2, dropout=0.0).double()
    g = torch.Generator().manual_seed(7)
    lengths = torch.tensor([6, 3, 1, 0])
    items = torch.randint(1, 21, (4, 6), generator=g) * (torch.arange(6) < lengths[:, None])
    times = (T0 + DAY * torch.arange(6)).expand(4, 6) * (items > 0)
    batch = SeqBatch(
        items, times, lengths, torch.full((4,), T0 + 9 * DAY), torch.tensor([1, 2, 3, 4])
    )
    results = []
    for scan in (selective_scan_ref, selective_scan):
        monkeypatch.setattr(mamba4rec_module, "selective_scan", scan)
        model.zero_grad()
        loss = model.loss(batch)
        loss.backward()
        results.append(
            (
                loss.detach(),
                {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None},
            )
        )
    (loss_ref, grads_ref), (loss_fast, grads_fast) = results
    torch.testing.assert_close(loss_fast, loss_ref, rtol=1e-12, atol=0)
    assert grads_fast.keys() == grads_ref.keys()
    assert any("A_log" in n for n in grads_ref)
    for name, grad in grads_ref.items():
        torch.testing.assert_close(grads_fast[name], grad, rtol=1e-9, atol=1e-12, msg=name)


def test_mamba4rec_one_layer_has_no_residual_two_layers_do() -> None:
    one, two = _mamba(), _mamba(num_layers=2)
    assert [_layer(one, i).residual for i in range(1)] == [False]
    assert [_layer(two, i).residual for i in range(2)] == [True, True]
    x, valid = torch.randn(2, 6, 64), torch.ones(2, 6, dtype=torch.bool)
    layer = _layer(one).eval()
    mixed, _ = layer.mamba(x, valid)
    h = layer.norm(mixed)
    expected = layer.ffn_norm(layer.ffn_out(F.gelu(layer.ffn_in(h))) + h)
    torch.testing.assert_close(layer(x, valid)[0], expected)


def test_mamba4rec_depends_on_order() -> None:
    model = _mamba(dropout=0.0).eval()
    items = torch.tensor([[1, 2, 3, 4, 0, 0], [4, 3, 2, 1, 0, 0]])
    batch = SeqBatch(items, items * 0, torch.tensor([4, 4]), torch.tensor([T0, T0]))
    rep, _ = model(batch)
    assert not torch.allclose(rep[0], rep[1])


# ---- SASRec and GRU4Rec ----------------------------------------------------------------------


def test_sasrec_rejects_too_long_histories() -> None:
    model = models.create("sasrec", n_items=10, config={"max_len": 4})
    items = torch.ones(1, 5, dtype=torch.long)
    with pytest.raises(ModelError, match="exceeds max_len 4"):
        model(SeqBatch(items, items, torch.tensor([5]), torch.tensor([T0])))


def test_sasrec_uses_positions() -> None:
    model = models.create("sasrec", n_items=10, config={"max_len": 4}).eval()
    items = torch.tensor([[1, 2, 3, 0], [2, 1, 3, 0]])
    rep, _ = model(SeqBatch(items, items * 0, torch.tensor([3, 3]), torch.tensor([T0, T0])))
    assert not torch.allclose(rep[0], rep[1])


@pytest.mark.parametrize("n_layers", [1, 2, 3])
@pytest.mark.parametrize("train", [False, True])
def test_sasrec_last_query_layer_equals_the_all_positions_oracle(
    n_layers: int, train: bool
) -> None:
    """The last layer run for row n−1 only = every layer over every position, then gather:
    representations and every parameter gradient (float64; ragged, empty and full-width
    histories; train mode with dropout 0 so both paths see the same dropout)."""
    with seeded(n_layers):
        config = {"max_len": 9, "hidden_size": 8, "n_heads": 2, "inner_size": 16,
                  "n_layers": n_layers, "hidden_dropout": 0.0, "attn_dropout": 0.0}  # fmt: skip
        model = models.create("sasrec", n_items=12, config=config).double().train(train)
    g = torch.Generator().manual_seed(n_layers)
    lengths = torch.tensor([7, 1, 0, 3, 7, 5])
    valid = torch.arange(7)[None, :] < lengths[:, None]
    items = torch.randint(1, 13, (6, 7), generator=g) * valid
    batch = SeqBatch(
        items, items * 0, lengths, lengths * 0, torch.randint(1, 13, (6,), generator=g)
    )
    weights = torch.randn(6, 8, dtype=torch.float64, generator=g)
    runs = []
    for encode in (model.forward, model.forward_all_positions):  # type: ignore[attr-defined]
        model.zero_grad()
        rep, _ = encode(batch)
        ((rep * weights).sum() + rep.square().sum()).backward()
        grads = {n: p.grad.clone() for n, p in model.named_parameters() if p.grad is not None}
        runs.append((rep.detach(), grads))
    (rep_fast, g_fast), (rep_ref, g_ref) = runs
    torch.testing.assert_close(rep_fast, rep_ref, rtol=1e-12, atol=1e-12)
    assert g_fast.keys() == g_ref.keys()
    assert len(g_ref) == 4 + 16 * n_layers  # embeddings, emb LN, and 16 tensors per layer
    for name, want in g_ref.items():
        torch.testing.assert_close(g_fast[name], want, rtol=1e-10, atol=1e-12, msg=name)


def test_gru4rec_state_is_h_n_of_the_real_history() -> None:
    model = models.create("gru4rec", n_items=10, config={"max_len": 5}).eval()
    items = torch.tensor([[3, 1, 4, 0, 0]])
    _, h_pad = model(SeqBatch(items, items * 0, torch.tensor([3]), torch.tensor([T0])))
    _, h_ref = model.gru(model.item_emb(items[:, :3]))  # type: ignore[operator]
    torch.testing.assert_close(h_pad, h_ref)


@pytest.mark.parametrize("width", [6, 9])
def test_gru4rec_padded_run_equals_the_packed_oracle(width: int) -> None:
    """One layer: the padded GRU read at n−1 = RecBole's packed run — o_n, h_n and every
    parameter gradient (float64; ragged, empty and padding columns beyond the longest)."""
    with seeded(0):
        model = models.create("gru4rec", n_items=12, config={"max_len": 9, "dropout": 0.0})
    model = model.double()
    g = torch.Generator().manual_seed(width)
    lengths = torch.tensor([6, 1, 0, 3, 6])
    valid = torch.arange(width)[None, :] < lengths[:, None]
    items = torch.randint(1, 13, (5, width), generator=g) * valid
    batch = SeqBatch(
        items, items * 0, lengths, lengths * 0, torch.randint(1, 13, (5,), generator=g)
    )
    weights = torch.randn(5, 64, dtype=torch.float64, generator=g)
    runs = []
    for encode in (model._encode_padded, model._encode_packed):
        model.zero_grad()
        x = model.item_emb(batch.items)
        last, h_n = encode(x, lengths)
        has = (lengths > 0).double()
        out = model.dense(last * has[:, None])
        ((out * weights).sum() + (h_n * has[None, :, None]).square().sum()).backward()
        grads = [p.grad.clone() for p in model.parameters() if p.grad is not None]
        runs.append((out.detach(), (h_n * has[None, :, None]).detach(), grads))
    (o_fast, h_fast, g_fast), (o_ref, h_ref, g_ref) = runs
    torch.testing.assert_close(o_fast, o_ref, rtol=1e-12, atol=1e-12)
    torch.testing.assert_close(h_fast, h_ref, rtol=1e-12, atol=1e-12)
    assert len(g_fast) == len(g_ref) == 5  # embedding, two GRU matrices, dense weight and bias
    for got, want in zip(g_fast, g_ref, strict=True):
        torch.testing.assert_close(got, want, rtol=1e-12, atol=1e-12)
    o_model, h_model = model(batch)
    torch.testing.assert_close(o_model, o_ref)
    torch.testing.assert_close(h_model, h_ref)


def test_gru4rec_two_layers_keep_every_layers_h_n() -> None:
    """More than one layer takes the packed path: h_n of each layer equals step-by-step."""
    with seeded(0):
        model = models.create("gru4rec", n_items=10, config={"max_len": 5, "num_layers": 2})
    model = model.eval()
    items = torch.tensor([[3, 4, 5, 0, 0], [1, 2, 3, 4, 5]])
    batch = SeqBatch(items, items * 0, torch.tensor([3, 5]), torch.zeros(2), torch.ones(2))
    _, h_n = model(batch)
    state = model.initial_state(2)
    for t in range(5):
        keep = (t < batch.lengths)[None, :, None]
        _, new = model.step(items[:, t], items[:, t] * 0, state)
        state = torch.where(keep, new, state)
    torch.testing.assert_close(h_n, state)


@pytest.mark.parametrize("name", ["sasrec", "gru4rec", "mamba4rec"])
def test_neural_baselines_learn_a_deterministic_successor(name: str) -> None:
    """A few Adam steps on "next = last + 1" bring the target to the top for most rows."""
    n_items, seq = 12, 5
    with seeded(0):
        small = {"sasrec": {"hidden_size": 16, "inner_size": 32}, "gru4rec": {"hidden_size": 32},
                 "mamba4rec": {"d_model": 16, "d_state": 8}}[name]  # fmt: skip
        model = models.create(name, n_items=n_items, config={"max_len": seq, **small})
        g = torch.Generator().manual_seed(1)
        lengths = torch.randint(1, seq + 1, (64,), generator=g)
        start = torch.randint(1, n_items - seq, (64,), generator=g)
        items = (start[:, None] + torch.arange(seq)) * (torch.arange(seq) < lengths[:, None])
        targets = start + lengths
        batch = SeqBatch(items, items * 0, lengths, torch.full((64,), T0), targets)
        opt = torch.optim.Adam(model.parameters(), lr=1e-2)
        first = model.loss(batch).item()
        for _ in range(60):
            opt.zero_grad()
            model.loss(batch).backward()
            opt.step()
    model.eval()
    with torch.no_grad():
        hits = (model.score(batch).argmax(1) == targets).float().mean().item()
        assert model.loss(batch).item() < first / 2
    assert hits > 0.8


# ---- popularity ------------------------------------------------------------------------------


def _events(items: list[int], times: list[int]) -> SeqBatch:
    n = len(items)
    empty = torch.zeros(n, 3, dtype=torch.long)
    return SeqBatch(empty, empty, torch.zeros(n, dtype=torch.long), torch.tensor(times),
                    torch.tensor(items))  # fmt: skip


def _requests(times: list[int]) -> SeqBatch:
    n = len(times)
    empty = torch.zeros(n, 3, dtype=torch.long)
    return SeqBatch(empty, empty, torch.zeros(n, dtype=torch.long), torch.tensor(times))


def _popularity(**config: Any) -> Popularity:
    model = models.create("popularity", n_items=5, config=config)
    assert isinstance(model, Popularity)
    return model


def test_popularity_counts_only_events_strictly_before_the_request() -> None:
    model = _popularity(window_s=DAY, tie_break=False)
    model.observe(_events([1, 2, 2, 3, 3, 3], [T0, T0 + 10, T0 + 20, T0 + 30, T0 + 30, T0 + 40]))
    scores = model.score(_requests([T0, T0 + 30, T0 + 31, T0 + 41]))
    assert scores[0, 1:].tolist() == [0, 0, 0, 0, 0]  # the event at exactly T0 is not before T0
    assert scores[1, 1:].tolist() == [1, 2, 0, 0, 0]  # events at T0+30 are not before T0+30
    assert scores[2, 1:].tolist() == [1, 2, 2, 0, 0]
    assert scores[3, 1:].tolist() == [1, 2, 3, 0, 0]
    assert torch.isneginf(scores[:, 0]).all()


def test_popularity_window_forgets_old_events_and_zero_means_all_time() -> None:
    events = _events([1, 1, 1, 2], [T0, T0 + 1, T0 + 2, T0 + 3 * DAY])
    recent, alltime = _popularity(window_s=DAY, tie_break=False), _popularity(window_s=0)
    for model in (recent, alltime):
        model.observe(events)
    req = _requests([T0 + 3 * DAY + 5])
    assert recent.score(req)[0, 1:].tolist() == [0, 1, 0, 0, 0]
    assert alltime.score(req)[0, 1:].tolist() == [3, 1, 0, 0, 0]
    ranked = _popularity(window_s=DAY)  # tie-break: item 1 (3 events long ago) above 3, 4, 5
    ranked.observe(events)
    assert ranked.score(req)[0, 1:].argsort(descending=True).tolist()[:2] == [1, 0]


def test_window_counts_match_brute_force_with_out_of_order_observes() -> None:
    rng = np.random.default_rng(0)
    ts, items = rng.integers(0, 1000, 400), rng.integers(1, 6, 400)
    model = _popularity(window_s=100, tie_break=False)
    for chunk in np.array_split(np.arange(400), 7):  # unsorted times across and within observes
        model.observe(_events(items[chunk].tolist(), ts[chunk].tolist()))
    req = rng.integers(0, 1100, 50)
    scores = model.score(_requests(req.tolist()))[:, 1:].numpy()
    for row, t in enumerate(req):
        inside = (ts >= t - 100) & (ts < t)
        assert scores[row].tolist() == np.bincount(items[inside], minlength=6)[1:].tolist()
    order = np.argsort(ts, kind="stable")
    direct = window_counts(ts[order], items[order], req - 100, req, 6)[:, 1:]
    np.testing.assert_array_equal(direct, scores)


def test_window_counts_over_long_spans_match_brute_force() -> None:
    """Long windows (and the all-time window of the tie-break) add many events at once, which
    takes the `np.bincount` path; short steps between requests take `np.add.at`."""
    rng = np.random.default_rng(1)
    ts = np.sort(rng.integers(0, 100_000, 5_000))
    items = rng.integers(1, 40, 5_000)
    req = np.sort(rng.integers(0, 110_000, 300))
    for lo in (req - 20_000, np.full_like(req, -(2**40)), req - 50):
        got = window_counts(ts, items, lo, req, 40)
        for row in range(0, 300, 7):
            inside = (ts >= lo[row]) & (ts < req[row])
            assert got[row].tolist() == np.bincount(items[inside], minlength=40).tolist()


def test_popularity_rejects_bad_config_and_items() -> None:
    with pytest.raises(ModelError, match="window_s >= 0"):
        models.make_config("popularity", {"window_s": -1})
    with pytest.raises(ModelError, match="item ids in"):
        _popularity().observe(_events([9], [T0]))


# ---- transitions -----------------------------------------------------------------------------


def _transition(**config: Any) -> Transition:
    model = models.create("transition", n_items=5, config={"max_len": 3, **config})
    assert isinstance(model, Transition)
    return model


def _after(last: list[int], targets: list[int] | None = None) -> SeqBatch:
    n = len(last)
    items = torch.zeros(n, 3, dtype=torch.long)
    items[:, 1] = torch.tensor(last)
    lengths = torch.where(torch.tensor(last) > 0, 2, 0)
    items[:, 0] = torch.where(lengths > 0, 5, 0)  # an earlier item that must not matter
    tgt = None if targets is None else torch.tensor(targets)
    return SeqBatch(items, items * 0, lengths, torch.full((n,), T0), tgt)


def test_transition_scores_follow_the_last_item_with_popularity_backoff() -> None:
    model = _transition(backoff=0.5)
    model.observe(_after([1, 1, 1, 2, 0, 0], [2, 2, 3, 4, 4, 4]))
    scores = model.score(_after([1, 2, 3, 0]))
    pop = np.array([0, 0, 2, 1, 3, 0]) / 7.0  # item counts / (N + 1), N = 6
    expected = np.tile(0.5 * pop, (4, 1))
    expected[0, [2, 3]] += [2, 1]
    expected[1, 4] += 1
    np.testing.assert_allclose(scores[:, 1:].numpy(), expected[:, 1:], rtol=1e-6)
    assert scores[0, 1:].argmax().item() + 1 == 2  # most frequent successor of 1
    assert scores[2, 1:].argmax().item() + 1 == 4  # unseen last item: most popular
    assert scores[3, 1:].argmax().item() + 1 == 4  # empty history: most popular
    assert torch.isneginf(scores[:, 0]).all()


def test_transition_pending_pairs_merge_like_one_observe() -> None:
    a, b = _transition(), _transition()
    batch = _after([1, 2, 1, 3, 1], [2, 3, 2, 1, 4])
    a.observe(batch)
    for row in range(batch.size):
        b.observe(batch.subset(torch.tensor([row])))
        b.score(_after([1]))  # merges the pending pairs in between
    torch.testing.assert_close(a.score(_after([1, 2, 3])), b.score(_after([1, 2, 3])))


def test_count_models_are_not_trainable() -> None:
    for name in ("popularity", "transition"):
        model = models.create(name, n_items=4)
        assert not model.trainable
        assert list(model.parameters()) == []


def test_transition_backoff_keeps_transition_order() -> None:
    model = _transition(backoff=1.0)
    model.observe(_after([0] * 50, [5] * 50))  # item 5 very popular, no transitions
    model.observe(_after([1], [2]))
    scores = model.score(_after([1]))[0]
    assert scores[2] > scores[5]  # one observed transition beats any amount of popularity
    assert math.isclose(float(scores[5]), 50 / 52, rel_tol=1e-6)


def test_configs_have_max_len() -> None:
    for name in ("mamba4rec", "sasrec", "gru4rec", "popularity", "transition"):
        fields = {f.name: f.default for f in dataclasses.fields(models.get(name).config_cls)}
        assert fields["max_len"] == 50
