"""TiM4Rec: a Mamba-2 (SSD) recommender whose step size Δ is modulated by normalised time gaps.

Reference: H. Fan et al., "TiM4Rec: An Efficient Sequential Recommendation Model Based on
Time-Aware Structured State Space Duality Model" (AlwaysFHao/TiM4Rec `ssd.py`, `tim4rec.py`;
docs/models.md, "TiM4Rec"). Item embedding → Dropout → LayerNorm(1e-12) → num_layers × [time-aware
SSD layer → LN(Dropout(h) [+ x when num_layers > 1]) → FFN (4d, Hardswish, residual + LN)] → the
last valid position → scores ·Eᵀ; CE.

Time-aware SSD layer (Mamba-2 mixer: in_proj [z | x B C | dt] with bias, causal depthwise conv +
SiLU over xBC, SSD scan, D skip, gated RMSNorm, out_proj), with

    g_t = log1p(max(t_t − t_{t−1}, 0)) for t ≥ 2, g_1 = 0        (gaps in seconds, per row)
    ĝ_t = (g_t − mean(g_1..g_t)) / sqrt(var(g_1..g_t) + eps)      (causal standardisation)
    s_t = Linear(H → H)(SiLU(Linear(1 → H)(ĝ_t)))                 (time scale per head)
    τ_t = SiLU(causal depthwise conv over positions (kernel d_conv) of ĝ_t · s_t)
    Δ_t = softplus(dt_raw_t · τ_t + dt_bias)                      (0 on padding)

Simplifications against the reference code (also in docs/models.md, "TiM4Rec"): the reference
standardises the raw gaps with a LayerNorm over the whole max_len window and computes the time
scale with Linear(L → L) MLPs over the *sequence axis*, which mixes positions non-causally; here the
gaps are log1p-compressed, standardised with running (causal) statistics over the valid prefix,
and the time scale is a per-position MLP, so every position sees only its past. One causal conv
over positions instead of two, and the sigmoid-gated gap vector the reference passes to the next
layer is not reproduced (every layer reads the same ĝ). The request time t_{n+1} is not used,
as in the reference.

Glossary: B batch, L history length, D d_model, E d_inner = expand·D, H heads, P headdim,
N d_state.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from models.registry import register
from models.ssd import ssd_chunked, ssd_step
from models.ttt import causal_depthwise_conv
from models.ttt4rec import gather_last
from streamsim.errors import ModelError


@dataclass(frozen=True)
class TiM4RecConfig:
    max_len: int = 50  # L
    d_model: int = 64  # D
    num_layers: int = 2
    d_state: int = 32  # N
    d_conv: int = 4  # causal conv kernel (xBC and the time path)
    expand: int = 2
    headdim: int = 32  # P, so H = expand·D / P (4 at the defaults)
    chunk: int = 32  # SSD chunk length; a speed knob only
    dropout: float = 0.2
    time_dropout: float = 0.2  # dropout on the gaps before standardisation
    layer_norm_eps: float = 1e-12
    gap_eps: float = 1e-5  # eps of the causal gap standardisation
    seed: int = 0  # owned init RNG

    def __post_init__(self) -> None:
        keys = ("max_len", "d_model", "num_layers", "d_state", "d_conv", "expand", "headdim")
        for key in (*keys, "chunk"):
            if getattr(self, key) < 1:
                msg = f"tim4rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if (self.expand * self.d_model) % self.headdim:
            msg = f"tim4rec: expand·d_model = {self.expand * self.d_model} must be a multiple "
            msg += f"of headdim {self.headdim}"
            raise ModelError(msg)
        if not (0 <= self.dropout < 1 and 0 <= self.time_dropout < 1 and self.gap_eps > 0):
            msg = "tim4rec: need 0 <= dropout, time_dropout < 1 and gap_eps > 0, got "
            msg += f"{self.dropout}, {self.time_dropout}, {self.gap_eps}"
            raise ModelError(msg)


def gap_features(
    times: Tensor, lengths: Tensor, eps: float, drop: nn.Module
) -> tuple[Tensor, Tensor, Tensor]:
    """(B, L) float64 ĝ (0 on padding) and the running sums Σg, Σg² (B,) over each history."""
    seq = times.shape[1]
    pos = torch.arange(seq, device=times.device)
    valid = pos[None, :] < lengths[:, None]
    diff = (times[:, 1:] - times[:, :-1]).clamp(min=0)
    gaps = F.pad(torch.log1p(diff.to(torch.float64)), (1, 0))  # g_1 = 0 (float64 sums)
    gaps = drop(torch.where(valid, gaps, 0.0))
    count = (pos + 1).to(gaps.dtype)[None, :]
    s1, s2 = gaps.cumsum(1), gaps.pow(2).cumsum(1)
    mean = s1 / count
    var = (s2 / count - mean.pow(2)).clamp(min=0.0)
    g_hat = torch.where(valid, (gaps - mean) / torch.sqrt(var + eps), 0.0)
    rows = torch.arange(times.shape[0], device=times.device)
    last = (lengths - 1).clamp(min=0)
    has = lengths > 0
    return g_hat, torch.where(has, s1[rows, last], 0.0), torch.where(has, s2[rows, last], 0.0)


def standardised_gaps(times: Tensor, lengths: Tensor, eps: float, drop: nn.Module) -> Tensor:
    """(B, L) float64 ĝ: log1p gaps standardised by running (causal) mean/std; 0 on padding."""
    return gap_features(times, lengths, eps, drop)[0]


class LayerState(NamedTuple):
    """One time-aware SSD layer's recurrent state after n events."""

    conv_state: Tensor  # (B, X, K−1) pre-conv xBC rows of the last K−1 events, oldest first
    time_state: Tensor  # (B, H, K−1) pre-conv ĝ·s rows of the last K−1 events
    ssm_state: Tensor  # (B, H, P, N)


