"""The TTT layer: the dual (mini-batch) form equals the naive per-token loop, in float64."""

from __future__ import annotations

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

pytestmark = pytest.mark.usefixtures("one_thread")  # tiny tensors: one thread is much faster


def _inputs(seq: int, inner: str, seed: int = 0, bsz: int = 2) -> tuple:
    g = torch.Generator().manual_seed(seed)
    nh, hd = 2, 4
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


@pytest.mark.parametrize("inner", ["linear", "mlp"])
def test_ragged_dual_form_skips_only_padding_mini_batches(inner: str) -> None:
    """Given lengths (rows unsorted, an empty row, a row ending mid-mini-batch), every valid
    output and its gradients equal the full computation's; the skipped mini-batches give z = 0;
    each row's params are those after its last mini-batch holding a valid token (float64)."""
    bsz, nh, seq, hd, b = 5, 2, 7, 4, 3
    q, k, v, lr, params, ln_w, ln_b = _inputs(seq, inner, seed=3, bsz=bsz)
    factor = torch.tensor([1.0, 0.6, 0.2], dtype=torch.float64)
    lengths = torch.tensor([4, 0, 7, 1, 3])
    leaves = [t.clone().requires_grad_() for t in (q, k, v, lr, factor, ln_w, ln_b)]
    w0 = {n: t.clone().requires_grad_() for n, t in params.items()}
    valid = (torch.arange(seq)[None, :] < lengths[:, None])[:, None, :, None]  # (B, 1, L, 1)
    w = torch.randn(
        bsz, nh, seq, hd, generator=torch.Generator().manual_seed(4), dtype=torch.float64
    )
    runs = []
    for lens in (None, lengths):
        z, p = ttt_dual(*leaves[:5], w0, *leaves[5:], mini_batch=b, lengths=lens)
        grads = torch.autograd.grad((z * w * valid).sum(), [*leaves, *w0.values()])
        runs.append((z.detach(), p, grads))
    (z_full, _, g_full), (z_rag, p_rag, g_rag) = runs
    torch.testing.assert_close(z_rag * valid, z_full * valid, rtol=1e-12, atol=1e-12)
    names = ["q", "k", "v", "lr", "token factor", "ln weight", "ln bias", *w0]
    for name, a, ref in zip(names, g_rag, g_full, strict=True):
        torch.testing.assert_close(a, ref, rtol=1e-10, atol=1e-12, msg=f"gradient of {name}")
    reached = -(-lengths // b) * b  # tokens of the mini-batches a row reaches
    for row in range(bsz):
        end = int(reached[row])
        assert bool((z_rag[row, :, end:] == 0).all())
        if end == 0:  # an empty row keeps W0
            for name in params:
                torch.testing.assert_close(p_rag[name][row], params[name][row], rtol=0, atol=0)
            continue
        one = [t[row : row + 1, :, :end] for t in (q, k, v, lr)]
        _, p_row = ttt_dual(
            *one, factor, {n: t[row : row + 1] for n, t in params.items()}, ln_w, ln_b,
            mini_batch=b,
        )  # fmt: skip
        for name in params:
            torch.testing.assert_close(
                p_rag[name][row : row + 1], p_row[name], rtol=1e-12, atol=1e-12
            )
    with pytest.raises(ValueError, match=r"expected lengths of shape \(5,\) in \[0, 7\]"):
        ttt_dual(q, k, v, lr, factor, params, ln_w, ln_b, mini_batch=b, lengths=lengths + 3)


def test_layer_given_lengths_keeps_every_valid_output() -> None:
    layer = TTTLayer(8, 2, mini_batch_size=3, share_qk=True, use_gate=True).double()
    init_linear_embedding(layer, 0.3, torch.Generator().manual_seed(1))
    x = torch.randn(3, 8, 8, dtype=torch.float64, generator=torch.Generator().manual_seed(2))
    lengths = torch.tensor([2, 8, 5])
    valid = (torch.arange(8)[None, :] < lengths[:, None])[..., None]
    torch.testing.assert_close(layer(x, lengths) * valid, layer(x) * valid, rtol=1e-12, atol=1e-12)
