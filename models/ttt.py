"""The TTT layer (Sun et al., "Learning to (Learn at Test Time)", arXiv 2407.04620) in pure PyTorch.

Follows the ttt-lm-pytorch reference (test-time-training/ttt-lm-pytorch `ttt.py`, `TTTBase`,
`TTTLinear`, `TTTMLP`; docs/models-ttt.md) as TTT4Rec uses it; written anew here.

Per head h, the hidden state is the weight set W of an inner model f_W (TTT-Linear: f → f;
TTT-MLP: f → 4f → f with tanh-GELU). Token t has a key k_t, value v_t and query q_t (projections of
the layer input, RoPE on q/k with positions taken modulo the mini-batch size b). The inner loss is

    ℓ_t(W) = ½ ‖LN_h(f_W(k_t)) − (v_t − k_t)‖²             (LN_h: a learnable per-head LayerNorm)

and the layer output is z_t = q_t + LN_h(f_{W_t}(q_t)). Mini-batch gradient descent: the tokens
of mini-batch m (b consecutive tokens) all take their gradients at the mini-batch's initial W⁽ᵐ⁾,
and token i of the mini-batch uses

    W_i = W⁽ᵐ⁾ − Σ_{j ≤ i} η_{ij} ∇ℓ_j(W⁽ᵐ⁾),   η_{ij} = c_i · lr_j,

with lr_j = base_lr · σ(w_hᵀ x_j + b_h) / f (a learnable per-head, per-token rate) and
c_i = max(1/i + δ_i, 0) (token factor with a learnable offset δ). W⁽ᵐ⁺¹⁾ = W_b (the mini-batch's
last token). `ttt_dual` computes this without materialising any W_i (the "dual form");
`ttt_naive` is the per-token reference that does materialise them and takes the gradients with
torch.autograd (the test oracle). A sequence whose length is not a multiple of b is zero-padded at
the end: every operation is causal, so the padded tail changes no earlier output.

Glossary: B batch, H heads, L length, f head dim, m inner width (f or 4f), b mini-batch size,
M number of mini-batches, D hidden size = H·f.
"""

from __future__ import annotations

import math
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

InnerKind = Literal["mlp", "linear"]
Params = dict[str, Tensor]  # W1 (B,H,f,m), b1 (B,H,1,m)[, W2 (B,H,m,f), b2 (B,H,1,f)]


def ln_fwd(x: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6) -> Tensor:
    """Per-head LayerNorm over the last axis; weight/bias (H, f) broadcast over (B, H, ·, f)."""
    mu = x.mean(-1, keepdim=True)
    var = x.var(-1, keepdim=True, unbiased=False)
    return (x - mu) / torch.sqrt(var + eps) * weight[:, None, :] + bias[:, None, :]


def ln_l2_grad(
    x: Tensor, target: Tensor, weight: Tensor, bias: Tensor, eps: float = 1e-6
) -> Tensor:
    """∂/∂x of ½‖LN(x) − target‖² in closed form (ttt-lm-pytorch `ln_fused_l2_bwd`)."""
    d = x.shape[-1]
    mu = x.mean(-1, keepdim=True)
    std = torch.sqrt(x.var(-1, keepdim=True, unbiased=False) + eps)
    x_hat = (x - mu) / std
    y = weight[:, None, :] * x_hat + bias[:, None, :]
    g_hat = (y - target) * weight[:, None, :]
    inner = d * g_hat - g_hat.sum(-1, keepdim=True) - x_hat * (g_hat * x_hat).sum(-1, keepdim=True)
    return inner / (d * std)


def gelu_tanh_grad(x: Tensor) -> Tensor:
    """Derivative of the tanh-approximated GELU (exact constants, so it matches autograd)."""
    c = math.sqrt(2.0 / math.pi)
    tanh_out = torch.tanh(c * x * (1 + 0.044715 * x * x))
    slope = (1 - tanh_out * tanh_out) * (c + 3 * 0.044715 * c * x * x)
    return 0.5 * x * slope + 0.5 * (1 + tanh_out)


def _gelu(x: Tensor) -> Tensor:
    return F.gelu(x, approximate="tanh")