class TiM4RecState(NamedTuple):
    """What `step` consumes and returns."""

    layers: tuple[LayerState, ...]
    last_time: Tensor  # (B,) int64 t_n (0 when n = 0)
    length: Tensor  # (B,) int64 n
    gap_sum: Tensor  # (B,) float64 Σ g over the history
    gap_sq_sum: Tensor  # (B,) float64 Σ g²


def _tail_rows(rows: Tensor, lengths: Tensor, k: int) -> Tensor:
    """(B, L, C) per-position rows → (B, C, k): rows n−k..n−1 of each history (zeros before 0)."""
    padded = F.pad(rows, (0, 0, k, 0))
    idx = lengths[:, None] + torch.arange(k, device=rows.device)
    batch = torch.arange(rows.shape[0], device=rows.device)[:, None]
    return padded[batch, idx].transpose(1, 2)


def _conv_step(window: Tensor, conv: nn.Conv1d) -> Tensor:
    """The causal depthwise conv's output for the newest column of window (B, C, K)."""
    assert conv.bias is not None
    return (window * conv.weight.squeeze(1)).sum(-1) + conv.bias


class TimeAwareSSD(nn.Module):
    """The Mamba-2 mixer with the time-modulated Δ (see the module docstring)."""

    def __init__(self, cfg: TiM4RecConfig) -> None:
        super().__init__()
        d, n = cfg.d_model, cfg.d_state
        self.cfg = cfg
        self.d_inner = e = cfg.expand * d
        self.nheads = h = e // cfg.headdim
        self.conv_dim = e + 2 * n
        self.in_proj = nn.Linear(d, 2 * e + 2 * n + h, bias=True)
        k = cfg.d_conv
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, k, groups=self.conv_dim, padding=k - 1
        )
        self.time_in = nn.Linear(1, h)
        self.time_out = nn.Linear(h, h)
        self.time_conv = nn.Conv1d(h, h, k, groups=h, padding=k - 1)
        self.dt_bias = nn.Parameter(torch.empty(h))
        self.A_log = nn.Parameter(torch.empty(h))
        self.D = nn.Parameter(torch.ones(h))
        self.norm = nn.RMSNorm(e, eps=1e-5)
        self.out_proj = nn.Linear(e, d, bias=True)

    @torch.no_grad()
    def reset_ssm(self, gen: torch.Generator) -> None:
        """Mamba-2 init of dt_bias (inverse softplus of U-log[1e-3, 1e-1]) and A = −U[1, 16]."""
        u = torch.rand(self.nheads, generator=gen)
        dt0 = torch.exp(u * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias.copy_(dt0 + torch.log(-torch.expm1(-dt0)))
        self.A_log.copy_(torch.log(1.0 + 15.0 * torch.rand(self.nheads, generator=gen)))
        self.D.fill_(1.0)

    def forward(
        self, u: Tensor, gaps: Tensor, valid: Tensor, lengths: Tensor
    ) -> tuple[Tensor, LayerState]:
        """u (B, L, D), ĝ (B, L), valid (B, L) → (B, L, D) and the state after each history."""
        e, n, k = self.d_inner, self.cfg.d_state, self.cfg.d_conv - 1
        proj = self.in_proj(u)
        z, xbc_in, dt_raw = (
            proj[..., :e], proj[..., e : e + self.conv_dim], proj[..., -self.nheads :]
        )  # fmt: skip
        xbc = F.silu(causal_depthwise_conv(xbc_in, self.conv1d))
        x, bm, cm = xbc[..., :e], xbc[..., e : e + n], xbc[..., e + n :]
        g = gaps.unsqueeze(-1).to(u.dtype)  # (B, L, 1)
        gs = g * self.time_out(F.silu(self.time_in(g)))  # (B, L, H): ĝ · time scale
        tau = F.silu(causal_depthwise_conv(gs, self.time_conv))
        dt = F.softplus(dt_raw * tau + self.dt_bias) * valid.unsqueeze(-1).to(u.dtype)
        xh = x.unflatten(-1, (self.nheads, -1))  # (B, L, H, P)
        y, h_n = ssd_chunked(xh, dt, -torch.exp(self.A_log), bm, cm, chunk=self.cfg.chunk)
        y = y + self.D[:, None] * xh
        state = LayerState(_tail_rows(xbc_in, lengths, k), _tail_rows(gs, lengths, k), h_n)
        return self.out_proj(self.norm(y.flatten(-2) * F.silu(z))), state

    def step(self, u: Tensor, g: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        """One event: u (B, D), ĝ (B,) → (B, D) and the new state (matches `forward`)."""
        e, n = self.d_inner, self.cfg.d_state
        proj = self.in_proj(u)
        z, xbc_in, dt_raw = (
            proj[..., :e], proj[..., e : e + self.conv_dim], proj[..., -self.nheads :]
        )  # fmt: skip
        window = torch.cat([state.conv_state, xbc_in.unsqueeze(-1)], dim=-1)
        xbc = F.silu(_conv_step(window, self.conv1d))
        x, bm, cm = xbc[..., :e], xbc[..., e : e + n], xbc[..., e + n :]
        g1 = g.unsqueeze(-1).to(u.dtype)  # (B, 1)
        gs = g1 * self.time_out(F.silu(self.time_in(g1)))  # (B, H)
        t_window = torch.cat([state.time_state, gs.unsqueeze(-1)], dim=-1)
        tau = F.silu(_conv_step(t_window, self.time_conv))
        dt = F.softplus(dt_raw * tau + self.dt_bias)
        xh = x.unflatten(-1, (self.nheads, -1))  # (B, H, P)
        y, h = ssd_step(xh, dt, -torch.exp(self.A_log), bm, cm, state.ssm_state)
        y = y + self.D[:, None] * xh
        out = self.out_proj(self.norm(y.flatten(-2) * F.silu(z)))
        return out, LayerState(window[..., 1:], t_window[..., 1:], h)


class TiM4RecLayer(nn.Module):
    """Mixer → LN(Dropout(h) [+ x]) → FFN(Hardswish) with residual + LN (Mamba4Rec layout)."""

    def __init__(self, cfg: TiM4RecConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.residual = cfg.num_layers > 1
        self.mixer = TimeAwareSSD(cfg)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, 4 * d)
        self.ffn_out = nn.Linear(4 * d, d)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def _rest(self, x: Tensor, mixed: Tensor) -> Tensor:
        h = self.dropout(mixed)
        h = self.norm(h + x if self.residual else h)
        ffn = self.dropout(self.ffn_out(self.dropout(F.hardswish(self.ffn_in(h)))))
        return self.ffn_norm(ffn + h)

    def forward(
        self, x: Tensor, gaps: Tensor, valid: Tensor, lengths: Tensor
    ) -> tuple[Tensor, LayerState]:
        mixed, state = self.mixer(x, gaps, valid, lengths)
        return self._rest(x, mixed), state

    def step(self, x: Tensor, g: Tensor, state: LayerState) -> tuple[Tensor, LayerState]:
        mixed, state = self.mixer.step(x, g, state)
        return self._rest(x, mixed), state


@register("tim4rec", TiM4RecConfig, "TiM4Rec: time-aware SSD (Δ modulated by normalised gaps)")
class TiM4Rec(Recommender):
    def __init__(self, *, n_items: int, config: TiM4RecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        d = cfg.d_model
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.time_dropout = nn.Dropout(cfg.time_dropout)
        self.layers = nn.ModuleList(TiM4RecLayer(cfg) for _ in range(cfg.num_layers))
        self._init_weights(torch.Generator().manual_seed(cfg.seed))

    @torch.no_grad()
    def _init_weights(self, gen: torch.Generator) -> None:
        """N(0, 0.02) Linear/Embedding (zero bias), Kaiming-uniform convs, Mamba-2 Δ/A init."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02, generator=gen)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
            if isinstance(module, nn.Conv1d):
                bound = 1.0 / math.sqrt(module.weight[0].numel())
                nn.init.uniform_(module.weight, -bound, bound, generator=gen)
                assert module.bias is not None
                nn.init.uniform_(module.bias, -bound, bound, generator=gen)
            if isinstance(module, TimeAwareSSD):
                module.reset_ssm(gen)
        self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> tuple[Tensor, TiM4RecState]:
        """User representations (B, D) at the last valid position and the state after them."""
        items, times, lengths = batch.items, batch.times, batch.lengths
        if items.shape[1] == 0:
            items, times = items.new_zeros(items.shape[0], 1), times.new_zeros(times.shape[0], 1)
        valid = torch.arange(items.shape[1], device=items.device) < lengths[:, None]
        x = self.emb_norm(self.emb_dropout(self.item_emb(items * valid)))
        g_hat, s1, s2 = gap_features(times, lengths, self.config.gap_eps, self.time_dropout)
        gaps = g_hat.to(x.dtype)
        states = []
        for layer in self.layers:
            x, st = layer(x, gaps, valid, lengths)
            states.append(st)
        rows = torch.arange(items.shape[0], device=items.device)
        last_time = torch.where(lengths > 0, times[rows, (lengths - 1).clamp(min=0)], 0)
        state = TiM4RecState(tuple(states), last_time, lengths, s1, s2)
        return gather_last(x, lengths), state

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> TiM4RecState:
        """The state of empty histories."""
        ref = self.item_emb.weight
        dev, dt = device or ref.device, dtype or ref.dtype
        cfg, k = self.config, self.config.d_conv - 1
        layers = []
        for layer in self.layers:
            assert isinstance(layer, TiM4RecLayer)
            mix = layer.mixer
            layers.append(
                LayerState(
                    torch.zeros(batch_size, mix.conv_dim, k, device=dev, dtype=dt),
                    torch.zeros(batch_size, mix.nheads, k, device=dev, dtype=dt),
                    torch.zeros(
                        batch_size, mix.nheads, cfg.headdim, cfg.d_state, device=dev, dtype=dt
                    ),
                )
            )
        zeros = torch.zeros(batch_size, dtype=torch.long, device=dev)
        sums = torch.zeros(batch_size, dtype=torch.float64, device=dev)
        return TiM4RecState(tuple(layers), zeros, zeros.clone(), sums, sums.clone())

    def step(self, item: Tensor, time: Tensor, state: TiM4RecState) -> tuple[Tensor, TiM4RecState]:
        """Append one event per row (item (B,), time (B,)); returns (B, D) and the new state.

        Matches `forward` on the history extended by that event (eval mode: no dropout).
        """
        time = time.to(torch.long)
        n = state.length
        diff = (time - state.last_time).clamp(min=0).to(torch.float64)
        g = torch.where(n > 0, torch.log1p(diff), 0.0)
        s1, s2 = state.gap_sum + g, state.gap_sq_sum + g * g
        count = (n + 1).to(torch.float64)
        mean = s1 / count
        var = (s2 / count - mean * mean).clamp(min=0.0)
        g_hat = (g - mean) / torch.sqrt(var + self.config.gap_eps)
        x = self.emb_norm(self.emb_dropout(self.item_emb(item)))
        gaps = g_hat.to(x.dtype)
        layers = []
        for layer, st in zip(self.layers, state.layers, strict=True):
            assert isinstance(layer, TiM4RecLayer)
            x, st = layer.step(x, gaps, st)
            layers.append(st)
        return x, TiM4RecState(tuple(layers), time, n + 1, s1, s2)
