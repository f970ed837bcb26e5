"""The Mamba-2 state-space-duality (SSD) scan in pure PyTorch, as three pure functions.

Recurrence (one head h, scalar A_h < 0, ngroups = 1 so B and C are shared by the heads)::

    h_t = exp(Δ_t · A) · h_{t-1} + Δ_t · x_t ⊗ B_t        # state (P, N) per head
    y_t = h_t · C_t                                      # (P,)

- `ssd_chunked`: the chunked block-decomposition algorithm (fast, used by the models). It follows
  the structure of ``ssd_minimal_discrete`` in state-spaces/mamba
  (``mamba_ssm/modules/ssd_minimal.py``, Apache-2.0, Tri Dao and Albert Gu); written anew here.
- `ssd_sequential`: the naive time loop, the test oracle.
- `ssd_step`: one new event with an explicit state (streaming / recurrent inference).

Glossary: B batch, L length, H heads, P head dim, N state dim, Q chunk length, C number of chunks.
Right padding: set Δ = 0 on padded positions; then exp(ΔA) = 1 and ΔB = 0 there, so the final
state returned equals h_n of the real (unpadded) sequence and the padded y_t carry h_n along.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import Tensor


def _check(x: Tensor, dt: Tensor, A: Tensor, B: Tensor, C: Tensor) -> None:
    b, seq, h, _ = x.shape
    assert dt.shape == (b, seq, h), f"dt must be (B, L, H) = {(b, seq, h)}, got {tuple(dt.shape)}"
    assert A.shape == (h,), f"A must be (H,) = {(h,)}, got {tuple(A.shape)}"
    assert B.shape[:2] == (b, seq), f"B must be (B, L, N), got {tuple(B.shape)}"
    assert C.shape == B.shape, f"C must match B {tuple(B.shape)}, got {tuple(C.shape)}"


def segsum(a: Tensor) -> Tensor:
    """Segment sums of the last axis: (..., T) -> (..., T, T).

    ``out[..., i, j] = a[j+1] + ... + a[i]`` for j <= i (0 on the diagonal) and -inf above the
    diagonal, so that ``exp(segsum(a))`` is the lower-triangular decay matrix. Computed by a
    masked cumulative sum (no subtraction of large cumsums, hence stable).
    """
    t = a.shape[-1]
    rep = a.unsqueeze(-1).expand(*a.shape, t)  # (..., T, T): rep[..., k, j] = a[k]
    strict = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=-1)
    rep = rep.masked_fill(~strict, 0.0)  # keep a[k] only for k > j
    out = torch.cumsum(rep, dim=-2)  # out[i, j] = sum_{j<k<=i} a[k]
    lower = torch.tril(torch.ones(t, t, dtype=torch.bool, device=a.device), diagonal=0)
    return out.masked_fill(~lower, float("-inf"))


def ssd_chunked(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    chunk: int,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """Chunked SSD scan.

    Parameters
    ----------
    x : (B, L, H, P) inputs.
    dt : (B, L, H) step sizes Δ (already softplus'd; 0 on padding).
    A : (H,) negative scalar per head.
    B, C : (B, L, N) input and output projections (one group shared by the heads).
    chunk : chunk length Q; L is zero-padded (Δ = 0) to a multiple of Q.
    initial_state : (B, H, P, N) state before the first position, zeros when None.

    Returns
    -------
    y : (B, L, H, P) outputs.
    final_state : (B, H, P, N) the state after position L.
    """
    _check(x, dt, A, B, C)
    if chunk < 1:
        msg = f"`chunk` must be >= 1, got {chunk}"
        raise ValueError(msg)
    bsz, seq, nh, hp = x.shape
    ns = B.shape[-1]
    pad = (-seq) % chunk
    xdt = x * dt.unsqueeze(-1)  # (B, L, H, P) discretised input Δ·x
    adt = dt * A  # (B, L, H) log-decay Δ·A
    if pad:
        xdt = F.pad(xdt, (0, 0, 0, 0, 0, pad))
        adt = F.pad(adt, (0, 0, 0, pad))
        B = F.pad(B, (0, 0, 0, pad))
        C = F.pad(C, (0, 0, 0, pad))
    nc = (seq + pad) // chunk
    xc = xdt.reshape(bsz, nc, chunk, nh, hp)  # (B, C, Q, H, P)
    ac = adt.reshape(bsz, nc, chunk, nh).permute(0, 3, 1, 2)  # (B, H, C, Q)
    bc = B.reshape(bsz, nc, chunk, ns)  # (B, C, Q, N)
    cc = C.reshape(bsz, nc, chunk, ns)  # (B, C, Q, N)
    a_cum = torch.cumsum(ac, dim=-1)  # (B, H, C, Q)

    # 1. within-chunk outputs: y_l = sum_{s<=l} (C_l . B_s) exp(a_{s+1..l}) Δx_s
    decay_in = torch.exp(segsum(ac))  # (B, H, C, Q, Q)
    y_diag = torch.einsum("bcln,bcsn,bhcls,bcshp->bclhp", cc, bc, decay_in, xc)

    # 2. each chunk's own end state (starting from zero)
    decay_to_end = torch.exp(a_cum[..., -1:] - a_cum)  # (B, H, C, Q)
    chunk_states = torch.einsum("bcsn,bhcs,bcshp->bchpn", bc, decay_to_end, xc)

    # 3. pass states across chunks: state entering chunk c (and the final state)
    if initial_state is None:
        initial_state = x.new_zeros(bsz, nh, hp, ns)
    chunk_states = torch.cat([initial_state.unsqueeze(1), chunk_states], dim=1)  # (B, C+1, ...)
    decay_chunks = torch.exp(segsum(F.pad(a_cum[..., -1], (1, 0))))  # (B, H, C+1, C+1)
    passed = torch.einsum("bhzc,bchpn->bzhpn", decay_chunks, chunk_states)
    entering, final_state = passed[:, :-1], passed[:, -1]  # (B, C, H, P, N), (B, H, P, N)

    # 4. contribution of the entering state to each position's output
    decay_from_start = torch.exp(a_cum)  # (B, H, C, Q)
    y_off = torch.einsum("bcln,bchpn,bhcl->bclhp", cc, entering, decay_from_start)

    y = (y_diag + y_off).reshape(bsz, nc * chunk, nh, hp)[:, :seq]
    return y, final_state


def ssd_step(
    x_t: Tensor, dt_t: Tensor, A: Tensor, B_t: Tensor, C_t: Tensor, state: Tensor
) -> tuple[Tensor, Tensor]:
    """One recurrence step.

    Parameters
    ----------
    x_t : (B, H, P); dt_t : (B, H); A : (H,); B_t, C_t : (B, N); state : (B, H, P, N).

    Returns
    -------
    y_t : (B, H, P) and the new state (B, H, P, N).
    """
    decay = torch.exp(dt_t * A)  # (B, H)
    inject = (dt_t.unsqueeze(-1) * x_t).unsqueeze(-1) * B_t[:, None, None, :]  # (B, H, P, N)
    state = decay[..., None, None] * state + inject
    y_t = torch.einsum("bhpn,bn->bhp", state, C_t)
    return y_t, state


def ssd_sequential(
    x: Tensor,
    dt: Tensor,
    A: Tensor,
    B: Tensor,
    C: Tensor,
    *,
    chunk: int = 1,
    initial_state: Tensor | None = None,
) -> tuple[Tensor, Tensor]:
    """The naive time loop (test oracle); same signature as `ssd_chunked` (`chunk` is unused)."""
    _check(x, dt, A, B, C)
    del chunk
    bsz, seq, nh, hp = x.shape
    state = x.new_zeros(bsz, nh, hp, B.shape[-1]) if initial_state is None else initial_state
    ys = []
    for t in range(seq):
        y_t, state = ssd_step(x[:, t], dt[:, t], A, B[:, t], C[:, t], state)
        ys.append(y_t)
    y = torch.stack(ys, dim=1) if ys else x.new_zeros(bsz, 0, nh, hp)
    return y, state