def ttt_dual(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    token_factor: Tensor,
    params: Params,
    ln_weight: Tensor,
    ln_bias: Tensor,
    *,
    mini_batch: int,
    lengths: Tensor | None = None,
) -> tuple[Tensor, Params]:
    """Mini-batch TTT in the dual form.

    Parameters
    ----------
    q, k, v : (B, H, L, f) queries, keys, values (RoPE already applied to q and k).
    lr : (B, H, L) per-token inner learning rates lr_j.
    token_factor : (b,) factors c_i (already clamped ≥ 0).
    params : the initial inner weights per row and head (keys W1, b1 and, for TTT-MLP, W2, b2).
    ln_weight, ln_bias : (H, f) the inner LayerNorm.
    mini_batch : b.
    lengths : (B,) optional valid length per row (right padding). A row is not computed in the
        mini-batches that start at or after its length: its z there is 0 and its params are
        those after its last mini-batch holding a valid token. Every earlier output is exactly
        what the full computation gives (causal), so only padding positions differ.

    Returns
    -------
    z : (B, H, L, f) outputs q_t + LN(f_{W_t}(q_t)).
    params : the inner weights after the last (zero-padded) mini-batch.
    """
    bsz, nh, seq, hd = q.shape
    if lengths is None:
        lengths = torch.full((bsz,), seq, dtype=torch.long, device=q.device)
    bad_range = bsz > 0 and not (int(lengths.min()) >= 0 and int(lengths.max()) <= seq)
    if lengths.shape != (bsz,) or bad_range:
        msg = f"ttt_dual: expected lengths of shape ({bsz},) in [0, {seq}], got {lengths.tolist()}"
        raise ValueError(msg)
    # longest first, so the rows whose history reaches mini-batch m are a prefix [:k_m]; the
    # others are dropped from the loop for good
    order = torch.argsort(lengths, descending=True, stable=True)
    permuted = not bool((order == torch.arange(bsz, device=order.device)).all())
    p = dict(params)
    if permuted:
        q, k, v, lr, lengths = (t[order] for t in (q, k, v, lr, lengths))
        p = {n: t[order] for n, t in p.items()}
    qm, km, vm, eta = _padded_mini_batches(q, k, v, lr, token_factor, mini_batch)
    nmb = qm.shape[2]
    starts = torch.arange(nmb, device=q.device) * mini_batch
    active = (lengths[None, :] > starts[:, None]).sum(1).tolist()
    outs, finished = [], []  # finished: the params of rows dropped out, shortest last
    for m, rows in enumerate(active):
        if rows < p["W1"].shape[0]:
            finished.append({n: t[rows:] for n, t in p.items()})
            p = {n: t[:rows] for n, t in p.items()}
        if rows == 0:
            outs.append(q.new_zeros(bsz, nh, (nmb - m) * mini_batch, hd))
            break
        out, p = _mini_batch_step(
            qm[:rows, :, m], km[:rows, :, m], vm[:rows, :, m], eta[:rows, :, m], p,
            ln_weight, ln_bias,
        )  # fmt: skip
        outs.append(F.pad(out, (0, 0, 0, 0, 0, 0, 0, bsz - rows)))
    z = torch.cat(outs, dim=2)[:, :, :seq]
    if finished:
        parts = [p, *reversed(finished)]
        p = {n: torch.cat([part[n] for part in parts]) for n in params}
    if permuted:
        inverse = torch.argsort(order)
        z, p = z[inverse], {n: t[inverse] for n, t in p.items()}
    return z, p


def _padded_mini_batches(
    q: Tensor, k: Tensor, v: Tensor, lr: Tensor, token_factor: Tensor, mini_batch: int
) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """q, k, v (B, H, M, b, f) zero-padded to M·b tokens and η (B, H, M, b, b) = c_i·lr_j, j ≤ i."""
    bsz, nh, seq, hd = q.shape
    pad = (-seq) % mini_batch
    if pad:
        q, k, v = (F.pad(t, (0, 0, 0, pad)) for t in (q, k, v))
        lr = F.pad(lr, (0, pad))
    nmb = (seq + pad) // mini_batch
    shape = (bsz, nh, nmb, mini_batch, hd)
    eta = token_factor[:, None] * lr.reshape(bsz, nh, nmb, 1, mini_batch)
    tri = torch.tril(torch.ones(mini_batch, mini_batch, dtype=torch.bool, device=q.device))
    return q.reshape(shape), k.reshape(shape), v.reshape(shape), eta.masked_fill(~tri, 0.0)


