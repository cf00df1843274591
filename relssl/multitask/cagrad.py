"""CAGrad (Liu et al., NeurIPS 2021): the update that best improves the worst task within a ball
around the average gradient."""
from __future__ import annotations

import numpy as np
import torch
from torch import Tensor

from relssl.multitask.base import Combiner


class CAGrad(Combiner):
    """d = g0 + (√φ / ‖g_w‖) g_w, with g0 the mean gradient, φ = c² ‖g0‖² and
    w = argmin_{w ∈ simplex} g_wᵀ g0 + √φ ‖g_w‖ (a T-dimensional problem); rescaled by 1/(1 + c²)."""

    uses_task_gradients = True
    OPTION_HELP = {"c": "CAGrad: radius of the ball around the mean gradient, in units of its norm"}

    def __init__(self, num_tasks: int, c: float = 0.5):
        super().__init__(num_tasks)
        self.c = c
        self.register_buffer("last_weights", torch.full((num_tasks,), 1.0 / num_tasks))

    def direction(self, grads: Tensor, losses: Tensor, generator: torch.Generator | None = None) -> Tensor:
        from scipy.optimize import minimize  # here, not at the top: 0.4 s at the start of every relssl command

        num = len(grads)
        gram = (grads @ grads.T).double().cpu().numpy()
        g0_norm = np.sqrt(max(gram.mean(), 1e-20))
        phi_sqrt = self.c * g0_norm
        mean_row = gram.mean(axis=1)

        def objective(w):
            return w @ mean_row + phi_sqrt * np.sqrt(max(w @ gram @ w, 1e-20))

        res = minimize(objective, np.full(num, 1.0 / num), bounds=[(0, 1)] * num,
                       constraints={"type": "eq", "fun": lambda w: w.sum() - 1}, method="SLSQP")
        w = torch.tensor(res.x, dtype=grads.dtype, device=grads.device)
        gw = w @ grads
        g0 = grads.mean(0)
        d = g0 + phi_sqrt / gw.norm().clamp_min(1e-20) * gw
        self.last_weights = (1.0 / num + phi_sqrt / float(gw.norm().clamp_min(1e-20)) * w).detach() / (1 + self.c ** 2)
        return d / (1 + self.c ** 2)

    def weights(self) -> Tensor:
        return self.last_weights.cpu()
