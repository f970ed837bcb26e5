"""Mamba4Rec: item embedding → Mamba-1 layers (selective SSM) → FFN → last position → dot scores.

Reference: C. Liu et al., "Mamba4Rec: Towards Efficient Sequential Recommendation with Selective
State Space Models" (arXiv 2403.03900); semantics of chengkai-liu/Mamba4Rec `mamba4rec.py` and
`config.yaml` as summarised in docs/baselines.md (code written here, not copied):

- embedding (padding 0) → Dropout → LayerNorm(eps 1e-12) → N × MambaLayer → gather position n−1;
- MambaLayer: h = Mamba(x) (Mamba-1: d_state 32, d_conv 4, expand 2); with one layer
  h = LN(Dropout(h)) **without residual**, otherwise LN(Dropout(h) + x); then
  FFN: Linear(d→4d) → GELU → Dropout → Linear(4d→d) → Dropout → LN(· + h);
- scores o_n·Eᵀ, CE over the whole catalogue.
- `_init_weights` quirk (`faithful_init`): every nn.Linear — Mamba's `dt_proj` included — is
  re-initialised N(0, 0.02) with zero bias, so Δ starts near softplus(0) ≈ 0.69 instead of
  Mamba's inverse-softplus dt init in [1e-3, 0.1].

Streaming additions (not in Mamba4Rec): positions beyond `lengths` are masked (Δ = 0, item 0) so
the final state equals h_n of the real history, an empty history gives a zero mixer output, and
`step()` appends one event with an explicit (conv, ssm) state per layer.

Glossary: B batch, L history length, D d_model, E d_inner = expand·D, N d_state, K d_conv,
R dt_rank = ceil(D/16).
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
from models.selective_scan import selective_scan, selective_scan_step
from streamsim.errors import ModelError


@dataclass(frozen=True)
class Mamba4RecConfig:
    max_len: int = 50  # L: 50 for Amazon, 200 for ML-1M in Mamba4Rec's config
    d_model: int = 64  # hidden_size (D)
    num_layers: int = 1  # Mamba4Rec default; TiM4Rec's copy uses 2
    dropout: float = 0.2  # dropout_prob
    d_state: int = 32  # N
    d_conv: int = 4  # K
    expand: int = 2  # E = expand·D
    layer_norm_eps: float = 1e-12
    faithful_init: bool = True  # Mamba4Rec `_init_weights`: re-init every Linear incl. dt_proj

    def __post_init__(self) -> None:
        for key in ("max_len", "d_model", "num_layers", "d_state", "d_conv", "expand"):
            if getattr(self, key) < 1:
                msg = f"mamba4rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if not 0 <= self.dropout < 1:
            msg = f"mamba4rec: `dropout` must be in [0, 1), got {self.dropout}"
            raise ModelError(msg)


class MambaLayerState(NamedTuple):
    conv_state: Tensor  # (B, E, K-1) pre-conv x of the last K-1 events, oldest first (0 before 1)
    ssm_state: Tensor  # (B, E, N) h_n


class Mamba1(nn.Module):
    """The Mamba-1 mixer (mamba_simple.Mamba without the fused kernels), one token or a sequence."""

    def __init__(self, d_model: int, d_state: int, d_conv: int, expand: int) -> None:
        super().__init__()
        self.d_inner = e = expand * d_model
        self.d_state, self.d_conv = d_state, d_conv
        self.dt_rank = math.ceil(d_model / 16)
        self.in_proj = nn.Linear(d_model, 2 * e, bias=False)  # x | z
        self.conv1d = nn.Conv1d(e, e, d_conv, groups=e, padding=d_conv - 1)
        self.x_proj = nn.Linear(e, self.dt_rank + 2 * d_state, bias=False)  # dt_low | B | C
        self.dt_proj = nn.Linear(self.dt_rank, e, bias=True)
        self.out_proj = nn.Linear(e, d_model, bias=False)
        # S4D-real init: A = −(1..N) per channel; D = 1
        a = torch.arange(1, d_state + 1, dtype=torch.float32).repeat(e, 1)  # (E, N)
        self.A_log = nn.Parameter(torch.log(a))
        self.D = nn.Parameter(torch.ones(e))
        self._mamba_dt_init()

    @torch.no_grad()
    def _mamba_dt_init(self, dt_min: float = 1e-3, dt_max: float = 0.1) -> None:
        """Mamba-1's dt_proj init: weight U(±R^-1/2), bias = softplus⁻¹(log-uniform dt)."""
        std = self.dt_rank**-0.5
        nn.init.uniform_(self.dt_proj.weight, -std, std)
        u = torch.rand(self.d_inner)
        dt = torch.exp(u * (math.log(dt_max) - math.log(dt_min)) + math.log(dt_min))
        dt = dt.clamp(min=1e-4)
        self.dt_proj.bias.copy_(dt + torch.log(-torch.expm1(-dt)))

    def _A(self) -> Tensor:
        return -torch.exp(self.A_log)  # (E, N)

    def _ssm_inputs(self, x: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        """Post-conv x (..., E) -> Δ (..., E), B (..., N), C (..., N)."""
        dt_low, bm, cm = self.x_proj(x).split([self.dt_rank, self.d_state, self.d_state], -1)
        return F.softplus(self.dt_proj(dt_low)), bm, cm

    def forward(self, u: Tensor, valid: Tensor) -> tuple[Tensor, MambaLayerState]:
        """u (B, L, D), valid (B, L) bool -> (B, L, D) and the state after the valid prefix."""
        bsz, seq, _ = u.shape
        x, z = self.in_proj(u).chunk(2, dim=-1)  # (B, L, E) each
        xc = F.silu(self.conv1d(x.transpose(1, 2))[..., :seq].transpose(1, 2))  # causal
        dt, bm, cm = self._ssm_inputs(xc)
        lengths = valid.sum(1)
        # Δ = 0 on padding (the scan's `lengths`): the state carries h_n to the end, and the
        # positions past each history are not scanned
        y, h_n = selective_scan(xc, dt, self._A(), bm, cm, self.D, z, lengths=lengths)
        k = self.d_conv - 1  # pre-conv rows n−K+1..n−1 (zeros before the first event)
        padded = F.pad(x, (0, 0, k, 0))  # (B, K−1+L, E)
        rows = torch.arange(bsz, device=u.device)[:, None]
        conv_state = padded[rows, lengths[:, None] + torch.arange(k, device=u.device)]
        return self.out_proj(y), MambaLayerState(conv_state.transpose(1, 2), h_n)

    def step(self, u: Tensor, state: MambaLayerState) -> tuple[Tensor, MambaLayerState]:
        """One token u (B, D) -> (B, D) and the new state."""
        x, z = self.in_proj(u).chunk(2, dim=-1)
        window = torch.cat([state.conv_state, x.unsqueeze(-1)], dim=-1)  # (B, E, K)
        assert self.conv1d.bias is not None
        xc = F.silu((window * self.conv1d.weight.squeeze(1)).sum(-1) + self.conv1d.bias)
        dt, bm, cm = self._ssm_inputs(xc)
        y, h = selective_scan_step(xc, dt, self._A(), bm, cm, state.ssm_state, self.D, z)
        conv_state = torch.cat([state.conv_state[..., 1:], x.unsqueeze(-1)], dim=-1)
        return self.out_proj(y), MambaLayerState(conv_state, h)


class MambaLayer(nn.Module):
    """Mamba1 → dropout → LN (residual only with > 1 layer) → FFN with residual + LN."""

    def __init__(self, cfg: Mamba4RecConfig) -> None:
        super().__init__()
        d = cfg.d_model
        self.residual = cfg.num_layers > 1
        self.mamba = Mamba1(d, cfg.d_state, cfg.d_conv, cfg.expand)
        self.dropout = nn.Dropout(cfg.dropout)
        self.norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, 4 * d)
        self.ffn_out = nn.Linear(4 * d, d)
        self.ffn_dropout = nn.Dropout(cfg.dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def _post(self, mixed: Tensor, x: Tensor) -> Tensor:
        h = self.dropout(mixed)
        h = self.norm(h + x if self.residual else h)
        hidden = self.ffn_out(self.ffn_dropout(F.gelu(self.ffn_in(h))))
        return self.ffn_norm(self.ffn_dropout(hidden) + h)

    def forward(self, x: Tensor, valid: Tensor) -> tuple[Tensor, MambaLayerState]:
        mixed, state = self.mamba(x, valid)
        mixed = mixed * valid.unsqueeze(-1)  # an empty history has a zero mixer output
        return self._post(mixed, x), state

    def step(self, x: Tensor, state: MambaLayerState) -> tuple[Tensor, MambaLayerState]:
        mixed, state = self.mamba.step(x, state)
        return self._post(mixed, x), state


class Mamba4RecState(NamedTuple):
    layers: tuple[MambaLayerState, ...]
    length: Tensor  # (B,) int64 n


@register("mamba4rec", Mamba4RecConfig, "Mamba4Rec: Mamba-1 selective SSM layers + FFN (RecBole)")
class Mamba4Rec(Recommender):
    def __init__(self, *, n_items: int, config: Mamba4RecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        self.item_emb = nn.Embedding(n_items + 1, cfg.d_model, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(cfg.d_model, eps=cfg.layer_norm_eps)
        self.layers = nn.ModuleList(MambaLayer(cfg) for _ in range(cfg.num_layers))
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        """Mamba4Rec's `_init_weights`: N(0, 0.02) Embedding and Linear weights, zero biases.

        With `faithful_init` (default) this reaches the Mamba mixer's Linears too (the quirk: the
        dt_proj bias becomes 0); otherwise the mixers keep Mamba-1's own init.
        """
        nn.init.normal_(self.item_emb.weight, 0.0, 0.02)
        self.item_emb.weight[0].zero_()  # padding row (never scored; column 0 is −inf)
        mixer = {id(m) for layer in self._mamba_layers() for m in layer.mamba.modules()}
        for module in self.modules():
            if isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            elif isinstance(module, nn.Linear):
                if id(module) in mixer and not self.config.faithful_init:
                    continue
                nn.init.normal_(module.weight, 0.0, 0.02)
                if module.bias is not None:
                    nn.init.zeros_(module.bias)

    def _mamba_layers(self) -> list[MambaLayer]:
        return [layer for layer in self.layers if isinstance(layer, MambaLayer)]

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def _embed(self, items: Tensor) -> Tensor:
        return self.emb_norm(self.emb_dropout(self.item_emb(items)))

    def forward(self, batch: SeqBatch) -> tuple[Tensor, Mamba4RecState]:
        """User representations o_n (B, D) and the per-layer state after each history."""
        items, lengths = batch.items, batch.lengths
        if items.shape[1] == 0:  # an all-empty batch: one padded column keeps shapes valid
            items = items.new_zeros(items.shape[0], 1)
        valid = torch.arange(items.shape[1], device=items.device) < lengths[:, None]  # (B, L)
        x = self._embed(items * valid)  # positions beyond the history read item 0
        states = []
        for layer in self._mamba_layers():
            x, st = layer(x, valid)
            states.append(st)
        rows = torch.arange(items.shape[0], device=items.device)
        o_n = x[rows, (lengths - 1).clamp(min=0)]
        if bool((lengths == 0).any()):
            o_n = torch.where((lengths > 0)[:, None], o_n, self._empty_output(x))
        return o_n, Mamba4RecState(tuple(states), lengths)

    def _empty_output(self, ref: Tensor) -> Tensor:
        """The representation of an empty history: every mixer output is 0 (1, D)."""
        x = self._embed(torch.zeros(1, dtype=torch.long, device=ref.device))
        for layer in self._mamba_layers():
            x = layer._post(torch.zeros_like(x), x)
        return x

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Mamba4RecState:
        """The state of empty histories."""
        ref = self.item_emb.weight
        dev, dt = device or ref.device, dtype or ref.dtype
        cfg = self.config
        e = cfg.expand * cfg.d_model
        layers = tuple(
            MambaLayerState(
                torch.zeros(batch_size, e, cfg.d_conv - 1, device=dev, dtype=dt),
                torch.zeros(batch_size, e, cfg.d_state, device=dev, dtype=dt),
            )
            for _ in range(cfg.num_layers)
        )
        return Mamba4RecState(layers, torch.zeros(batch_size, dtype=torch.long, device=dev))

    def step(
        self, item: Tensor, time: Tensor, state: Mamba4RecState
    ) -> tuple[Tensor, Mamba4RecState]:
        """Append one event per row (item (B,), time (B,) unused); o_{n+1} (B, D), new state."""
        x = self._embed(item)
        new = []
        for layer, st in zip(self._mamba_layers(), state.layers, strict=True):
            x, st = layer.step(x, st)
            new.append(st)
        return x, Mamba4RecState(tuple(new), state.length + 1)
