"""PCGrad (Yu et al., NeurIPS 2020): project each task gradient off the others it conflicts with."""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.multitask.base import Combiner


class PCGrad(Combiner):
    uses_task_gradients = True
    one_task_is_sum = True  # nothing to project a lone gradient off

    def __init__(self, num_tasks: int):
        super().__init__(num_tasks)
        self.register_buffer("last_weights", torch.ones(num_tasks))

    def direction(self, grads: Tensor, losses: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """For each task i, in a random order of the other tasks j: if g_i·g_j < 0, remove from g_i
        its component along g_j. The update is the sum of the projected gradients."""
        projected = grads.clone()
        num = len(grads)
        for i in range(num):  # loops over tasks only (a handful)
            for j in torch.randperm(num, generator=generator).tolist():
                if j == i:
                    continue
                dot = projected[i] @ grads[j]
                if dot < 0:
                    projected[i] -= dot / (grads[j] @ grads[j]).clamp_min(1e-20) * grads[j]
        # effective weight of each task: length of its projected gradient relative to the original
        self.last_weights = (projected.norm(dim=1) / grads.norm(dim=1).clamp_min(1e-20)).detach()
        return projected.sum(0)

    def weights(self) -> Tensor:
        return self.last_weights.cpu()
