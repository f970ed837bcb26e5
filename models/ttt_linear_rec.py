"""TTT-Linear recommender (Zhan, Lv, Zhang, Li; arXiv 2411.15186, AAAI student abstract).

What the paper gives (docs/models-ttt.md; no public code): item embeddings → a TTT-Linear layer
as the feature extractor → RMSNorm → user feature; the candidate item passes through an MLP and is
scored with a dot product; inner mini-batch 1 (online GD) or 10; initializer range 0.005–0.04.

Our reading (documented in docs/models-ttt.md): item embedding → Dropout → x + TTTLayer(x)
(`models.ttt.TTTLayer` with the TTT-Linear inner model, ttt-lm-pytorch semantics, RoPE within
mini-batches) → RMSNorm → the last valid position. Candidate tower: E' = E + MLP(E) with
MLP = Linear(D, D) → GELU → Linear(D, D) (a residual MLP so that the table starts near E); full
ranking scores u·E'ᵀ with CE over the catalogue. All Linear/Embedding weights and the inner W₀
are N(0, initializer_range).

Glossary: B batch, L history length, D hidden size, V catalogue size + 1.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from models.registry import register
from models.ttt import TTTLayer, init_linear_embedding
from models.ttt4rec import gather_last
from streamsim.errors import ModelError


@dataclass(frozen=True)
class TTTLinearRecConfig:
    max_len: int = 50  # L
    hidden_size: int = 64  # D
    num_heads: int = 4  # head dim f = D / H
    mini_batch_size: int = 10  # b: 1 (online GD) or 10 in the paper
    rope_theta: float = 1000.0
    ttt_base_lr: float = 1.0
    dropout: float = 0.2
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02  # the paper's best range: 0.005–0.04
    seed: int = 0  # owned init RNG

    def __post_init__(self) -> None:
        for key in ("max_len", "hidden_size", "num_heads", "mini_batch_size"):
            if getattr(self, key) < 1:
                msg = f"ttt_linear_rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            msg = "ttt_linear_rec: hidden_size / num_heads must be an even integer (RoPE), got "
            msg += f"{self.hidden_size} / {self.num_heads}"
            raise ModelError(msg)
        if not 0 <= self.dropout < 1 or self.initializer_range <= 0:
            msg = "ttt_linear_rec: need 0 <= dropout < 1 and initializer_range > 0, got "
            msg += f"{self.dropout}, {self.initializer_range}"
            raise ModelError(msg)


@register(
    "ttt_linear_rec", TTTLinearRecConfig, "TTT-Linear feature extractor + RMSNorm, MLP item tower"
)
class TTTLinearRec(Recommender):
    def __init__(self, *, n_items: int, config: TTTLinearRecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        d = cfg.hidden_size
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.ttt = TTTLayer(
            d, cfg.num_heads, inner="linear", mini_batch_size=cfg.mini_batch_size,
            rope_theta=cfg.rope_theta, ttt_base_lr=cfg.ttt_base_lr,
            initializer_range=cfg.initializer_range,
        )  # fmt: skip
        self.norm = nn.RMSNorm(d, eps=cfg.rms_norm_eps)
        self.item_mlp_in = nn.Linear(d, d)
        self.item_mlp_out = nn.Linear(d, d)
        init_linear_embedding(self, cfg.initializer_range, torch.Generator().manual_seed(cfg.seed))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        table = self.item_emb.weight
        return table + self.item_mlp_out(F.gelu(self.item_mlp_in(table)))

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """User features (B, D) at the last valid position; no recurrent state."""
        items = batch.items
        if items.shape[1] == 0:
            items = items.new_zeros(items.shape[0], 1)
        valid = torch.arange(items.shape[1], device=items.device) < batch.lengths[:, None]
        x = self.emb_dropout(self.item_emb(items * valid))
        x = self.norm(x + self.ttt(x, batch.lengths))  # inner loop skips padding mini-batches
        return gather_last(x, batch.lengths), None