def _mini_batch_step(
    xq: Tensor, xk: Tensor, xv: Tensor, e: Tensor, p: Params, ln_weight: Tensor, ln_bias: Tensor
) -> tuple[Tensor, Params]:
    """One mini-batch: xq, xk, xv (B, H, b, f), η (B, H, b, b), W⁽ᵐ⁾ -> z (B, H, b, f), W⁽ᵐ⁺¹⁾."""
    mlp = "W2" in p
    target = xv - xk
    last = e[..., -1, :, None]  # (B, H, b, 1): η_{b j}
    if mlp:
        z1 = xk @ p["W1"] + p["b1"]
        x2 = _gelu(z1)
        z2 = x2 @ p["W2"] + p["b2"]
        g2 = ln_l2_grad(z2, target, ln_weight, ln_bias)
        g1 = (g2 @ p["W2"].transpose(-1, -2)) * gelu_tanh_grad(z1)
        z1_bar = xq @ p["W1"] - (e * (xq @ xk.transpose(-1, -2))) @ g1 + p["b1"] - e @ g1
        x2_bar = _gelu(z1_bar)
        out = x2_bar @ p["W2"] - (e * (x2_bar @ x2.transpose(-1, -2))) @ g2 + p["b2"] - e @ g2
        p = {
            "W1": p["W1"] - (last * xk).transpose(-1, -2) @ g1,
            "b1": p["b1"] - (last * g1).sum(-2, keepdim=True),
            "W2": p["W2"] - (last * x2).transpose(-1, -2) @ g2,
            "b2": p["b2"] - (last * g2).sum(-2, keepdim=True),
        }
    else:
        z1 = xk @ p["W1"] + p["b1"]
        g1 = ln_l2_grad(z1, target, ln_weight, ln_bias)
        out = xq @ p["W1"] - (e * (xq @ xk.transpose(-1, -2))) @ g1 + p["b1"] - e @ g1
        p = {
            "W1": p["W1"] - (last * xk).transpose(-1, -2) @ g1,
            "b1": p["b1"] - (last * g1).sum(-2, keepdim=True),
        }
    return xq + ln_fwd(out, ln_weight, ln_bias), p


def _inner(x: Tensor, p: Params) -> Tensor:
    h = x @ p["W1"] + p["b1"]
    if "W2" in p:
        h = _gelu(h) @ p["W2"] + p["b2"]
    return h


def ttt_naive(
    q: Tensor,
    k: Tensor,
    v: Tensor,
    lr: Tensor,
    token_factor: Tensor,
    params: Params,
    ln_weight: Tensor,
    ln_bias: Tensor,
    *,
    mini_batch: int,
) -> tuple[Tensor, Params]:
    """The per-token reference of `ttt_dual` (same arguments): explicit W_i, autograd gradients.

    A trailing partial mini-batch is processed as a shorter mini-batch (no padding), so the
    returned params equal `ttt_dual`'s only when L is a multiple of b. Slow; tests only.
    """
    seq = q.shape[2]
    names = sorted(params)
    p = {n: t.detach() for n, t in params.items()}
    outs = []
    for start in range(0, seq, mini_batch):
        size = min(mini_batch, seq - start)
        leaf = {n: t.clone().requires_grad_(True) for n, t in p.items()}
        grads = []
        for j in range(start, start + size):
            kj, vj = k[:, :, j : j + 1], v[:, :, j : j + 1]
            pred = ln_fwd(_inner(kj, leaf), ln_weight, ln_bias)
            loss = 0.5 * (pred - (vj - kj)).pow(2).sum()  # rows and heads hold separate W
            g = torch.autograd.grad(loss, [leaf[n] for n in names])
            grads.append(dict(zip(names, g, strict=True)))
        w_i: Params = {}
        for i in range(size):
            c = token_factor[i]
            w_i = {
                n: p[n]
                - c * sum(lr[:, :, start + j, None, None] * grads[j][n] for j in range(i + 1))
                for n in names
            }
            qi = q[:, :, start + i : start + i + 1]
            outs.append(qi + ln_fwd(_inner(qi, w_i), ln_weight, ln_bias))
        p = w_i
    return torch.cat(outs, dim=2), p


def rope(x: Tensor, positions: Tensor, theta: float) -> Tensor:
    """Rotary embedding (rotate-half convention) of x (B, H, L, f) at integer positions (L,)."""
    hd = x.shape[-1]
    inv = 1.0 / theta ** (torch.arange(0, hd, 2, device=x.device, dtype=torch.float64) / hd)
    ang = (positions.to(torch.float64)[:, None] * inv[None, :]).to(x.dtype)  # (L, f/2)
    cos, sin = torch.cat([ang.cos()] * 2, -1), torch.cat([ang.sin()] * 2, -1)
    half = hd // 2
    rotated = torch.cat([-x[..., half:], x[..., :half]], dim=-1)
    return x * cos + rotated * sin


