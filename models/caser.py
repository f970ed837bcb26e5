"""Caser: convolutional sequence embedding (horizontal + vertical convolutions), RecBole defaults.

Reference: J. Tang, K. Wang, "Personalized Top-N Sequential Recommendation via Convolutional
Sequence Embedding" (WSDM'18), with the RecBole implementation's choices (RUCAIBox/RecBole
`caser.py`, `Caser.yaml`; docs/baselines.md): the last L items form an L×d "image";
n_v vertical filters (L×1) and n_h horizontal filters of every height 1..L (h×d, ReLU, max-pooled
over time) → concat → dropout → fc1 (ReLU) → fc2 (ReLU) → scores ·Eᵀ; CE loss plus
reg_weight·(sum of L2 norms of the item table, conv and fc weights), as RecBole's RegLoss does.

Deviations: SeqBatch carries no user id, so the user embedding RecBole concatenates before fc2
is dropped (fc2 is d→d). The window is right-aligned (the most recent item in the last row, older
slots zero), i.e. Caser's "last L items"; positions beyond `lengths` never enter.

Speed: the L horizontal convolutions are the model's cost (RecBole runs them one after another
as 1-channel conv2d). `horizontal_pool` computes the same values with the heights stacked
`HEIGHTS_PER_CONV` at a time into one zero-padded conv1d over the D channels (about 6x faster
fwd+bwd on CPU, `benchmarks/train_step_models.py`); `horizontal_pool_ref`, RecBole's loop, is the
test oracle. Parameters stay one Conv2d per height, so state dicts are RecBole-shaped.

Glossary: B batch, L max_len (window), D embedding size, n_h filters per height.
"""

from __future__ import annotations

from collections.abc import Sequence
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


HEIGHTS_PER_CONV = 5  # heights stacked into one conv1d by `horizontal_pool`


def horizontal_pool_ref(img: Tensor, convs: Sequence[nn.Conv2d]) -> Tensor:
    """RecBole's loop: per height h, ReLU(conv_h) max-pooled over time; (B, 1, L, D) -> (B, n_h·L).

    The oracle for `horizontal_pool`.
    """
    pooled = [F.relu(conv(img).squeeze(3)).max(dim=2).values for conv in convs]
    return torch.cat(pooled, dim=1)


def horizontal_pool(
    img: Tensor, convs: Sequence[nn.Conv2d], group: int = HEIGHTS_PER_CONV
) -> Tensor:
    """Same values as `horizontal_pool_ref` (up to rounding), `group` heights per conv1d.

    `convs[h - 1]` has a (n_h, 1, h, D) kernel. Kernels of heights h0..h1 are zero-padded on the
    right to height h1 and stacked into one (n_h·g, D, h1) conv1d over the sequence; the input
    is zero-padded so that every position a height-h0 window covers is produced. A height-h
    output at position i only reads rows i..i+h-1 (the padded taps are 0), so it equals the
    unpadded convolution there; positions i > L - h (windows past the end) are dropped before
    the max by setting them to 0, which cannot win a max over ReLU outputs >= 0 since every
    height has at least one valid position.
    """
    x = img.squeeze(1).transpose(1, 2)  # (B, D, L)
    length = x.shape[2]
    pooled = []
    for start in range(0, len(convs), group):
        block = convs[start : start + group]  # heights start+1 .. start+len(block)
        kernel = start + len(block)
        weight = torch.cat(
            [
                F.pad(c.weight.squeeze(1).transpose(1, 2), (0, kernel - c.kernel_size[0]))
                for c in block
            ]
        )  # (n_h·g, D, kernel)
        bias = torch.cat([_bias(c) for c in block])
        out = F.conv1d(F.pad(x, (0, kernel - start - 1)), weight, bias)  # (B, n_h·g, L - start)
        pos = torch.arange(out.shape[2], device=x.device)
        last = length - torch.tensor([c.kernel_size[0] for c in block], device=x.device)
        valid = (pos[None, :] <= last[:, None]).repeat_interleave(block[0].out_channels, 0)
        pooled.append(F.relu(out).masked_fill(~valid, 0.0).max(dim=2).values)
    return torch.cat(pooled, dim=1)


def _bias(conv: nn.Conv2d) -> Tensor:
    assert conv.bias is not None
    return conv.bias


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
        pooled = horizontal_pool(img, self.horizontal_convs())  # (B, n_h·L)
        out = self.dropout(torch.cat([out_v, pooled], dim=1))
        z = F.relu(self.fc1(out))
        return F.relu(self.fc2(z)), None

    def horizontal_convs(self) -> list[nn.Conv2d]:
        """The horizontal convolutions, heights 1..L in order."""
        return [conv for conv in self.conv_h if isinstance(conv, nn.Conv2d)]

    def loss(self, batch: SeqBatch) -> Tensor:
        """Full-softmax CE + reg_weight · Σ‖W‖₂ over the item table, conv and fc weights."""
        return sum_terms(self.loss_terms(batch))

    def loss_terms(self, batch: SeqBatch) -> dict[str, Tensor]:
        """{"rec": CE, "reg": reg_weight · Σ‖W‖₂}."""
        ce = super().loss(batch)
        weights = [self.item_emb.weight, self.conv_v.weight, self.fc1.weight, self.fc2.weight]
        weights += [conv.weight for conv in self.horizontal_convs()]
        reg = torch.stack([w.norm(2) for w in weights]).sum()
        return {"rec": ce, "reg": self.config.reg_weight * reg}
