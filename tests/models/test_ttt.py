"""The TTT layer: the dual (mini-batch) form equals the naive per-token loop, in float64."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import torch

from models.ttt import (
    TTTLayer,
    gelu_tanh_grad,
    init_linear_embedding,
    ln_fwd,
    ln_l2_grad,
    ttt_dual,
    ttt_naive,
)


@pytest.fixture(autouse=True)
def _one_thread() -> Iterator[None]:
    """Tiny tensors: one intra-op thread is much faster than two on a loaded 2-core box."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


def _inputs(seq: int, inner: str, seed: int = 0) -> tuple:
    g = torch.Generator().manual_seed(seed)
    bsz, nh, hd = 2, 2, 4
    width = 4 * hd if inner == "mlp" else hd

    def r(*shape: int, scale: float = 1.0) -> torch.Tensor:
        return scale * torch.randn(*shape, generator=g, dtype=torch.float64)

    q, k, v = r(bsz, nh, seq, hd), r(bsz, nh, seq, hd), r(bsz, nh, seq, hd)
    lr = 0.05 + 0.3 * torch.rand(bsz, nh, seq, generator=g, dtype=torch.float64)
    params = {"W1": r(bsz, nh, hd, width, scale=0.3), "b1": r(bsz, nh, 1, width, scale=0.1)}
    if inner == "mlp":
        params |= {"W2": r(bsz, nh, width, hd, scale=0.3), "b2": r(bsz, nh, 1, hd, scale=0.1)}
    ln_w, ln_b = 1.0 + r(nh, hd, scale=0.1), r(nh, hd, scale=0.1)
    return q, k, v, lr, params, ln_w, ln_b


@pytest.mark.parametrize("inner", ["linear", "mlp"])
@pytest.mark.parametrize(("seq", "mini_batch"), [(6, 3), (7, 3), (5, 1), (4, 4)])
def test_dual_form_equals_naive_per_token_loop(inner: str, seq: int, mini_batch: int) -> None:
    q, k, v, lr, params, ln_w, ln_b = _inputs(seq, inner)
    factor = torch.clamp(
        1.0 / torch.arange(1, mini_batch + 1, dtype=torch.float64)
        + torch.linspace(-0.2, 0.3, mini_batch, dtype=torch.float64),
        min=0.0,
    )
    z_dual, p_dual = ttt_dual(q, k, v, lr, factor, params, ln_w, ln_b, mini_batch=mini_batch)
    z_ref, p_ref = ttt_naive(q, k, v, lr, factor, params, ln_w, ln_b, mini_batch=mini_batch)
    torch.testing.assert_close(z_dual, z_ref, rtol=1e-10, atol=1e-12)
    if seq % mini_batch == 0:
        for name in params:
            torch.testing.assert_close(p_dual[name], p_ref[name], rtol=1e-10, atol=1e-12)
    # the inner loop does something: outputs differ from the frozen-W0 outputs
    z_frozen, _ = ttt_dual(q, k, v, 0 * lr, factor, params, ln_w, ln_b, mini_batch=mini_batch)
    assert not torch.allclose(z_dual, z_frozen)


def test_mini_batch_size_matters_from_the_second_token() -> None:
    q, k, v, lr, params, ln_w, ln_b = _inputs(6, "linear")
    one = torch.ones(6, dtype=torch.float64)
    z1, _ = ttt_dual(q, k, v, lr, one[:1], params, ln_w, ln_b, mini_batch=1)
    z3, _ = ttt_dual(q, k, v, lr, one[:3], params, ln_w, ln_b, mini_batch=3)
    torch.testing.assert_close(z1[:, :, :1], z3[:, :, :1])  # token 1: one gradient at W0
    # token 2: b=1 takes its gradient at the updated W, b=3 still at W0
    assert not torch.allclose(z1[:, :, 1:2], z3[:, :, 1:2])


def test_closed_form_gradients_match_autograd() -> None:
    g = torch.Generator().manual_seed(1)
    x = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64, requires_grad=True)
    target = torch.randn(2, 3, 5, 6, generator=g, dtype=torch.float64)
    w, b = 1 + 0.1 * torch.randn(3, 6, dtype=torch.float64), torch.randn(3, 6, dtype=torch.float64)
    (grad,) = torch.autograd.grad(0.5 * (ln_fwd(x, w, b) - target).pow(2).sum(), x)
    torch.testing.assert_close(ln_l2_grad(x, target, w, b), grad)
    y = torch.nn.functional.gelu(x, approximate="tanh").sum()
    torch.testing.assert_close(gelu_tanh_grad(x), torch.autograd.grad(y, x)[0])


@pytest.mark.parametrize("share_qk", [False, True])
def test_layer_is_causal_and_differentiable(share_qk: bool) -> None:
    layer = TTTLayer(8, 2, mini_batch_size=3, share_qk=share_qk, use_gate=share_qk).double()
    init_linear_embedding(layer, 0.3, torch.Generator().manual_seed(0))
    x = torch.randn(2, 7, 8, dtype=torch.float64, requires_grad=True)
    y = layer(x)
    x2 = x.detach().clone()
    x2[:, 5:] = torch.randn(2, 2, 8, dtype=torch.float64)
    torch.testing.assert_close(layer(x2)[:, :5], y[:, :5].detach())
    y.sum().backward()
    assert x.grad is not None
    assert torch.isfinite(x.grad).all()
    assert layer.token_bias.grad is not None
    assert layer.W1.grad is not None
    assert layer.W1.grad.abs().sum() > 0