def causal_depthwise_conv(x: Tensor, conv: nn.Conv1d) -> Tensor:
    """(B, L, D) → (B, L, D): a depthwise Conv1d with padding K−1, keeping the causal part."""
    seq = x.shape[1]
    return conv(x.transpose(1, 2))[..., :seq].transpose(1, 2)


class TTTLayer(nn.Module):
    """Q/K/V projections → RoPE (positions mod b) → mini-batch TTT (dual form) → LN → [gate] → O.

    Parameters
    ----------
    hidden_size, num_heads : D and H (f = D / H, even for RoPE).
    inner : "mlp" (TTT-MLP, f → 4f → f) or "linear" (TTT-Linear, f → f).
    mini_batch_size : b.
    rope_theta, ttt_base_lr, initializer_range : as in ttt-lm-pytorch (1000 in TTT4Rec, 1.0, 0.02).
    share_qk, use_gate, conv_kernel : the Mamba-backbone options (shared Q/K projection with
        separate causal depthwise convs for Q and K; a tanh-GELU output gate).
    """

    def __init__(
        self,
        hidden_size: int,
        num_heads: int,
        *,
        inner: InnerKind = "mlp",
        mini_batch_size: int = 8,
        rope_theta: float = 1000.0,
        ttt_base_lr: float = 1.0,
        initializer_range: float = 0.02,
        share_qk: bool = False,
        use_gate: bool = False,
        conv_kernel: int = 4,
    ) -> None:
        super().__init__()
        if hidden_size % num_heads or (hidden_size // num_heads) % 2:
            msg = f"hidden_size {hidden_size} / num_heads {num_heads} must be an even integer"
            raise ValueError(msg)
        d, self.nh = hidden_size, num_heads
        self.hd = hd = d // num_heads
        self.inner, self.b = inner, mini_batch_size
        self.rope_theta, self.base_lr, self.share_qk = rope_theta, ttt_base_lr, share_qk
        self.q_proj = nn.Linear(d, d, bias=False)
        if share_qk:
            self.conv_q = nn.Conv1d(d, d, conv_kernel, groups=d, padding=conv_kernel - 1)
            self.conv_k = nn.Conv1d(d, d, conv_kernel, groups=d, padding=conv_kernel - 1)
        else:
            self.k_proj = nn.Linear(d, d, bias=False)
        self.v_proj = nn.Linear(d, d, bias=False)
        self.o_proj = nn.Linear(d, d, bias=False)
        self.g_proj = nn.Linear(d, d, bias=False) if use_gate else None
        self.lr_weight = nn.Parameter(torch.empty(num_heads, d))
        self.lr_bias = nn.Parameter(torch.zeros(num_heads))
        self.token_bias = nn.Parameter(torch.zeros(mini_batch_size))  # δ (learnable_token_idx)
        self.register_buffer(
            "token_base", 1.0 / torch.arange(1, mini_batch_size + 1, dtype=torch.float32)
        )
        width = 4 * hd if inner == "mlp" else hd
        self.W1 = nn.Parameter(torch.empty(num_heads, hd, width))
        self.b1 = nn.Parameter(torch.zeros(num_heads, 1, width))
        if inner == "mlp":
            self.W2 = nn.Parameter(torch.empty(num_heads, width, hd))
            self.b2 = nn.Parameter(torch.zeros(num_heads, 1, hd))
        self.ttt_norm_weight = nn.Parameter(torch.ones(num_heads, hd))
        self.ttt_norm_bias = nn.Parameter(torch.zeros(num_heads, hd))
        self.post_norm = nn.LayerNorm(d, eps=1e-6)
        self.initializer_range = initializer_range

    @torch.no_grad()
    def reset_inner(self, gen: torch.Generator) -> None:
        """N(0, initializer_range) for W1/W2 and the learning-rate weights (ttt-lm-pytorch)."""
        std = self.initializer_range
        nn.init.normal_(self.W1, 0.0, std, generator=gen)
        if self.inner == "mlp":
            nn.init.normal_(self.W2, 0.0, std, generator=gen)
        nn.init.normal_(self.lr_weight, 0.0, std, generator=gen)

    def initial_params(self, batch_size: int) -> Params:
        """W₀ tiled per row: the inner model every sequence starts from."""
        names = ("W1", "b1", "W2", "b2") if self.inner == "mlp" else ("W1", "b1")
        return {n: getattr(self, n).unsqueeze(0).expand(batch_size, -1, -1, -1) for n in names}

    def qkv_lr(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor, Tensor, Tensor]:
        """q, k, v (B, H, L, f) with RoPE, lr (B, H, L) and token factors (b,) for input x."""
        bsz, seq, _ = x.shape
        if self.share_qk:
            xqk = self.q_proj(x)
            xq = causal_depthwise_conv(xqk, self.conv_q)
            xk = causal_depthwise_conv(xqk, self.conv_k)
        else:
            xq, xk = self.q_proj(x), self.k_proj(x)

        def heads(t: Tensor) -> Tensor:
            return t.reshape(bsz, seq, self.nh, self.hd).transpose(1, 2)

        pos = torch.arange(seq, device=x.device) % self.b
        q = rope(heads(xq), pos, self.rope_theta)
        k = rope(heads(xk), pos, self.rope_theta)
        v = heads(self.v_proj(x))
        lr = torch.sigmoid(torch.einsum("bld,hd->bhl", x, self.lr_weight) + self.lr_bias[:, None])
        lr = self.base_lr * lr / self.hd
        token_base = self.token_base
        assert isinstance(token_base, Tensor)
        factor = (token_base.to(x.dtype) + self.token_bias).clamp(min=0.0)
        return q, k, v, lr, factor

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        """(B, L, D) → (B, L, D); causal in L. Given `lengths` (right padding), the inner loop
        skips the mini-batches past each row's history (`ttt_dual`): only padding outputs change."""
        bsz, seq, d = x.shape
        q, k, v, lr, factor = self.qkv_lr(x)
        z, _ = ttt_dual(
            q, k, v, lr, factor, self.initial_params(bsz), self.ttt_norm_weight,
            self.ttt_norm_bias, mini_batch=self.b, lengths=lengths,
        )  # fmt: skip
        out = self.post_norm(z.transpose(1, 2).reshape(bsz, seq, d))
        if self.g_proj is not None:
            out = _gelu(self.g_proj(x)) * out
        return self.o_proj(out)


class SwiGLU(nn.Module):
    """down(SiLU(gate(x)) · up(x)), no biases (the ttt-lm-pytorch / Llama MLP)."""

    def __init__(self, hidden_size: int, intermediate_size: int) -> None:
        super().__init__()
        self.gate_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.up_proj = nn.Linear(hidden_size, intermediate_size, bias=False)
        self.down_proj = nn.Linear(intermediate_size, hidden_size, bias=False)

    def forward(self, x: Tensor) -> Tensor:
        return self.down_proj(F.silu(self.gate_proj(x)) * self.up_proj(x))


class TTTBlock(nn.Module):
    """ttt-lm-pytorch `Block`: [pre-conv residual] → RMSNorm → TTT → residual → RMSNorm → SwiGLU.

    `pre_conv` (Mamba backbone): x + causal depthwise conv(RMSNorm(x)) before the TTT sub-block.
    """

    def __init__(
        self, layer: TTTLayer, hidden_size: int, intermediate_size: int, *, pre_conv: bool,
        conv_kernel: int = 4, eps: float = 1e-6,
    ) -> None:  # fmt: skip
        super().__init__()
        d = hidden_size
        self.pre_conv = pre_conv
        if pre_conv:
            self.conv_norm = nn.RMSNorm(d, eps=eps)
            self.conv = nn.Conv1d(d, d, conv_kernel, groups=d, padding=conv_kernel - 1)
        self.seq_norm = nn.RMSNorm(d, eps=eps)
        self.ttt = layer
        self.ffn_norm = nn.RMSNorm(d, eps=eps)
        self.mlp = SwiGLU(d, intermediate_size)

    def forward(self, x: Tensor, lengths: Tensor | None = None) -> Tensor:
        if self.pre_conv:
            x = x + causal_depthwise_conv(self.conv_norm(x), self.conv)
        x = x + self.ttt(self.seq_norm(x), lengths)
        return x + self.mlp(self.ffn_norm(x))


def init_linear_embedding(module: nn.Module, std: float, gen: torch.Generator) -> None:
    """N(0, std) for every Linear/Embedding weight (zero biases), PyTorch-default for Conv1d."""
    with torch.no_grad():
        for sub in module.modules():
            if isinstance(sub, nn.Linear | nn.Embedding):
                nn.init.normal_(sub.weight, 0.0, std, generator=gen)
            if isinstance(sub, nn.Linear) and sub.bias is not None:
                sub.bias.zero_()
            if isinstance(sub, nn.Conv1d):
                bound = 1.0 / math.sqrt(sub.weight[0].numel())
                nn.init.uniform_(sub.weight, -bound, bound, generator=gen)
                if sub.bias is not None:
                    nn.init.uniform_(sub.bias, -bound, bound, generator=gen)
            if isinstance(sub, TTTLayer):
                sub.reset_inner(gen)
