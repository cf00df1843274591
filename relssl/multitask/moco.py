"""MoCo — multi-objective gradient correction (Fernando et al., ICLR 2023), as the paper states it.

Per task a tracked gradient of the shared parameters, y_i ← y_i − β_t (y_i − g_i); task weights
λ ← Π_simplex(λ − γ_t (Y Yᵀ + ρ I) λ); update direction Yᵀ λ; step sizes β_t = β / t^σβ and
γ_t = γ / t^σγ decay with the step t. Each task's gradient is first normalised to the length of
its loss, g_i ← g_i / ‖g_i‖ · L_i, as the reference implementations do (LibMTL's MoCo, built from
the authors' code): without it the task with the largest gradient owns Y Yᵀ and λ hardly moves.

Defaults: β = 0.999, σβ = 0.1, γ = 0.999, σγ = 0.1, ρ = 0.05, the settings of the multi-task
framework the project's poster ran (so its "MoCo" rows can be compared). LibMTL's own defaults are
β = 0.5, σβ = 0.5, γ = 0.1, σγ = 0.5, ρ = 0, and LibMTL replaces the simplex projection by a
softmax; both are reachable through the options, the softmax is not implemented.

With one task MoCo is exactly Sum (no tracking, no normalisation): a single objective has nothing
to balance. Y, λ and t are buffers: they persist across epochs and are saved in checkpoints.
"""
from __future__ import annotations

import torch
from torch import Tensor

from relssl.multitask.base import Combiner


def project_simplex(v: Tensor) -> Tensor:
    """Euclidean projection onto {x ≥ 0, Σ x = 1} (sort-based, exact). On the host: ``v`` has one
    entry per task, and CUDA's cumsum is not deterministic."""
    device, v = v.device, v.cpu()
    u, _ = torch.sort(v, descending=True)
    css = torch.cumsum(u, 0) - 1
    k = torch.arange(1, len(v) + 1, device=v.device, dtype=v.dtype)
    rho = int((u - css / k > 0).nonzero().max())
    theta = css[rho] / (rho + 1)
    return torch.clamp(v - theta, min=0).to(device)


class MoCo(Combiner):
    uses_task_gradients = True
    one_task_is_sum = True
    OPTION_HELP = {"beta": "MoCo: step size of the tracked gradients, beta_t = beta / t^beta_sigma",
                   "beta_sigma": "MoCo: decay exponent of beta", "gamma": "MoCo: step size of the task weights "
                   "lambda, gamma_t = gamma / t^gamma_sigma", "gamma_sigma": "MoCo: decay exponent of gamma",
                   "rho": "MoCo: regularisation of the weights' subproblem"}

    def __init__(self, num_tasks: int, beta: float = 0.999, beta_sigma: float = 0.1, gamma: float = 0.999,
                 gamma_sigma: float = 0.1, rho: float = 0.05):
        super().__init__(num_tasks)
        self.uses_task_gradients = num_tasks > 1
        self.beta, self.beta_sigma, self.gamma, self.gamma_sigma, self.rho = beta, beta_sigma, gamma, gamma_sigma, rho
        self.register_buffer("y", torch.zeros(0))  # [T, P], sized on the first step
        self.register_buffer("lambd", torch.full((num_tasks,), 1.0 / num_tasks))
        self.register_buffer("step", torch.zeros((), dtype=torch.long))

    def direction(self, grads: Tensor, losses: Tensor, generator: torch.Generator | None = None) -> Tensor:
        if self.y.shape != grads.shape:
            self.y = torch.zeros_like(grads)
        self.step += 1
        t = float(self.step)
        beta_t = self.beta / t ** self.beta_sigma
        gamma_t = self.gamma / t ** self.gamma_sigma
        grads = grads / (grads.norm(dim=1, keepdim=True) + 1e-8) * losses.unsqueeze(1)
        self.y = self.y - beta_t * (self.y - grads)
        gram = self.y @ self.y.T + self.rho * torch.eye(self.num_tasks, device=grads.device, dtype=grads.dtype)
        self.lambd = project_simplex(self.lambd.to(grads.dtype) - gamma_t * gram @ self.lambd.to(grads.dtype))
        return self.y.T @ self.lambd

    def combine(self, losses: Tensor) -> Tensor:
        return losses.sum()  # one task

    def weights(self) -> Tensor:
        return self.lambd.detach().cpu()

    def _load_from_state_dict(self, state_dict, prefix, *args, **kwargs):
        # y is sized by the model's shared parameters; adopt the checkpoint's shape before copying.
        key = prefix + "y"
        if key in state_dict:
            self.y = torch.empty_like(state_dict[key])
        super()._load_from_state_dict(state_dict, prefix, *args, **kwargs)
