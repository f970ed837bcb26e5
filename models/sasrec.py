"""SASRec: causal self-attention over the history, last position → dot scores (RecBole defaults).

Reference: W.-C. Kang, J. McAuley, "Self-Attentive Sequential Recommendation" (ICDM'18), with
the RecBole implementation's choices (RUCAIBox/RecBole `sasrec.py`, `SASRec.yaml`;
docs/baselines.md): item + learned positional embedding → LayerNorm(eps 1e-12) → Dropout →
n_layers post-LN Transformer layers (multi-head attention with a causal and key-padding mask,
residual + LN; FFN d→inner→d with GELU, residual + LN) → gather position n−1 → scores o_n·Eᵀ;
init N(0, 0.02).

Streaming additions: positions beyond `lengths` read item 0 (so a padded tail can never reach a
valid position), and the mask uses −10000 as RecBole does, so an empty history (all keys masked)
still gives finite scores.

Glossary: B batch, L history length, D hidden size, H heads.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from models.registry import register
from streamsim.errors import ModelError

_MASKED = -10000.0  # RecBole's additive mask value


@dataclass(frozen=True)
class SASRecConfig:
    max_len: int = 50  # L (also the number of positional embeddings)
    hidden_size: int = 64  # D
    n_layers: int = 2
    n_heads: int = 2  # H
    inner_size: int = 256  # FFN width
    hidden_dropout: float = 0.5  # hidden_dropout_prob
    attn_dropout: float = 0.5  # attn_dropout_prob
    layer_norm_eps: float = 1e-12
    initializer_range: float = 0.02

    def __post_init__(self) -> None:
        for key in ("max_len", "hidden_size", "n_layers", "n_heads", "inner_size"):
            if getattr(self, key) < 1:
                msg = f"sasrec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if self.hidden_size % self.n_heads:
            msg = f"sasrec: hidden_size {self.hidden_size} must be a multiple of n_heads "
            msg += f"{self.n_heads}"
            raise ModelError(msg)
        for key in ("hidden_dropout", "attn_dropout"):
            if not 0 <= getattr(self, key) < 1:
                msg = f"sasrec: `{key}` must be in [0, 1), got {getattr(self, key)}"
                raise ModelError(msg)


class TransformerLayer(nn.Module):
    """RecBole's post-LN layer: LN(x + Drop(MHA(x))) then LN(h + Drop(FFN(h)))."""

    def __init__(self, cfg: SASRecConfig) -> None:
        super().__init__()
        d = cfg.hidden_size
        self.n_heads, self.attn_p = cfg.n_heads, cfg.attn_dropout
        self.query, self.key, self.value = nn.Linear(d, d), nn.Linear(d, d), nn.Linear(d, d)
        self.dense = nn.Linear(d, d)
        self.attn_out_dropout = nn.Dropout(cfg.hidden_dropout)
        self.attn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        self.ffn_in = nn.Linear(d, cfg.inner_size)
        self.ffn_out = nn.Linear(cfg.inner_size, d)
        self.ffn_dropout = nn.Dropout(cfg.hidden_dropout)
        self.ffn_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)

    def _heads(self, x: Tensor) -> Tensor:
        return x.unflatten(-1, (self.n_heads, -1)).transpose(1, 2)  # (B, H, L, D/H)

    def forward(self, x: Tensor, mask: Tensor, queries: Tensor | None = None) -> Tensor:
        """x (B, L, D), mask (B, 1, L_q, L) additive -> (B, L_q, D).

        `queries` (B, L_q, D) are the rows that attend (x itself when None, L_q = L); every
        output row depends only on its own query, its mask row and x, so passing a subset of
        x's rows with the matching mask rows gives exactly those rows of the full output.
        """
        q_in = x if queries is None else queries
        q, k, v = (
            self._heads(self.query(q_in)),
            self._heads(self.key(x)),
            self._heads(self.value(x)),
        )
        p = self.attn_p if self.training else 0.0
        att = F.scaled_dot_product_attention(q, k, v, attn_mask=mask, dropout_p=p)
        h = self.attn_norm(self.attn_out_dropout(self.dense(att.transpose(1, 2).flatten(2))) + q_in)
        ffn = self.ffn_out(F.gelu(self.ffn_in(h)))
        return self.ffn_norm(self.ffn_dropout(ffn) + h)


