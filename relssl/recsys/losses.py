"""The loss terms shared by the recommenders; each returns one scalar so that a trainer (or a
later multi-task combiner) decides how they are weighted."""
from __future__ import annotations

import torch
import torch.nn.functional as F


def bpr(user: torch.Tensor, pos: torch.Tensor, neg: torch.Tensor) -> dict[str, torch.Tensor]:
    """BPR: -log σ(<u, i+> - <u, i->), and the batch's L2 norm of the embeddings involved
    (MMSSL's 'emb_loss': ½‖·‖² summed, divided by the batch size)."""
    margin = (user * pos).sum(-1) - (user * neg).sum(-1)
    reg = (user.square().sum() + pos.square().sum() + neg.square().sum()) / (2 * len(user))
    return {"bpr": -F.logsigmoid(margin).mean(), "reg": reg}


def info_nce(z1: torch.Tensor, z2: torch.Tensor, tau: float) -> torch.Tensor:
    """Row i of z1 should match row i of z2 (cosine / tau); the other rows of z2 and of z1 itself
    are the negatives (MMSSL's batched contrastive loss, computed with logsumexp)."""
    z1, z2 = F.normalize(z1, dim=-1), F.normalize(z2, dim=-1)
    between = z1 @ z2.T / tau
    within = (z1 @ z1.T / tau).fill_diagonal_(-torch.inf)
    return (torch.cat([between, within], 1).logsumexp(1) - between.diagonal()).mean()


def gradient_penalty(critic, z: torch.Tensor, weight_t: torch.Tensor) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (‖∇ critic(x̂)‖ - 1)² on interpolates x̂, given the critic's
    first-layer output z = x̂Wᵀ + b and ``weight_t`` = Wᵀ: ∇ = (∂critic/∂z) W, whose norm comes from
    the Gram matrix WWᵀ, so x̂ (a row over every item) is never built. Gradients reach the critic's
    weights only."""
    dz, = torch.autograd.grad(critic.head(z).sum(), z, create_graph=True)
    return ((dz @ _Gram.apply(weight_t) * dz).sum(1).clamp(min=1e-12).sqrt() - 1).square().mean()


class _Gram(torch.autograd.Function):
    """VᵀV with one product in its backward, V(G + Gᵀ): autograd's mm sees V twice and makes two,
    one of them into V's transposed layout."""

    @staticmethod
    def forward(ctx, v: torch.Tensor) -> torch.Tensor:
        ctx.save_for_backward(v)
        return v.T @ v

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        v, = ctx.saved_tensors
        return v @ (grad + grad.T)
