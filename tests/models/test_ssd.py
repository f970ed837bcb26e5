"""The SSD scan: chunked = sequential oracle = repeated step; right padding; backend selection."""

from __future__ import annotations

import pytest
import torch

from models import ssd_backend
from models.ssd import segsum, ssd_chunked, ssd_sequential, ssd_step
from streamsim.errors import ModelError

TOL = {"rtol": 1e-10, "atol": 1e-10}


def _inputs(b: int, seq: int, h: int, p: int, n: int, seed: int = 0) -> tuple[torch.Tensor, ...]:
    g = torch.Generator().manual_seed(seed)
    kw = {"dtype": torch.float64, "generator": g}
    x = torch.randn(b, seq, h, p, **kw)
    dt = torch.rand(b, seq, h, **kw) * 0.5 + 0.01
    A = -(torch.rand(h, **kw) * 5 + 0.5)
    B = torch.randn(b, seq, n, **kw)
    C = torch.randn(b, seq, n, **kw)
    return x, dt, A, B, C


def test_segsum_matches_naive_definition() -> None:
    a = torch.randn(2, 6, dtype=torch.float64)
    out = segsum(a)
    for i in range(6):
        for j in range(6):
            want = a[:, j + 1 : i + 1].sum(-1) if j <= i else torch.full((2,), float("-inf"))
            torch.testing.assert_close(out[:, i, j], want.to(out.dtype))


@pytest.mark.parametrize("chunk", [1, 3, 8, 50])
@pytest.mark.parametrize(("seq", "heads"), [(1, 1), (7, 1), (13, 2), (50, 1)])
def test_chunked_equals_sequential_equals_step(chunk: int, seq: int, heads: int) -> None:
    x, dt, A, B, C = _inputs(3, seq, heads, 4, 5, seed=seq + chunk)
    h0 = torch.randn(3, heads, 4, 5, dtype=torch.float64)
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C, initial_state=h0)
    y, s = ssd_chunked(x, dt, A, B, C, chunk=chunk, initial_state=h0)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)
    state = h0
    for t in range(seq):  # repeated step, written out independently of ssd_sequential
        y_t, state = ssd_step(x[:, t], dt[:, t], A, B[:, t], C[:, t], state)
        torch.testing.assert_close(y_t, y[:, t], **TOL)
    torch.testing.assert_close(state, s, **TOL)


def test_step_is_the_textbook_recurrence() -> None:
    x, dt, A, B, C = _inputs(2, 1, 1, 3, 2)
    h = torch.randn(2, 1, 3, 2, dtype=torch.float64)
    y, h1 = ssd_step(x[:, 0], dt[:, 0], A, B[:, 0], C[:, 0], h)
    for b in range(2):
        want = torch.exp(dt[b, 0, 0] * A[0]) * h[b, 0] + dt[b, 0, 0] * torch.outer(
            x[b, 0, 0], B[b, 0]
        )
        torch.testing.assert_close(h1[b, 0], want, **TOL)
        torch.testing.assert_close(y[b, 0], want @ C[b, 0], **TOL)


@pytest.mark.parametrize("chunk", [1, 4, 50])
def test_ragged_padding_final_state_equals_unpadded(chunk: int) -> None:
    """Δ = 0 on right padding: the final state is h_n whatever the padded x, B, C hold."""
    x, dt, A, B, C = _inputs(4, 11, 2, 3, 4, seed=7)
    lengths = torch.tensor([11, 5, 1, 0])
    mask = torch.arange(11)[None, :] < lengths[:, None]
    _, s = ssd_chunked(x, dt * mask[..., None], A, B, C, chunk=chunk)
    y, _ = ssd_chunked(x, dt * mask[..., None], A, B, C, chunk=chunk)
    for b, n in enumerate(lengths.tolist()):
        sl = slice(b, b + 1)
        y_real, s_real = ssd_sequential(x[sl, :n], dt[sl, :n], A, B[sl, :n], C[sl, :n])
        torch.testing.assert_close(s[b], s_real[0], **TOL)
        torch.testing.assert_close(y[b, :n], y_real[0], **TOL)
    assert torch.all(s[3] == 0)


def test_chunked_scan_gradcheck() -> None:
    x, dt, A, B, C = _inputs(1, 5, 1, 2, 2)
    for t in (x, dt, A, B, C):
        t.requires_grad_(True)
    assert torch.autograd.gradcheck(
        lambda *a: ssd_chunked(*a, chunk=2)[1].sum() + ssd_chunked(*a, chunk=2)[0].pow(2).sum(),
        (x, dt, A, B, C),
    )


def test_backend_selection_on_cpu() -> None:
    cpu = torch.device("cpu")
    assert ssd_backend.resolve_backend("torch", cpu) == "torch"
    assert ssd_backend.resolve_backend("auto", cpu) == "torch"
    with pytest.raises(ModelError, match="unknown SSD backend"):
        ssd_backend.resolve_backend("triton", cpu)
    x, dt, A, B, C = _inputs(2, 9, 1, 3, 4)
    y, s = ssd_backend.ssd_scan(x, dt, A, B, C, chunk=4, backend="auto")
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C)
    torch.testing.assert_close(y, y_ref, **TOL)
    torch.testing.assert_close(s, s_ref, **TOL)


def test_explicit_mamba_ssm_without_it_raises_install_hint() -> None:
    if ssd_backend._mamba_scan() is not None:
        pytest.skip("mamba_ssm is importable here; the missing-extra error cannot be shown")
    with pytest.raises(ModelError, match=r"pip install --no-build-isolation -e '\.\[mamba\]'"):
        ssd_backend.resolve_backend("mamba_ssm", torch.device("cpu"))


@pytest.mark.gpu
def test_mamba_ssm_matches_oracle_on_cuda() -> None:
    if not torch.cuda.is_available():
        pytest.skip("needs CUDA")
    if not ssd_backend.mamba_ssm_available():
        pytest.skip("mamba_ssm is not installed (pip install --no-build-isolation -e '.[mamba]')")
    x, dt, A, B, C = _inputs(2, 37, 2, 64, 32)
    lengths = torch.tensor([37, 20])
    dt = dt * (torch.arange(37)[None, :] < lengths[:, None])[..., None]
    y_ref, s_ref = ssd_sequential(x, dt, A, B, C)
    dev = [t.float().cuda() for t in (x, dt, A, B, C)]
    y, s = ssd_backend.ssd_scan(*dev, chunk=16, backend="mamba_ssm")
    # the Triton kernels multiply in TF32, so compare relative to the scale of the reference
    for got, want in ((y, y_ref), (s, s_ref)):
        err = (got.double().cpu() - want).norm() / want.norm()
        assert float(err) < 5e-3, f"relative error {float(err):.2e} against the fp64 oracle"
