"""Combiners that weight losses: plain sum, fixed weights, uncertainty weighting (Kendall et al.)."""
from __future__ import annotations

import torch
from torch import Tensor, nn

from relssl.multitask.base import Combiner


class SumCombiner(Combiner):
    one_task_is_sum = True

    def combine(self, losses: Tensor) -> Tensor:
        return losses.sum()

    def weights(self) -> Tensor:
        return torch.ones(self.num_tasks)


class WeightedSum(Combiner):
    def __init__(self, weights: list[float]):
        super().__init__(len(weights))
        self.register_buffer("task_weights", torch.tensor(weights, dtype=torch.float32))

    def combine(self, losses: Tensor) -> Tensor:
        return (self.task_weights.to(losses.device) * losses).sum()

    def weights(self) -> Tensor:
        return self.task_weights.detach().cpu()


class UncertaintyWeighting(Combiner):
    """Kendall, Gal & Cipolla (2018): L = Σ exp(-s_i) L_i + s_i with learned s_i = log σ_i²;
    the s_i are trained by the run's optimiser together with the model."""

    def __init__(self, num_tasks: int):
        super().__init__(num_tasks)
        self.log_var = nn.Parameter(torch.zeros(num_tasks))

    def combine(self, losses: Tensor) -> Tensor:
        return (torch.exp(-self.log_var) * losses + self.log_var).sum()

    def weights(self) -> Tensor:
        return torch.exp(-self.log_var.detach()).cpu()
