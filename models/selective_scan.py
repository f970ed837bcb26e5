"""Mamba-1 selective scan (S6) in pure PyTorch: the full-sequence scan and its one-step form.

Reference: A. Gu, T. Dao, "Mamba: Linear-Time Sequence Modeling with Selective State Spaces"
(arXiv 2312.00752), Algorithm 2; semantics of `selective_scan_ref` in state-spaces/mamba
(`mamba_ssm/ops/selective_scan_interface.py`). Written here from the equations:

    h_t = exp(Δ_t ⊙ A) ⊙ h_{t-1} + (Δ_t ⊙ u_t) ⊗ B_t        (per channel e, state n)
    y_t = h_t · C_t + D ⊙ u_t,    y_t ← y_t ⊙ SiLU(z_t) when a gate z is given

Glossary: B batch, L length, E channels (d_inner), N d_state. A is (E, N) and real (S4D-real
init, negative). Δ = 0 at a position leaves the state unchanged (exp(0) = 1, no input), which is
how right padding is masked: the state after the last position is h_n of the real sequence.

Two forms of the same scan, sequential in L (O(B·E·N) work per position; every factor is exp of a
non-positive number, so neither can overflow):

- `selective_scan_ref`: the recurrence written with autograd ops, one position at a time. It is
  the test oracle. Autograd records ~6 (B, E, N) temporaries per position and replays them in
  backward, which makes it memory-bound (~8 % of the matmul roofline on our CPU).
- `selective_scan` (used by the models): the same loop inside a `torch.autograd.Function` with a
  hand-written backward. Forward writes each h_t once into one time-major (L, B, E, N) buffer
  (the only thing saved besides the inputs); backward runs the adjoint recurrence in reverse,

      g_t = ∂L/∂h_t = C_t ⊗ ∂L/∂y_t + exp(Δ_{t+1} A) ⊙ g_{t+1},

  recomputing exp(Δ_t A) per position instead of storing it, and reads every input gradient off
  g_t and h_{t-1}. Both loops stay per position so each step works on a cache-sized (B, E, N)
  slab; a whole-sequence formulation of the backward was 1.8x slower at L = 50 and 5x at
  L = 200 in scratch timings here. The
  skip D and the gate z stay ordinary autograd ops outside the Function. First-order gradients
  only (no double backward). Without gradients (evaluation, replay) it runs the plain loop and
  keeps one (B, E, N) state, so a 4,096-row evaluation batch never allocates the state buffer
  (3.4 GB at L = 50). `tests/models/test_baselines.py` checks values and gradients
  against the reference in float64; `benchmarks/selective_scan.py` measures the speed-up.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(u: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    bsz, seq, chans = u.shape
    nstate = A.shape[-1]
    if dt.shape != u.shape or A.shape != (chans, nstate):
        msg = f"selective_scan: expected dt {tuple(u.shape)} and A ({chans}, N), got "
        msg += f"{tuple(dt.shape)} and {tuple(A.shape)}"
        raise ValueError(msg)
    if B.shape != (bsz, seq, nstate) or C.shape != (bsz, seq, nstate):
        msg = f"selective_scan: expected B and C of shape {(bsz, seq, nstate)}, got "
        msg += f"{tuple(B.shape)} and {tuple(C.shape)}"
        raise ValueError(msg)


def selective_scan_step(
    u: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    h: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """One position: u, dt, z (B, E); B, C (B, N); h (B, E, N) -> y (B, E), new h (B, E, N)."""
    dA = torch.exp(dt.unsqueeze(-1) * A)  # (B, E, N), in (0, 1]
    h = dA * h + (dt * u).unsqueeze(-1) * B.unsqueeze(1)
    y = torch.bmm(h, C.unsqueeze(-1)).squeeze(-1)  # einsum("ben,bn->be") copies h: 6x slower
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y, h


class _SelectiveScan(torch.autograd.Function):
    """y_t = C_t · h_t and h_L, h_t = exp(Δ_t A) ⊙ h_{t-1} + (Δ_t u_t) ⊗ B_t; own backward."""

    @staticmethod
    def forward(
        ctx: torch.autograd.function.FunctionCtx,
        u: Tensor,
        dt: Tensor,
        A: Tensor,
        B: Tensor,
        C: Tensor,
        h0: Tensor,
    ) -> tuple[Tensor, Tensor]:
        bsz, seq, chans = u.shape
        # time-major (L, B, E, N): every h_t is one contiguous slab, written in place
        states = u.new_empty(seq, bsz, chans, A.shape[-1])
        dtu = dt * u
        h = h0
        for t in range(seq):
            h_t = states[t]
            torch.mul(torch.exp(dt[:, t, :, None] * A), h, out=h_t)
            h_t.addcmul_(dtu[:, t, :, None], B[:, t, None, :])
            h = h_t
        rows = states.view(-1, chans, A.shape[-1])  # (L·B, E, N)
        c_rows = C.transpose(0, 1).reshape(-1, C.shape[-1], 1)
        y = torch.bmm(rows, c_rows).view(seq, bsz, chans).transpose(0, 1)
        ctx.save_for_backward(u, dt, A, B, C, h0, states)
        return y, h.clone()

    @staticmethod
    def backward(
        ctx: torch.autograd.function.FunctionCtx, dy: Tensor, dh_last: Tensor
    ) -> tuple[Tensor, ...]:
        u, dt, A, B, C, h0, states = ctx.saved_tensors  # type: ignore[attr-defined]
        seq = u.shape[1]
        dtu = dt * u
        d_dtu, d_dt_decay = torch.empty_like(u), torch.empty_like(dt)
        dB = torch.empty_like(B)
        dA_terms = torch.zeros_like(h0)  # Σ_t ∂L/∂(Δ_t A) ⊙ Δ_t, summed over the batch at the end
        g = dh_last  # ∂L/∂h_t, accumulated from t = L down to 1
        for t in range(seq - 1, -1, -1):
            g = torch.addcmul(g, dy[:, t, :, None], C[:, t, None, :])
            d_dtu[:, t] = torch.bmm(g, B[:, t, :, None]).squeeze(-1)
            dB[:, t] = torch.bmm(dtu[:, t, None, :], g).squeeze(1)
            g = g * torch.exp(dt[:, t, :, None] * A)  # ∂L/∂h_{t-1} through the decay
            h_prev = states[t - 1] if t > 0 else h0
            d_log_decay = g * h_prev  # ∂L/∂(Δ_t A) = ∂L/∂h_t ⊙ exp(Δ_t A) ⊙ h_{t-1}
            d_dt_decay[:, t] = torch.einsum("ben,en->be", d_log_decay, A)
            dA_terms.addcmul_(d_log_decay, dt[:, t, :, None])
        rows = states.view(-1, *states.shape[2:])  # (L·B, E, N)
        dy_rows = dy.transpose(0, 1).reshape(-1, 1, dy.shape[-1])
        dC = torch.bmm(dy_rows, rows).view(seq, *B.shape[::2]).transpose(0, 1)
        return d_dtu * dt, d_dt_decay + d_dtu * u, dA_terms.sum(0), dB, dC, g


def selective_scan(
    u: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Scan a whole sequence.

    Parameters
    ----------
    u, dt, z
        (B, L, E) input, step sizes Δ (already softplus-ed, ≥ 0; 0 on padding) and optional gate.
    A
        (E, N) state matrix (negative entries).
    B, C
        (B, L, N) input-dependent input and output projections.
    D
        (E,) optional skip connection.
    h0
        (B, E, N) optional initial state (zeros by default).

    Returns
    -------
    y, h_last
        (B, L, E) outputs and the (B, E, N) state after position L.
    """
    _check(u, dt, A, B, C)
    bsz, seq, chans = u.shape
    h = h0 if h0 is not None else u.new_zeros(bsz, chans, A.shape[-1])
    inputs = (u, dt, A, B, C, h)
    if seq == 0 or not torch.is_grad_enabled() or not any(t.requires_grad for t in inputs):
        # inference: the plain loop keeps one (B, E, N) state, no (B, L, E, N) buffer
        return selective_scan_ref(u, dt, A, B, C, D, z, h0=h)
    y, h = _SelectiveScan.apply(*inputs)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y, h


def selective_scan_ref(
    u: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    D: Tensor | None = None,
    z: Tensor | None = None,
    h0: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Scan a whole sequence with autograd ops, one position at a time (the test oracle).

    Arguments and results as `selective_scan`.
    """
    _check(u, dt, A, B, C)
    bsz, seq, chans = u.shape
    h = h0 if h0 is not None else u.new_zeros(bsz, chans, A.shape[-1])
    ys = []
    for t in range(seq):
        y_t, h = selective_scan_step(u[:, t], dt[:, t], A, B[:, t], C[:, t], h)
        ys.append(y_t)
    y = torch.stack(ys, dim=1) if ys else u.new_zeros(bsz, 0, chans)
    if D is not None:
        y = y + D * u
    if z is not None:
        y = y * F.silu(z)
    return y, h
