"""Caser: convolutional sequence embedding (horizontal + vertical convolutions), RecBole defaults.

Reference: J. Tang, K. Wang, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding" (WSDM'18), with the RecBole implementation's choices (RUCAIBox/RecBole
`caser.py`, `Caser.yaml`; design/MODELS.md §3.3): the last L items form an L×d "image";
n_v vertical filters (L×1) and n_h horizontal filters of every height 1..L (h×d, ReLU, max-pooled
over time) → concat → dropout → fc1 (ReLU) → fc2 (ReLU) → scores ·Eᵀ; CE loss plus
reg_weight·(sum of L2 norms of the item table, conv and fc weights), as RecBole's RegLoss does.

Deviations: SeqBatch carries no user id, so the user embedding RecBole concatenates before fc2
is dropped (fc2 is d→d). The window is right-aligned (the most recent item in the last row, older
slots zero), i.e. Caser's "last L items"; positions beyond `lengths` never enter.

Glossary: B batch, L max_len (window), D embedding size.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch, sum_terms
from models.registry import register
from streamsim.errors import ModelError


@dataclass(frozen=True)
class CaserConfig:
    max_len: int = 50  # L: the convolution window (last L items)
    embedding_size: int = 64  # D
    dropout: float = 0.4
    reg_weight: float = 1e-4  # weight of the L2-norm regulariser in `loss`
    n_v: int = 4  # vertical filters
    n_h: int = 8  # horizontal filters per height
    seed: int = 0  # owned init RNG

    def __post_init__(self) -> None:
        for key in ("max_len", "embedding_size", "n_v", "n_h"):
            if getattr(self, key) < 1:
                msg = f"caser: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if not 0 <= self.dropout < 1 or self.reg_weight < 0:
            msg = f"caser: need 0 <= dropout < 1 and reg_weight >= 0, got {self.dropout}, "
            msg += f"{self.reg_weight}"
            raise ModelError(msg)


def right_aligned(items: Tensor, lengths: Tensor, window: int) -> Tensor:
    """(B, W) right-padded histories -> (B, window) with the last `window` valid items at the end.

    Slots before the first kept item are 0 (padding); items beyond `lengths` are never read.
    """
    bsz, width = items.shape
    pos = torch.arange(window, device=items.device)
    src = lengths[:, None] - window + pos[None, :]  # (B, window) source column
    ok = (src >= 0) & (src < width)
    padded = items if width else items.new_zeros(bsz, 1)
    return torch.where(ok, padded.gather(1, src.clamp(0, max(width - 1, 0))), 0)


@register("caser", CaserConfig, "Caser: horizontal/vertical CNN over the last L items (RecBole)")
class Caser(Recommender):
    def __init__(self, *, n_items: int, config: CaserConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        d, length = cfg.embedding_size, cfg.max_len
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.conv_v = nn.Conv2d(1, cfg.n_v, (length, 1))
        self.conv_h = nn.ModuleList(nn.Conv2d(1, cfg.n_h, (h, d)) for h in range(1, length + 1))
        self.fc1 = nn.Linear(cfg.n_v * d + cfg.n_h * length, d)
        self.fc2 = nn.Linear(d, d)
        self.dropout = nn.Dropout(cfg.dropout)
        self._init_weights(torch.Generator().manual_seed(cfg.seed))

    @torch.no_grad()
    def _init_weights(self, gen: torch.Generator) -> None:
        """RecBole: embeddings N(0, 1/D); Linear Xavier-normal, zero bias; convs: torch default."""
        d = self.config.embedding_size
        nn.init.normal_(self.item_emb.weight, 0.0, 1.0 / d, generator=gen)
        self.item_emb.weight[0].zero_()
        for module in self.modules():
            if isinstance(module, nn.Linear):
                nn.init.xavier_normal_(module.weight, generator=gen)
                assert module.bias is not None
                module.bias.zero_()
            elif isinstance(module, nn.Conv2d):
                fan_in = module.weight[0].numel()
                bound = 1.0 / fan_in**0.5
                nn.init.uniform_(module.weight, -bound, bound, generator=gen)
                assert module.bias is not None
                nn.init.uniform_(module.bias, -bound, bound, generator=gen)

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """User representations (B, D) from the last `max_len` items; no recurrent state."""
        length = self.config.max_len
        window = right_aligned(batch.items, batch.lengths, length)  # (B, L)
        img = self.item_emb(window).unsqueeze(1)  # (B, 1, L, D)
        out_v = self.conv_v(img).flatten(1)  # (B, n_v·D)
        pooled = []
        for conv in self.conv_h:
            act = F.relu(conv(img).squeeze(3))  # (B, n_h, L−h+1)
            pooled.append(act.max(dim=2).values)  # (B, n_h)
        out = self.dropout(torch.cat([out_v, *pooled], dim=1))
        z = F.relu(self.fc1(out))
        return F.relu(self.fc2(z)), None

    def loss(self, batch: SeqBatch) -> Tensor:
        """Full-softmax CE + reg_weight · Σ‖W‖₂ over the item table, conv and fc weights."""
        return sum_terms(self.loss_terms(batch))

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """{"rec": CE, "reg": reg_weight · Σ‖W‖₂}."""
        ce = super().loss(batch)
        weights = [self.item_emb.weight, self.conv_v.weight, self.fc1.weight, self.fc2.weight]
        weights += [conv.weight for conv in self.conv_h if isinstance(conv, nn.Conv2d)]
        reg = torch.stack([w.norm(2) for w in weights]).sum()
        return {"rec": ce, "reg": self.config.reg_weight * reg}
