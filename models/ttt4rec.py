"""TTT4Rec: a test-time-training (TTT) layer as the sequence mixer of a next-item recommender.

Reference: Z. Yang, Y. Wang, Y. Ge, "TTT4Rec: A Test-Time Training Approach for Rapid Adaption in
Sequential Recommendation" (arXiv 2409.19142; ZhaoqiZachYang/TTT4Rec `main.py`, `config.yaml`;
docs/models-ttt.md). Item embedding → Dropout → LayerNorm → n_layers ttt-lm-pytorch Blocks
(`models.ttt.TTTBlock`: RMSNorm → TTT layer → residual; RMSNorm → SwiGLU → residual) → RMSNorm →
the last valid position → scores ·Eᵀ; CE. Init N(0, 0.02) for Linear/Embedding weights.

The inner loop (TTT-MLP by default, TTT-Linear as an option, mini-batches of 8, RoPE θ = 1000
with positions modulo the mini-batch size) runs inside every forward pass; W is reset to the
learned W₀ for every sequence. Backbones: "transformer" (the paper's default: separate Q/K, no
pre-conv, no gate) and "mamba" (pre-conv residual, shared Q/K with causal convs, GELU gate).

Outer test-time adaptation: `test_time_loss` is ETA-Rec's label-free top-K entropy (mean over the
rows of the entropy of the renormalised top-K of the softmax over the catalogue), from the inputs
only; `test_time_parameters` are the TTT layers' q/k/v/o projections (ETA-Rec's choice).

Glossary: B batch, L history length, D hidden size, V catalogue size + 1.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from models.base import Recommender, SeqBatch
from models.registry import register
from models.ttt import TTTBlock, TTTLayer, init_linear_embedding
from streamsim.errors import ModelError


@dataclass(frozen=True)
class TTT4RecConfig:
    max_len: int = 50  # L
    hidden_size: int = 64  # D
    intermediate_size: int = 256  # SwiGLU width
    num_layers: int = 1
    num_heads: int = 4  # head dim f = D / H (16)
    inner: Literal["mlp", "linear"] = "mlp"  # TTT-MLP (default) or TTT-Linear
    backbone: Literal["transformer", "mamba"] = "transformer"
    mini_batch_size: int = 8  # b
    rope_theta: float = 1000.0
    ttt_base_lr: float = 1.0
    dropout: float = 0.2  # embedding dropout
    layer_norm_eps: float = 1e-12  # the embedding LayerNorm
    rms_norm_eps: float = 1e-6
    initializer_range: float = 0.02
    conv_kernel: int = 4  # mamba backbone: pre-conv and Q/K convs
    tta_top_k: int = 10  # K of the top-K entropy test-time loss
    seed: int = 0  # owned init RNG

    def __post_init__(self) -> None:
        if self.inner not in ("mlp", "linear") or self.backbone not in ("transformer", "mamba"):
            msg = "ttt4rec: `inner` must be 'mlp' or 'linear' and `backbone` 'transformer' or "
            msg += f"'mamba', got {self.inner!r}, {self.backbone!r}"
            raise ModelError(msg)
        keys = ("max_len", "hidden_size", "intermediate_size", "num_layers", "num_heads")
        for key in (*keys, "mini_batch_size", "conv_kernel", "tta_top_k"):
            if getattr(self, key) < 1:
                msg = f"ttt4rec: `{key}` must be >= 1, got {getattr(self, key)}"
                raise ModelError(msg)
        if self.hidden_size % self.num_heads or (self.hidden_size // self.num_heads) % 2:
            msg = "ttt4rec: hidden_size / num_heads must be an even integer (RoPE), got "
            msg += f"{self.hidden_size} / {self.num_heads}"
            raise ModelError(msg)
        if not 0 <= self.dropout < 1:
            msg = f"ttt4rec: `dropout` must be in [0, 1), got {self.dropout}"
            raise ModelError(msg)


def topk_entropy(logits: Tensor, k: int) -> Tensor:
    """(B,) Shannon entropy of the top-k of softmax(logits), renormalised to sum to 1.

    Equal to the entropy of softmax over the k largest logits; −inf columns never count.
    """
    top = logits.topk(min(k, logits.shape[-1]), dim=-1).values
    logp = F.log_softmax(top, dim=-1)
    return -(logp.exp() * torch.where(torch.isfinite(logp), logp, 0.0)).sum(-1)


def gather_last(hidden: Tensor, lengths: Tensor) -> Tensor:
    """(B, L, D) → (B, D) at position length − 1 (position 0 for an empty history)."""
    rows = torch.arange(hidden.shape[0], device=hidden.device)
    return hidden[rows, (lengths - 1).clamp(min=0)]


@register("ttt4rec", TTT4RecConfig, "TTT4Rec: TTT-MLP/Linear layer, inner loop per forward pass")
class TTT4Rec(Recommender):
    has_test_time_loss = True

    def __init__(self, *, n_items: int, config: TTT4RecConfig) -> None:
        super().__init__(n_items, config.max_len)
        self.config = cfg = config
        d = cfg.hidden_size
        mamba = cfg.backbone == "mamba"
        self.item_emb = nn.Embedding(n_items + 1, d, padding_idx=0)
        self.emb_dropout = nn.Dropout(cfg.dropout)
        self.emb_norm = nn.LayerNorm(d, eps=cfg.layer_norm_eps)
        blocks = []
        for _ in range(cfg.num_layers):
            layer = TTTLayer(
                d, cfg.num_heads, inner=cfg.inner, mini_batch_size=cfg.mini_batch_size,
                rope_theta=cfg.rope_theta, ttt_base_lr=cfg.ttt_base_lr,
                initializer_range=cfg.initializer_range, share_qk=mamba, use_gate=mamba,
                conv_kernel=cfg.conv_kernel,
            )  # fmt: skip
            blocks.append(
                TTTBlock(
                    layer,
                    d,
                    cfg.intermediate_size,
                    pre_conv=mamba,
                    conv_kernel=cfg.conv_kernel,
                    eps=cfg.rms_norm_eps,
                )  # fmt: skip
            )
        self.blocks = nn.ModuleList(blocks)
        self.final_norm = nn.RMSNorm(d, eps=cfg.rms_norm_eps)
        init_linear_embedding(self, cfg.initializer_range, torch.Generator().manual_seed(cfg.seed))
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def item_table(self) -> Tensor:
        return self.item_emb.weight

    def test_time_parameters(self) -> list[nn.Parameter]:
        """The TTT layers' Q/K/V/O projection weights (what ETA-Rec adapts)."""
        out: list[nn.Parameter] = []
        for module in self.modules():
            if isinstance(module, TTTLayer):
                for name in ("q_proj", "k_proj", "v_proj", "o_proj"):
                    if hasattr(module, name):
                        out.append(getattr(module, name).weight)
        return out

    def encode(self, batch: SeqBatch) -> Tensor:
        """(B, L, D) hidden states (causal; item ids beyond `lengths` read as padding)."""
        items = batch.items
        if items.shape[1] == 0:
            items = items.new_zeros(items.shape[0], 1)
        valid = torch.arange(items.shape[1], device=items.device) < batch.lengths[:, None]
        x = self.emb_norm(self.emb_dropout(self.item_emb(items * valid)))
        for block in self.blocks:
            x = block(x, batch.lengths)  # the inner loop skips mini-batches past each history
        return self.final_norm(x)

    def forward(self, batch: SeqBatch) -> tuple[Tensor, None]:
        """User representations (B, D) at the last valid position; no recurrent state."""
        return gather_last(self.encode(batch), batch.lengths), None

    def test_time_loss(self, batch: SeqBatch) -> Tensor:
        """Mean top-K entropy of the renormalised top-K catalogue distribution (inputs only)."""
        logits = self.score(batch.without_targets())
        return topk_entropy(logits, self.config.tta_top_k).mean()
