"""BERT4Rec: bidirectional self-attention trained by masked-item prediction (RecBole defaults).

Reference: F. Sun et al., "BERT4Rec: Sequential Recommendation with Bidirectional Encoder
Representations from Transformer" (CIKM'19), with the RecBole implementation's choices
(RUCAIBox/RecBole `bert4rec.py`, `BERT4Rec.yaml`; docs/baselines.md): item + learned position
embedding → LayerNorm(1e-12) → Dropout → n_layers post-LN Transformer layers (the SASRec layer of
`models.sasrec`, with a key-padding mask only, no causal mask) → output head
LN(GELU(Linear(h))) → scores h·Eᵀ + per-item output bias.

Item ids: 0 padding, 1..n_items items, n_items + 1 the [MASK] token (an extra embedding row and
an extra output-bias entry that `score` never returns: scores are (B, n_items + 1), column 0 −inf).

Inference (causal, the request position): the history keeps its last `max_len − 1` items and
[MASK] is written at position min(n, max_len − 1), i.e. right after the history, shifting the
window left by one when the history already fills it; the representation is read at [MASK].

Training (`loss`): per row, the sequence history + target, cut to its last `max_len` items; each
real position is masked with probability `mask_ratio` (owned generator seeded from `seed`), and
the last position (the target) is always masked; with probability `ft_ratio` a row masks only its
last position (RecBole's fine-tuning samples). Loss: full-softmax CE over items 1..n_items at the
masked positions, averaged over them.

Glossary: B batch, L max_len, D hidden size, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from models.registry import register
from models.sasrec import SASRecConfig, TransformerLayer
from streamsim.errors import ModelError

_MASKED = -10000.0


@dataclass(frozen=True)
class BERT4RecConfig:
    max_len: int = 50  # L positions, the [MASK] slot included
    hidden_size: int = 64  # D
    n_layers: int = 2
    n_heads: int = 2
    inner_size: int = 256
    hidden_dropout: float = 0.2
    attn_dropout: float = 0.2
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02
    mask_ratio: float = 0.2  # share of positions masked in training
    ft_ratio: float = 0.5  # share of training rows that mask only the last position
    seed: int = 0  # owned RNG: init and the training masks

    def __post_init__(self) -> None:
        for key in ("hidden_size", "n_layers", "n_heads", "inner_size"):
            if getattr(self, key) < 1:
                msg = f"bert4rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if self.max_len < 2:
            msg = f"bert4rec: `max_len` must be >= 2 (history + [MASK]), got {self.max_len}"
            raise ModelError(msg)
        if self.hidden_size % self.n_heads:
            msg = f"bert4rec: hidden_size {self.hidden_size} must be a multiple of n_heads "
            msg += f"{self.n_heads}"
            raise ModelError(msg)
        for key in ("hidden_dropout", "attn_dropout", "mask_ratio", "ft_ratio"):
            if not 0 <= getattr(self, key) <= 1 or (
                key.endswith("dropout") and getattr(self, key) == 1
            ):
                msg = f"bert4rec: `{key}` must be in [0, 1], got {getattr(self, key)}"
                raise ModelError(msg)


@register("bert4rec", BERT4RecConfig, "BERT4Rec: masked-item bidirectional Transformer (RecBole)")
class BERT4Rec(Recommender):
    def __init__(self, *, n_items: int, config: BERT4RecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        self.mask_token = n_items + 1
        d = cfg.hidden_size
        self.item_emb = nn.Embedding(n_items + 2, d, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, d)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.emb_dropout = nn.Dropout(cfg.hidden_dropout)
        layer_cfg = SASRecConfig(
            max_len=cfg.max_len, hidden_size=d, n_layers=cfg.n_layers, n_heads=cfg.n_heads,
            inner_size=cfg.inner_size, hidden_dropout=cfg.hidden_dropout,
            attn_dropout=cfg.attn_dropout, layer_norm_eps=cfg.layer_norm_eps,
        )  # fmt: skip
        self.layers = nn.ModuleList(TransformerLayer(layer_cfg) for _ in range(cfg.n_layers))
        self.out_ffn = nn.Linear(d, d)
        self.out_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.out_bias = nn.Parameter(torch.zeros(n_items + 2))
        self._mask_gen = torch.Generator().manual_seed(cfg.seed + 1)
        self._init_weights(torch.Generator().manual_seed(cfg.seed))

    @torch.no_grad()
    def _init_weights(self, gen: torch.Generator) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std, generator=gen)
            if isinstance(module, nn.Linear) and module.bias is not None:
                module.bias.zero_()
        self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        return self.item_emb.weight[: self.n_items + 1]

    def _encode(self, seqs: Tensor, lengths: Tensor) -> Tensor:
        """Bidirectional encoding of (B, L) right-padded sequences with `lengths` -> (B, L, D)."""
        seq = seqs.shape[1]
        pos = torch.arange(seq, device=seqs.device)
        valid = pos < lengths[:, None]
        x = self.emb_dropout(self.emb_norm(self.item_emb(seqs * valid) + self.pos_emb(pos)))
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        mask = torch.where(valid, zero, _MASKED)[:, None, None, :].to(x.dtype)  # (B, 1, 1, L)
        mask = mask.expand(-1, 1, seq, seq)
        for layer in self.layers:
            x = layer(x, mask)
        return self.out_norm(F.gelu(self.out_ffn(x)))

    def inference_sequences(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """(B, L) sequences with [MASK] at the request position, and that position (B,)."""
        cap = self.config.max_len
        keep = batch.lengths.clamp(max=cap - 1)  # history items kept
        start = batch.lengths - keep  # first kept column
        pos = torch.arange(cap, device=batch.items.device)
        src = start[:, None] + pos[None, :]
        width = batch.items.shape[1]
        items = batch.items if width else batch.items.new_zeros(batch.size, 1)
        hist = items.gather(1, src.clamp(max=max(width - 1, 0)))
        seqs = torch.where(pos[None, :] < keep[:, None], hist, 0)
        seqs = torch.where(pos[None, :] == keep[:, None], self.mask_token, seqs)
        return seqs, keep

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """Representations (B, D) at the [MASK] appended after each history."""
        seqs, at = self.inference_sequences(batch)
        h = self._encode(seqs, at + 1)
        return h[torch.arange(batch.size, device=h.device), at], None

    def _logits(self, h: Tensor) -> Tensor:
        n = self.n_items + 1
        logits = h @ self.item_emb.weight[:n].T + self.out_bias[:n]
        return logits.index_fill(-1, torch.zeros(1, dtype=torch.long, device=h.device), -torch.inf)

    def score(self, batch: SeqBatch) -> Tensor:
        rep, _ = self(batch)
        return self._logits(rep)

    def training_masks(self, lengths: Tensor) -> Tensor:
        """(B, L) bool: which of the first `lengths` positions are masked (last always)."""
        cap, gen = self.config.max_len, self._mask_gen
        bsz = lengths.shape[0]
        pos = torch.arange(cap)
        lens = lengths.cpu()
        draw = torch.rand(bsz, cap, generator=gen) < self.config.mask_ratio
        fine_tune = torch.rand(bsz, generator=gen) < self.config.ft_ratio
        last = pos[None, :] == (lens - 1)[:, None]
        masked = (draw & ~fine_tune[:, None]) | last
        return (masked & (pos[None, :] < lens[:, None])).to(lengths.device)

    def generators(self) -> dict[str, torch.Generator]:
        return {"mask": self._mask_gen}

    def loss(self, batch: SeqBatch) -> Tensor:
        """Masked-item CE on history + target (see the module docstring)."""
        assert batch.targets is not None, "loss() needs a batch with targets"
        cap = self.config.max_len
        full = torch.cat([batch.items, batch.items.new_zeros(batch.size, 1)], dim=1)
        full = full.scatter(1, batch.lengths[:, None], batch.targets[:, None])
        lengths = (batch.lengths + 1).clamp(max=cap)
        start = batch.lengths + 1 - lengths
        pos = torch.arange(cap, device=full.device)
        src = (start[:, None] + pos[None, :]).clamp(max=full.shape[1] - 1)
        seqs = torch.where(pos[None, :] < lengths[:, None], full.gather(1, src), 0)
        masked = self.training_masks(lengths)
        inputs = torch.where(masked, self.mask_token, seqs)
        h = self._encode(inputs, lengths)
        logits = self._logits(h[masked])  # (M, V)
        return F.cross_entropy(logits, seqs[masked])
