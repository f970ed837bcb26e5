"""T2ARec: a Mamba-2 (SSD) sequential recommender with two test-time alignment losses.

Reference: Y. Zhang et al., "Test-Time Alignment for Tracking User Interest Shifts in Sequential
Recommendation" (RecSys'25, arXiv 2504.01489), §4. There is no public code; the recipe and every
ambiguity (A1–A19), with the reading chosen for each, are in docs/models.md.

Pipeline: item embedding → dropout → LayerNorm → T2A-Mamba block (Linear1 → causal depthwise conv
over the x|B|C channels → SiLU; Δ = softplus(dt_raw + dt_bias); A = −exp(A_log)) → SSD scan →
LN(dropout(y)) → FFN (4d, GELU, residual + LN) → o_n (last valid position) → scores o_n·Eᵀ.

Alignment losses (label-free, inputs only), built on Transform(o_n): o_n re-fed as token n+1
through Linear1 and the conv (cached conv state, A2) gives x_{n+1}, B_{n+1}, Δ_{n+1}:
- L_time: pairwise hinge max(0, 1 − (Δ_i − Δ_j)(T_i − T_j)/λ) inside end-aligned blocks of b
  positions over 2..n+1, T_{n+1} = request time − t_n, divided by the number of valid pairs.
- L_state: ‖h_n − h̃ᵇ_n‖_F / Δ_{n+1}², h̃_{n+1} = e^{Δ_{n+1}A} h_n + Δ_{n+1} x_{n+1} ⊗ B_{n+1},
  h̃ᵇ_n = e^{Δ_{n+1}P} h̃_{n+1} + Δ_{n+1} x_n ⊗ Linear2(x_n).

The default deviates from that L_state (docs/models.md, "Alignment losses that cannot be
satisfied trivially"): the paper's version is lowered for every user at once by inflating
Δ_{n+1}, which collapses o_n onto one shared vector. By default L_state sees Δ_{n+1} detached
and clamped into the history's range and h_n, x_n as fixed targets, divides the distance by the
sum of its three terms' norms (a ratio in [0, 1] that no term can lower by shrinking or
growing), and is weighted μ2 = 0.1. The literal reading stays one config away.

Glossary: B batch, L history length, D d_model, E d_inner, H heads, P head dim (E = H·P),
N d_state, K d_conv, X = E + 2N conv channels. States are stored (P, N) per head (mamba_ssm
layout), i.e. the transpose of the paper's h ∈ R^{N×d}; the Frobenius norm is the same.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models import ssd_backend
from models.base import Recommender, SeqBatch, sum_terms
from models.registry import register
from models.ssd import ssd_step
from streamsim.errors import ModelError


@dataclass(frozen=True)
class T2ARecConfig:
    max_len: int = 50  # L: longest history fed to the model
    d_model: int = 64  # d
    d_state: int = 32  # d_s (N)
    d_conv: int = 4  # causal conv kernel width (K)
    dropout: float = 0.2  # embedding / post-SSM / FFN dropout
    chunk: int = 50  # SSD chunk length (Q); a speed knob only
    layer_norm_eps: float = 1e-12  # Mamba4Rec / RecBole LayerNorm eps
    block: Literal["literal", "mamba2_full"] = "literal"  # A1: 1 head, expand 1, no gate/D/out_proj
    expand: int = 2  # A1 mamba2_full only: E = expand·d
    headdim: int = 64  # A1 mamba2_full only: P, so H = E / P
    refeed_conv: Literal["cached", "fresh"] = "cached"  # A2: conv state used by Transform(o_n)
    time_scale_s: float = 86400.0  # λ (A4): seconds per unit of T in the hinge
    time_block: int = 50  # b (A5): block size of the pairwise hinge
    drop_tied_pairs: bool = False  # A7: drop pairs with T_i = T_j from the loss and the count
    p_mode: Literal["learnable", "theorem"] = "learnable"  # A9: learnable P (init 0) or P̄ = −1/A
    state_norm: Literal["frobenius", "squared"] = "frobenius"  # A10: ‖·‖_F or ‖·‖_F²
    detach_dilution: bool = False  # A11: stop the gradient through the Δ_{n+1}^{-2} weight
    freeze_embeddings_at_test: bool = False  # A13: no test-time update of the item table
    mu_time_train: float = 0.1  # μ1 (train)
    mu_state_train: float = 0.1  # μ2 (train); the paper's 1.0 with its L_state collapses
    # T2ARec on ML-100k (docs/models.md, "Alignment losses that cannot be satisfied trivially")
    mu_time_test: float = 0.01  # μ1' (test-time)
    mu_state_test: float = 0.1  # μ2' (test-time)
    delta_min: float = 1e-4  # clamp of Δ_{n+1} in the dilution weight
    p_delta_max: float = 20.0  # clamp of P·Δ_{n+1} before exp
    # Deviations from the paper (docs/models.md, "Alignment losses that cannot be satisfied
    # trivially"). The paper's literal reading: mu_state_train=1.0, state_loss="dilution",
    # state_delta="live", state_target="live", time_scale="fixed".
    state_loss: Literal["dilution", "relative", "triangle"] = "triangle"  # normaliser of ‖·‖
    state_delta: Literal["live", "detached_clamped"] = "detached_clamped"  # Δ_{n+1} in L_state
    state_eps: float = 1e-3  # ε of the relative and triangle normalisers
    state_target: Literal["live", "detached"] = "detached"  # h_n, x_n in L_state: no gradient
    time_scale: Literal["fixed", "gap_quantile", "standardized"] = "fixed"  # λ of L_time
    time_quantile: float = 0.5  # gap_quantile: λ = this quantile of the batch's positive gaps
    backend: Literal["auto", "torch", "mamba_ssm"] = "auto"  # SSD scan backend (models.ssd_backend)
    seed: int = 0  # owned init RNG (torch.Generator); dropout uses torch's default RNG

    def __post_init__(self) -> None:
        choices = {
            "block": ("literal", "mamba2_full"),
            "refeed_conv": ("cached", "fresh"),
            "p_mode": ("learnable", "theorem"),
            "state_norm": ("frobenius", "squared"),
            "state_loss": ("dilution", "relative", "triangle"),
            "state_delta": ("live", "detached_clamped"),
            "state_target": ("live", "detached"),
            "time_scale": ("fixed", "gap_quantile", "standardized"),
            "backend": ssd_backend.BACKENDS,
        }
        for key, allowed in choices.items():
            if getattr(self, key) not in allowed:
                msg = f"t2arec: `{key}` must be one of {allowed}, got {getattr(self, key)!r}"
                raise ModelError(msg)
        positive = ("max_len", "d_model", "d_state", "d_conv", "chunk", "expand", "headdim")
        for key in positive:
            if getattr(self, key) < 1:
                msg = f"t2arec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if self.time_block < 2:
            msg = f"t2arec: `time_block` must be >= 2 (a pair needs two), got {self.time_block}"
            raise ModelError(msg)
        if not (self.time_scale_s > 0 and self.delta_min > 0 and 0 <= self.dropout < 1):
            msg = (
                "t2arec: need time_scale_s > 0, delta_min > 0 and 0 <= dropout < 1, got "
                f"{self.time_scale_s}, {self.delta_min}, {self.dropout}"
            )
            raise ModelError(msg)
        if not (self.state_eps > 0 and 0 < self.time_quantile < 1):
            msg = (
                "t2arec: need state_eps > 0 and 0 < time_quantile < 1, got "
                f"{self.state_eps}, {self.time_quantile}"
            )
            raise ModelError(msg)
        if self.block == "mamba2_full" and (self.expand * self.d_model) % self.headdim:
            inner = self.expand * self.d_model
            msg = f"t2arec: expand·d_model = {inner} must be a multiple of headdim {self.headdim}"
            raise ModelError(msg)


class T2ARecState(NamedTuple):
    """Recurrent state after n events (what `step` consumes and returns)."""

    conv_state: Tensor  # (B, X, K-1) pre-conv x|B|C rows of the last K-1 events, oldest first
    ssm_state: Tensor  # (B, H, P, N) h_n
    x_last: Tensor  # (B, E) SSM input x_n of the last event (0 when n = 0), for Q = Linear2(x_n)
    last_time: Tensor  # (B,) int64 t_n (0 when n = 0)
    length: Tensor  # (B,) int64 n


class _Encoding(NamedTuple):
    o_n: Tensor  # (B, D) user representation
    state: T2ARecState
    dt: Tensor  # (B, L, H) Δ_1..Δ_L (0 on padding)
    times: Tensor  # (B, L) int64 event times (at least one column)


class _Token(NamedTuple):
    xbc: Tensor  # (B, X) pre-conv row
    x: Tensor  # (B, E) post-conv SSM input
    B: Tensor  # (B, N)
    C: Tensor  # (B, N)
    dt: Tensor  # (B, H) Δ
    z: Tensor | None  # (B, E) gate (mamba2_full only)


@register("t2arec", T2ARecConfig, "Mamba-2 (SSD) recommender with time/state test-time alignment")
class T2ARec(Recommender):
    has_test_time_loss = True

    def __init__(self, *, n_items: int, config: T2ARecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        if cfg.backend == "mamba_ssm":
            ssd_backend.require_mamba_ssm()
        d, n = cfg.d_model, cfg.d_state
        self.full = cfg.block == "mamba2_full"
        self.d_inner = cfg.expand * d if self.full else d  # E
        self.nheads = self.d_inner // cfg.headdim if self.full else 1  # H
        self.headdim = self.d_inner // self.nheads  # P
        self.conv_dim = self.d_inner + 2 * n  # X
        gate = self.d_inner if self.full else 0

        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        # Linear1 (Eq. 3): d -> [z] | x | B | C | dt
        self.in_proj = nn.Linear(d, gate + self.conv_dim + self.nheads, bias=False)
        self.conv1d = nn.Conv1d(
            self.conv_dim, self.conv_dim, cfg.d_conv, groups=self.conv_dim, padding=cfg.d_conv - 1
        )
        self.dt_bias = nn.Parameter(torch.empty(self.nheads))
        self.A_log = nn.Parameter(torch.empty(self.nheads))
        if self.full:  # Mamba-2 extras: D skip, gated RMSNorm, out_proj
            self.D = nn.Parameter(torch.ones(self.nheads))
            self.gate_norm = nn.RMSNorm(self.d_inner, eps=1e-5)
            self.out_proj = nn.Linear(self.d_inner, d, bias=False)
        self.ssm_dropout = nn.Dropout(cfg.dropout)
        self.ssm_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, 4 * d)
        self.ffn_out = nn.Linear(4 * d, d)
        self.ffn_dropout = nn.Dropout(cfg.dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        # L_state: Linear2 (Eq. 22) and the backward scalar P (Eq. 23), one per head
        self.linear2 = nn.Linear(self.d_inner, n)
        if cfg.p_mode == "learnable":
            self.P = nn.Parameter(torch.zeros(self.nheads))
        self._init_weights(torch.Generator().manual_seed(cfg.seed))

    @torch.no_grad()
    def _init_weights(self, gen: torch.Generator) -> None:
        """Mamba4Rec-style N(0, 0.02) for Linear/Embedding, Mamba-2 init for conv, dt_bias, A."""
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, 0.02, generator=gen)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
        self.item_emb.weight[0].zero_()
        bound = 1.0 / math.sqrt(self.config.d_conv)  # PyTorch's default conv init, owned RNG
        nn.init.uniform_(self.conv1d.weight, -bound, bound, generator=gen)
        assert self.conv1d.bias is not None
        nn.init.uniform_(self.conv1d.bias, -bound, bound, generator=gen)
        u = torch.rand(self.nheads, generator=gen)
        dt0 = torch.exp(u * (math.log(1e-1) - math.log(1e-3)) + math.log(1e-3)).clamp(min=1e-4)
        self.dt_bias.copy_(dt0 + torch.log(-torch.expm1(-dt0)))  # inverse softplus
        self.A_log.copy_(torch.log(1.0 + 15.0 * torch.rand(self.nheads, generator=gen)))

    # ---- building blocks -------------------------------------------------------------------

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def test_time_parameters(self) -> list[nn.Parameter]:
        """Parameters a test-time step should update (A13: all, or all but the item table)."""
        frozen = {id(self.item_emb.weight)} if self.config.freeze_embeddings_at_test else set()
        return [p for p in self.parameters() if id(p) not in frozen]

    def _embed(self, items: Tensor, *, detach_table: bool = False) -> Tensor:
        table = self.item_emb.weight.detach() if detach_table else self.item_emb.weight
        return self.emb_norm(self.emb_dropout(F.embedding(items, table, padding_idx=0)))

    def _A(self) -> Tensor:
        return -torch.exp(self.A_log)  # (H,)

    def _split(self, proj: Tensor) -> tuple[Tensor | None, Tensor, Tensor]:
        """Linear1 output (..., gate + X + H) -> z | xBC | dt_raw."""
        gate = self.d_inner if self.full else 0
        z = proj[..., :gate] if self.full else None
        return z, proj[..., gate : gate + self.conv_dim], proj[..., gate + self.conv_dim :]

    def _xbc(self, xbc: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        n = self.config.d_state
        return xbc[..., : self.d_inner], xbc[..., self.d_inner : -n], xbc[..., -n:]

    def _token(self, u: Tensor, conv_state: Tensor) -> _Token:
        """Transform one token u (B, D) given the previous K−1 pre-conv rows (B, X, K−1)."""
        z, xbc, dt_raw = self._split(self.in_proj(u))
        window = torch.cat([conv_state, xbc.unsqueeze(-1)], dim=-1)  # (B, X, K)
        conv = (window * self.conv1d.weight.squeeze(1)).sum(-1)  # cross-correlation, last = now
        assert self.conv1d.bias is not None
        x, bm, cm = self._xbc(F.silu(conv + self.conv1d.bias))
        return _Token(xbc, x, bm, cm, F.softplus(dt_raw + self.dt_bias), z)

    def _mix_out(self, y: Tensor, x: Tensor, z: Tensor | None) -> Tensor:
        """Mixer output (..., D) from the scan output y (..., H, P) and the input x (..., E)."""
        if not self.full:
            return y.flatten(-2)
        assert z is not None
        y = y + self.D[:, None] * x.unflatten(-1, (self.nheads, self.headdim))
        return self.out_proj(self.gate_norm(y.flatten(-2) * F.silu(z)))

    def _head(self, mix: Tensor) -> Tensor:
        """LN(dropout(mixer)) then FFN with residual + LN (Mamba4Rec, one layer)."""
        y = self.ssm_norm(self.ssm_dropout(mix))
        hidden = self.ffn_dropout(self.ffn_out(F.gelu(self.ffn_in(y))))
        return self.ffn_norm(hidden + y)

    # ---- sequence and step -----------------------------------------------------------------

    def _encode(self, batch: SeqBatch, *, detach_table: bool = False) -> _Encoding:
        items, times, lengths = batch.items, batch.times, batch.lengths
        if items.shape[1] == 0:  # an all-empty batch: one padded column keeps shapes valid
            items, times = items.new_zeros(items.shape[0], 1), times.new_zeros(times.shape[0], 1)
        bsz, seq = items.shape
        rows = torch.arange(bsz, device=items.device)
        valid = torch.arange(seq, device=items.device) < lengths[:, None]  # (B, L)
        z, xbc, dt_raw = self._split(self.in_proj(self._embed(items, detach_table=detach_table)))
        conv = self.conv1d(xbc.transpose(1, 2))[..., :seq].transpose(1, 2)  # causal
        x, bm, cm = self._xbc(F.silu(conv))
        dt = F.softplus(dt_raw + self.dt_bias) * valid.unsqueeze(-1)  # (B, L, H), 0 on padding
        xh = x.unflatten(-1, (self.nheads, self.headdim))  # (B, L, H, P)
        y, h_n = ssd_backend.ssd_scan(
            xh, dt, self._A(), bm, cm, chunk=self.config.chunk, backend=self.config.backend
        )
        last = (lengths - 1).clamp(min=0)
        has = (lengths > 0).to(x.dtype)
        y_n = y[rows, last] * has[:, None, None]  # (B, H, P); 0 for an empty history
        x_n = x[rows, last] * has[:, None]  # (B, E)
        o_n = self._head(self._mix_out(y_n, x_n, None if z is None else z[rows, last]))
        k = self.config.d_conv - 1  # conv state: pre-conv rows len−K+1..len−1 (zeros before 0)
        padded = F.pad(xbc, (0, 0, k, 0))  # (B, K−1+L, X)
        conv_state = padded[rows[:, None], lengths[:, None] + torch.arange(k, device=rows.device)]
        last_time = torch.where(lengths > 0, times[rows, last], 0)
        state = T2ARecState(conv_state.transpose(1, 2), h_n, x_n, last_time, lengths)
        return _Encoding(o_n, state, dt, times)

    def forward(self, batch: SeqBatch) -> tuple[Tensor, T2ARecState]:
        """User representations o_n (B, D) and the recurrent state after each history."""
        enc = self._encode(batch)
        return enc.o_n, enc.state

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> T2ARecState:
        """The state of empty histories."""
        ref = self.A_log
        dev, dt = device or ref.device, dtype or ref.dtype
        cfg = self.config
        return T2ARecState(
            torch.zeros(batch_size, self.conv_dim, cfg.d_conv - 1, device=dev, dtype=dt),
            torch.zeros(batch_size, self.nheads, self.headdim, cfg.d_state, device=dev, dtype=dt),
            torch.zeros(batch_size, self.d_inner, device=dev, dtype=dt),
            torch.zeros(batch_size, dtype=torch.long, device=dev),
            torch.zeros(batch_size, dtype=torch.long, device=dev),
        )

    def step(self, item: Tensor, time: Tensor, state: T2ARecState) -> tuple[Tensor, T2ARecState]:
        """Append one event per row (item (B,), time (B,)); returns o_n (B, D) and the new state.

        Matches `forward` on the history extended by that event (O(1) in the history length).
        """
        tok = self._token(self._embed(item), state.conv_state)
        xh = tok.x.unflatten(-1, (self.nheads, self.headdim))
        y, h = ssd_step(xh, tok.dt, self._A(), tok.B, tok.C, state.ssm_state)
        o = self._head(self._mix_out(y, tok.x, tok.z))
        conv_state = torch.cat([state.conv_state[..., 1:], tok.xbc.unsqueeze(-1)], dim=-1)
        return o, T2ARecState(conv_state, h, tok.x, time.to(torch.long), state.length + 1)

    # ---- losses ----------------------------------------------------------------------------

    def _alignment(self, batch: SeqBatch, enc: _Encoding) -> tuple[Tensor, Tensor, Tensor]:
        cfg, st = self.config, enc.state
        conv_state = (
            st.conv_state if cfg.refeed_conv == "cached" else torch.zeros_like(st.conv_state)
        )
        nxt = self._token(enc.o_n, conv_state)  # Transform(o_n), Eq. 11
        l_time = time_alignment_loss(
            enc.dt, nxt.dt, enc.times, batch.lengths, batch.request_times,
            scale=cfg.time_scale_s, block=cfg.time_block, drop_ties=cfg.drop_tied_pairs,
            scale_mode=cfg.time_scale, quantile=cfg.time_quantile,
        )  # fmt: skip
        dt_state = nxt.dt  # the Δ_{n+1} that L_state sees
        if cfg.state_delta == "detached_clamped":  # no gradient; inside the history's range
            dt_state = clamp_to_history(nxt.dt.detach(), enc.dt.detach(), batch.lengths)
        shape = (-1, self.nheads, self.headdim)
        h_n, x_n = st.ssm_state, st.x_last
        if cfg.state_target == "detached":  # the state is the target, the re-fed token learns
            h_n, x_n = h_n.detach(), x_n.detach()
        l_state = state_alignment_loss(
            h_n, x_n.reshape(shape), dt_state, nxt.x.reshape(shape), nxt.B,
            self.linear2(x_n), self._A(), getattr(self, "P", None), batch.lengths,
            squared=cfg.state_norm == "squared", detach_dilution=cfg.detach_dilution,
            delta_min=cfg.delta_min, p_delta_max=cfg.p_delta_max,
            normalizer=cfg.state_loss, eps=cfg.state_eps,
        )  # fmt: skip
        return l_time, l_state, nxt.dt

    def alignment_losses(self, batch: SeqBatch) -> tuple[Tensor, Tensor, Tensor]:
        """(L_time, L_state, Δ_{n+1} (B,) averaged over heads) for a batch; inputs only."""
        l_time, l_state, dt_next = self._alignment(batch, self._encode(batch))
        return l_time, l_state, dt_next.mean(-1)

    @torch.no_grad()
    def test_time_signals(self, batch: SeqBatch) -> dict[str, float]:
        """The test-time loss and the mean Δ_{n+1} of a batch, from one encoding."""
        cfg = self.config
        l_time, l_state, dt_next = self._alignment(batch, self._encode(batch.without_targets()))
        loss = cfg.mu_time_test * l_time + cfg.mu_state_test * l_state
        return {"loss": float(loss), "delta_next": float(dt_next.mean())}

    @torch.no_grad()
    def health_signals(self, batch: SeqBatch) -> dict[str, Tensor]:
        """o_n, and for rows with n >= 1: ‖h_n‖_F, Δ_{n+1} and every history Δ (no gradient).

        ``representation`` (B, D) o_n; ``state_norm`` (B',) ‖h_n‖_F over heads;
        ``delta_next`` (B',) Δ_{n+1} averaged over heads; ``delta_history`` (M,) Δ_t of every
        valid history position and head (B' rows with a non-empty history).
        """
        cfg = self.config
        enc = self._encode(batch.without_targets())
        st = enc.state
        conv_state = (
            st.conv_state if cfg.refeed_conv == "cached" else torch.zeros_like(st.conv_state)
        )
        nxt = self._token(enc.o_n, conv_state)
        has = batch.lengths > 0
        valid = torch.arange(enc.dt.shape[1], device=enc.dt.device) < batch.lengths[:, None]
        return {
            "representation": enc.o_n,
            "state_norm": st.ssm_state.flatten(1).norm(dim=1)[has],
            "delta_next": nxt.dt.mean(-1)[has],
            "delta_history": enc.dt[valid].flatten(),
        }

    def loss(self, batch: SeqBatch) -> Tensor:
        """L_rec + μ1·L_time + μ2·L_state (Eq. 26) with the training weights."""
        return sum_terms(self.loss_terms(batch))

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """{"rec": L_rec, "time": μ1·L_time, "state": μ2·L_state}; only "rec" when μ1 = μ2 = 0."""
        assert batch.targets is not None, "loss() needs a batch with targets"
        enc = self._encode(batch)
        logits = (enc.o_n @ self.item_emb.weight.T).index_fill(1, _zero(enc.o_n), float("-inf"))
        terms = {"rec": F.cross_entropy(logits, batch.targets)}
        cfg = self.config
        if cfg.mu_time_train or cfg.mu_state_train:
            l_time, l_state, _ = self._alignment(batch, enc)
            terms["time"] = cfg.mu_time_train * l_time
            terms["state"] = cfg.mu_state_train * l_state
        return terms

    def test_time_loss(self, batch: SeqBatch) -> Tensor:
        """μ1'·L_time + μ2'·L_state on the inputs (items, times, lengths, request times) only."""
        cfg = self.config
        enc = self._encode(batch.without_targets(), detach_table=cfg.freeze_embeddings_at_test)
        l_time, l_state, _ = self._alignment(batch, enc)
        return cfg.mu_time_test * l_time + cfg.mu_state_test * l_state


def _zero(ref: Tensor) -> Tensor:
    return torch.zeros(1, dtype=torch.long, device=ref.device)


# ---- the two alignment losses as pure functions ---------------------------------------------


def time_alignment_loss(
    dt: Tensor,
    dt_next: Tensor,
    times: Tensor,
    lengths: Tensor,
    request_times: Tensor,
    *,
    scale: float,
    block: int,
    drop_ties: bool = False,
    scale_mode: Literal["fixed", "gap_quantile", "standardized"] = "fixed",
    quantile: float = 0.5,
) -> Tensor:
    """L_time (Eqs. 12–14): pairwise hinge between step sizes Δ and real gaps T.

    Positions 1..n+1 of each row hold Δ_1..Δ_n, Δ_{n+1} and T = [0, t_2−t_1, …, t_{n+1}−t_n]
    (t_{n+1} = request time). Position 1 is excluded (A8). Rows are right-aligned so that
    position n+1 is always the last one, then cut into blocks of `block` positions; pairs
    i < j inside a block add max(0, 1 − (Δ_i − Δ_j)(T_i − T_j)/scale). The sum over the batch is
    divided by the number of valid pairs in the whole batch (times the heads); 0 when none.

    The time unit (a deviation from the paper's constant λ unless `scale_mode` is "fixed"):
    "fixed" divides gaps by `scale` seconds; "gap_quantile" divides them by the `quantile` of the
    batch's positive gaps at positions 2..n+1 (at least 1 s, no gradient); "standardized"
    standardises each row's gaps at positions 2..n+1 (mean 0, standard deviation 1, the
    deviation floored at 1 s), so λ = 1 in units of that row's spread.

    Parameters
    ----------
    dt : (B, L, H) Δ (0 on padding); dt_next : (B, H) Δ_{n+1}; times : (B, L) int64 seconds;
    lengths : (B,); request_times : (B,) int64 seconds.
    """
    bsz, seq, nh = dt.shape
    width = seq + 1  # positions 1..L+1
    rows = torch.arange(bsz, device=dt.device)
    pos = torch.arange(width, device=dt.device)
    gaps = torch.zeros(bsz, width, dtype=torch.long, device=dt.device)
    gaps[:, 1:seq] = times[:, 1:] - times[:, :-1]
    last_t = torch.where(lengths > 0, times[rows, (lengths - 1).clamp(min=0)], 0)
    at_next = pos[None, :] == lengths[:, None]  # (B, L+1): index n holds position n+1
    gaps = torch.where(at_next, (request_times - last_t)[:, None], gaps)
    deltas = torch.where(at_next[..., None], dt_next[:, None, :], F.pad(dt, (0, 0, 0, 1)))
    valid = (pos[None, :] >= 1) & (pos[None, :] <= lengths[:, None])  # positions 2..n+1

    # end alignment: source index of target column j is j − (L − n); then left-pad to blocks
    src = pos[None, :] - (seq - lengths)[:, None]
    inside = src >= 0
    src = src.clamp(min=0)
    deltas = deltas.gather(1, src[..., None].expand(-1, -1, nh))
    gaps, valid = gaps.gather(1, src), valid.gather(1, src) & inside
    nblocks = -(-width // block)
    left = nblocks * block - width
    deltas = F.pad(deltas, (0, 0, left, 0)).reshape(bsz, nblocks, block, nh)
    gaps = F.pad(gaps, (left, 0)).reshape(bsz, nblocks, block)
    valid = F.pad(valid, (left, 0)).reshape(bsz, nblocks, block)

    i, j = torch.triu_indices(block, block, offset=1, device=dt.device)
    d_diff = deltas[:, :, i] - deltas[:, :, j]  # (B, nb, pairs, H)
    t_int = gaps[:, :, i] - gaps[:, :, j]  # exact integer differences of seconds
    pair_ok = valid[:, :, i] & valid[:, :, j]
    if drop_ties:
        pair_ok = pair_ok & (t_int != 0)
    if scale_mode == "fixed":
        t_diff = t_int.to(dt.dtype) / scale
    else:
        scaled = _scaled_gaps(gaps, valid, scale_mode, quantile).to(dt.dtype)
        t_diff = scaled[:, :, i] - scaled[:, :, j]
    hinge = torch.relu(1.0 - d_diff * t_diff[..., None])
    total = torch.where(pair_ok[..., None], hinge, 0.0).sum()
    count = pair_ok.sum() * nh
    return total / count.clamp(min=1)


def _scaled_gaps(gaps: Tensor, valid: Tensor, mode: str, quantile: float) -> Tensor:
    """(B, nb, b) gaps in data-scaled units (float64): see `time_alignment_loss`."""
    g = gaps.to(torch.float64)
    if mode == "gap_quantile":
        positive = g[valid & (gaps > 0)]
        lam = torch.quantile(positive, quantile) if positive.numel() else g.new_ones(())
        return g / lam.clamp(min=1.0)
    if mode == "standardized":
        w = valid.to(g.dtype)
        count = w.sum(dim=(1, 2), keepdim=True).clamp(min=1.0)
        mean = (g * w).sum(dim=(1, 2), keepdim=True) / count
        var = ((g - mean).pow(2) * w).sum(dim=(1, 2), keepdim=True) / count
        return (g - mean) / var.sqrt().clamp(min=1.0) * w
    msg = f"`scale_mode` must be one of ('fixed', 'gap_quantile', 'standardized'), got {mode!r}"
    raise ModelError(msg)


def clamp_to_history(dt_next: Tensor, dt: Tensor, lengths: Tensor) -> Tensor:
    """Δ_{n+1} (B, H) clamped into [min, max] of the row's history Δ (B, L, H), per head.

    Rows with an empty history keep their Δ_{n+1} (no loss uses it).
    """
    valid = (torch.arange(dt.shape[1], device=dt.device) < lengths[:, None])[..., None]
    lo = torch.where(valid, dt, torch.inf).amin(dim=1)  # (B, H)
    hi = torch.where(valid, dt, -torch.inf).amax(dim=1)
    has = (lengths > 0)[:, None]
    return torch.where(has, torch.minimum(torch.maximum(dt_next, lo), hi), dt_next)


def state_alignment_loss(
    h_n: Tensor,
    x_n: Tensor,
    dt_next: Tensor,
    x_next: Tensor,
    B_next: Tensor,
    Q: Tensor,
    A: Tensor,
    P: Tensor | None,
    lengths: Tensor,
    *,
    squared: bool = False,
    detach_dilution: bool = False,
    delta_min: float = 1e-4,
    p_delta_max: float = 20.0,
    normalizer: Literal["dilution", "relative", "triangle"] = "dilution",
    eps: float = 1e-3,
) -> Tensor:
    """L_state (Eqs. 20–25): distance between h_n and its forward-then-backward reconstruction.

    h̃_{n+1} = e^{Δ_{n+1}A} h_n + Δ_{n+1} x_{n+1} ⊗ B_{n+1};
    h̃ᵇ_n = P̄ h̃_{n+1} + Δ_{n+1} x_n ⊗ Q with P̄ = e^{min(Δ_{n+1}P, p_delta_max)} (learnable P)
    or P̄ = −1/A (`P` None, Theorem 4.1). The residual h_n − h̃ᵇ_n is the sum of three terms,
    (1 − P̄e^{Δ_{n+1}A}) h_n, −P̄Δ_{n+1} x_{n+1} ⊗ B_{n+1} and −Δ_{n+1} x_n ⊗ Q. The distance
    ‖h_n − h̃ᵇ_n‖_F (squared if asked) is divided, per head, by

    - "dilution" (the paper): max(Δ_{n+1}, delta_min)²;
    - "relative" (a deviation): ‖h_n‖_F + `eps`, with its gradient;
    - "triangle" (a deviation): the sum of the three terms' norms + `eps`, with its gradient.
      By the triangle inequality the ratio lies in [0, 1]; it is 1 when one term is alone and
      0 only when the terms cancel, so no term can lower it by shrinking or growing.

    then summed over heads and averaged over rows with n ≥ 1 (0 when none). With `squared`
    the normaliser is squared too (same units).

    Parameters
    ----------
    h_n : (B, H, P, N); x_n, x_next : (B, H, P); dt_next : (B, H); B_next, Q : (B, N);
    A : (H,); P : (H,) or None; lengths : (B,).
    """
    dt4 = dt_next[..., None, None]  # (B, H, 1, 1)
    if P is None:
        p_bar = (-1.0 / A)[:, None, None].expand_as(dt4)
    else:
        p_bar = torch.exp((dt4 * P[:, None, None]).clamp(max=p_delta_max))
    # h_n − h̃ᵇ_n = decay + step + back, in this order of operations for the paper's value
    h_fwd = torch.exp(dt4 * A[:, None, None]) * h_n
    step = dt4 * x_next.unsqueeze(-1) * B_next[:, None, None, :]
    back = dt4 * x_n.unsqueeze(-1) * Q[:, None, None, :]
    h_bwd = p_bar * (h_fwd + step) + back
    dist = _norm(h_n - h_bwd, squared=squared)  # (B, H)
    if normalizer == "dilution":
        weight = dt_next.clamp(min=delta_min).pow(-2)
        if detach_dilution:
            weight = weight.detach()
        per_row = (dist * weight).sum(-1)  # (B,)
    else:
        if normalizer == "relative":
            scale = _norm(h_n, squared=False) + eps
        elif normalizer == "triangle":
            terms = (h_n - p_bar * h_fwd, p_bar * step, back)
            scale = sum((_norm(t, squared=False) for t in terms), torch.tensor(eps))
        else:
            msg = "`normalizer` must be one of ('dilution', 'relative', 'triangle'), got "
            msg += repr(normalizer)
            raise ModelError(msg)
        per_row = (dist / (scale.pow(2) if squared else scale)).sum(-1)  # (B,)
    has = lengths > 0
    return torch.where(has, per_row, 0.0).sum() / has.sum().clamp(min=1)


def _norm(t: Tensor, *, squared: bool) -> Tensor:
    """Frobenius norm over the last two axes (squared if asked), with a finite gradient at 0."""
    sq = t.pow(2).sum(dim=(-2, -1))
    if squared:
        return sq
    nonzero = sq > 0
    return torch.where(nonzero, torch.sqrt(torch.where(nonzero, sq, 1.0)), 0.0)
