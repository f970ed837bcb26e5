"""Online supervised learning from revealed events: a policy's ``online = true`` axis.

After a micro-batch was scored and its targets revealed, `OnlineLearner.learn` takes
`online_steps` Adam steps (lr `online_lr`) on the model's supervised loss over the revealed
events, in train mode (dropout on, with an owned per-batch seed so replays repeat and resume bit
for bit). It moves the model's *base* weights, the ones a ``reset`` test-time policy returns to
(`streamsim.adapt`). A step whose loss or gradient is not finite is not taken.
"""

from __future__ import annotations

import torch

from models.base import Recommender, SeqBatch
from streamsim import rng as rng_streams
from streamsim.adapt import collect_params, finite_grads


class OnlineLearner:
    """Adam on the supervised loss of each micro-batch's revealed events."""

    def __init__(self, model: Recommender, *, lr: float, steps: int) -> None:
        self.model = model
        self.steps = steps
        self.params, _ = collect_params(model)
        self.opt = torch.optim.Adam(self.params, lr=lr)

    def learn(self, revealed: SeqBatch, *, seed: int) -> int:
        """Supervised steps on revealed events; returns the number of backward passes."""
        assert revealed.targets is not None
        self.model.train()
        with rng_streams.seeded(seed):  # dropout masks, owned: deterministic and resumable
            backward = 0
            for _ in range(self.steps):
                loss = self.model.loss(revealed)
                self.opt.zero_grad(set_to_none=True)
                if not bool(torch.isfinite(loss)):  # never step on NaN / inf
                    continue
                loss.backward()
                backward += 1
                if finite_grads(self.params):
                    self.opt.step()
            self.opt.zero_grad(set_to_none=True)
        self.model.eval()
        return backward

    def state(self) -> dict[str, object]:
        return {"opt": self.opt.state_dict()}

    def load_state(self, state: dict[str, object]) -> None:
        self.opt.load_state_dict(state["opt"])  # type: ignore[arg-type]