@register("sasrec", SASRecConfig, "SASRec: causal self-attention (RecBole defaults)")
class SASRec(Recommender):
    def __init__(self, *, n_items: int, config: SASRecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        self.item_emb = nn.Embedding(n_items + 1, cfg.hidden_size, padding_idx=0)
        self.pos_emb = nn.Embedding(cfg.max_len, cfg.hidden_size)
        self.emb_norm = nn.LayerNorm(cfg.hidden_size, eps=cfg.layer_norm_eps)
        self.emb_dropout = nn.Dropout(cfg.hidden_dropout)
        self.layers = nn.ModuleList(TransformerLayer(cfg) for _ in range(cfg.n_layers))
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        std = self.config.initializer_range
        for module in self.modules():
            if isinstance(module, nn.Linear | nn.Embedding):
                nn.init.normal_(module.weight, 0.0, std)
            elif isinstance(module, nn.LayerNorm):
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if isinstance(module, nn.Linear) and module.bias is not None:
                nn.init.zeros_(module.bias)
        self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """User representations (B, D) at the last valid position; no recurrent state.

        Only position n−1 of the last layer is read, so that layer runs with that one query row
        (attention against all keys, FFN on one row): the same values as running it over every
        position and gathering (`forward_all_positions`, the test oracle), without the last
        layer's L×L attention and L-row FFN. In training, dropout masks are then drawn for one
        row instead of L, so the random stream differs from the full run's, not its distribution.
        """
        x, valid, lengths = self._embed(batch)
        if len(self.layers) > 1:
            mask = self._causal_mask(valid, x.dtype)
            for layer in self.layers[:-1]:
                x = layer(x, mask)
        rows = torch.arange(x.shape[0], device=x.device)
        last = (lengths - 1).clamp(min=0)
        # row n−1 of the causal mask: key k visible iff k <= n−1 and k valid, i.e. iff k valid
        zero = torch.zeros((), dtype=x.dtype, device=x.device)
        last_mask = torch.where(valid, zero, _MASKED).to(x.dtype)[:, None, None, :]  # (B,1,1,L)
        out = self.layers[-1](x, last_mask, queries=x[rows, last].unsqueeze(1))
        return out[:, 0], None

    def forward_all_positions(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """Reference: every layer over every position, then gather position n−1 (RecBole)."""
        x, valid, lengths = self._embed(batch)
        mask = self._causal_mask(valid, x.dtype)
        for layer in self.layers:
            x = layer(x, mask)
        rows = torch.arange(x.shape[0], device=x.device)
        return x[rows, (lengths - 1).clamp(min=0)], None

    def _embed(self, batch: SeqBatch) -> tuple[Tensor, Tensor, Tensor]:
        """Embedded, normalised, dropped-out input (B, L, D), the valid mask (B, L), lengths."""
        items, lengths = batch.items, batch.lengths
        if items.shape[1] == 0:
            items = items.new_zeros(items.shape[0], 1)
        seq = items.shape[1]
        if seq > self.config.max_len:
            msg = f"sasrec: history length {seq} exceeds max_len {self.config.max_len}"
            raise ModelError(msg)
        pos = torch.arange(seq, device=items.device)
        valid = pos < lengths[:, None]  # (B, L)
        x = self.item_emb(items * valid) + self.pos_emb(pos)
        return self.emb_dropout(self.emb_norm(x)), valid, lengths

    @staticmethod
    def _causal_mask(valid: Tensor, dtype: torch.dtype) -> Tensor:
        """Additive (B, 1, L_q, L_k) mask: key k visible to query q iff k <= q and k is valid."""
        pos = torch.arange(valid.shape[1], device=valid.device)
        allowed = valid[:, None, :] & (pos[None, :] <= pos[:, None])[None]  # (B, L_q, L_k)
        zero = torch.zeros((), dtype=dtype, device=valid.device)
        return torch.where(allowed, zero, _MASKED).unsqueeze(1).to(dtype)
