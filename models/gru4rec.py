"""GRU4Rec: embedding → dropout → GRU → dense projection → last position → dot scores.

Reference: B. Hidasi et al., "Session-based Recommendations with Recurrent Neural Networks"
(ICLR'16), as implemented by RecBole (RUCAIBox/RecBole `gru4rec.py`, `GRU4Rec.yaml`;
docs/baselines.md): embedding 64 (xavier-normal), dropout 0.3, a bias-free GRU with hidden
128 (xavier-uniform input/recurrent weights), Linear(hidden → embedding) so scores are o_n·Eᵀ,
CE over the whole catalogue.

Streaming additions: the representation and state are read at each history's last real event,
so they are h_n of the real history whatever the padding; an empty history gives dense(0);
`step()` appends one event.

Speed: with one layer (the default) the GRU runs over the padded batch and h_n is its output at
position n−1 (the GRU is causal, so padding after n cannot reach it). RecBole's packed-sequence
form (`_encode_packed`) computes the same values but its CPU backward materialises a zero
gradient of the whole packed input per time step (`SliceBackward0` → `fill_`/`add_`, quadratic in
L): a training step is 7.9x slower at L = 200 with lengths uniform in 1..L; for short histories,
where packing skips the padding, the two are within 10% (docs/performance.md, "GRU4Rec: padded
vs packed"). It stays as the test oracle and as the path for more than one layer, whose lower
layers' h_n the padded run does not expose.

Glossary: B batch, L history length, D embedding size, H hidden size, Y layers.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from torch.nn.utils.rnn import pack_padded_sequence, pad_packed_sequence

from models.base import Recommender, SeqBatch
from models.registry import register
from streamsim.errors import ModelError


@dataclass(frozen=True)
class GRU4RecConfig:
    max_len: int = 50  # L
    embedding_size: int = 64  # D
    hidden_size: int = 128  # H
    num_layers: int = 1  # Y
    dropout: float = 0.3  # dropout_prob (on the embeddings)

    def __post_init__(self) -> None:
        for key in ("max_len", "embedding_size", "hidden_size", "num_layers"):
            if getattr(self, key) < 1:
                msg = f"gru4rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if not 0 <= self.dropout < 1:
            msg = f"gru4rec: `dropout` must be in [0, 1), got {self.dropout}"
            raise ModelError(msg)


@register("gru4rec", GRU4RecConfig, "GRU4Rec: GRU over the history (RecBole defaults)")
class GRU4Rec(Recommender):
    def __init__(self, *, n_items: int, config: GRU4RecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        self.item_emb = nn.Embedding(n_items + 1, cfg.embedding_size, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.gru = nn.GRU(
            cfg.embedding_size, cfg.hidden_size, cfg.num_layers, bias=False, batch_first=True
        )
        self.dense = nn.Linear(cfg.hidden_size, cfg.embedding_size)  # PyTorch default init
        self._init_weights()

    @torch.no_grad()
    def _init_weights(self) -> None:
        nn.init.xavier_normal_(self.item_emb.weight)
        self.item_emb.weight[0].zero_()
        for name, weight in self.gru.named_parameters():  # RecBole: xavier-uniform (layer 0;
            if name.startswith(("weight_ih", "weight_hh")):  # here every layer)
                nn.init.xavier_uniform_(weight)

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def forward(self, batch: SeqBatch) -> tuple[Tensor, Tensor]:
        """Representations (B, D) and the GRU state h_n (Y, B, H) after each history."""
        items, lengths = batch.items, batch.lengths
        bsz = items.shape[0]
        if items.shape[1] == 0:
            items = items.new_zeros(bsz, 1)
        x = self.emb_dropout(self.item_emb(items))  # (B, L, D)
        if self.config.num_layers == 1:
            last, h_n = self._encode_padded(x, lengths)
        else:
            last, h_n = self._encode_packed(x, lengths)
        has = (lengths > 0).to(x.dtype)
        return self.dense(last * has[:, None]), h_n * has[None, :, None]  # 0 for an empty history

    def _encode_padded(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """One layer: the GRU over the padded batch; output and state read at position n−1."""
        width = max(int(lengths.max()), 1) if lengths.numel() else 1
        out, _ = self.gru(x[:, :width])  # (B, width, H)
        rows = torch.arange(x.shape[0], device=x.device)
        last = out[rows, (lengths - 1).clamp(min=0)]  # (B, H) = h_n for one layer
        return last, last.unsqueeze(0)

    def _encode_packed(self, x: Tensor, lengths: Tensor) -> tuple[Tensor, Tensor]:
        """RecBole's packed-sequence run (any number of layers); the oracle for `_encode_padded`."""
        packed = pack_padded_sequence(
            x, lengths.clamp(min=1).cpu(), batch_first=True, enforce_sorted=False
        )
        out, h_n = self.gru(packed)
        out, _ = pad_packed_sequence(out, batch_first=True)  # (B, max n, H)
        rows = torch.arange(x.shape[0], device=x.device)
        return out[rows, (lengths - 1).clamp(min=0)], h_n

    def initial_state(
        self,
        batch_size: int,
        *,
        device: torch.device | None = None,
        dtype: torch.dtype | None = None,
    ) -> Tensor:
        ref = self.item_emb.weight
        cfg = self.config
        shape = (cfg.num_layers, batch_size, cfg.hidden_size)
        return torch.zeros(shape, device=device or ref.device, dtype=dtype or ref.dtype)

    def step(self, item: Tensor, time: Tensor, state: Tensor) -> tuple[Tensor, Tensor]:
        """Append one event per row (item (B,), time unused); o_{n+1} (B, D), new h (Y, B, H)."""
        x = self.emb_dropout(self.item_emb(item)).unsqueeze(1)  # (B, 1, D)
        out, h = self.gru(x, state)
        return self.dense(out[:, 0]), h
