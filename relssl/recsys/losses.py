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


def gumbel_softmax(logits: torch.Tensor, tau: float, gen: torch.Generator, noise_scale: float = 1.0) -> torch.Tensor:
    """softmax((logits + noise_scale · Gumbel noise) / tau), with the noise from a seeded generator."""
    u = torch.rand(logits.shape, generator=gen).to(logits.device)
    gumbel = -torch.log(-torch.log(u + 1e-8) + 1e-8)
    return F.softmax((logits + noise_scale * gumbel) / tau, dim=-1)


def gradient_penalty(critic, real: torch.Tensor, fake: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    """WGAN-GP (Gulrajani et al. 2017): (‖∇ critic(x̂)‖ - 1)² on random interpolates x̂."""
    alpha = torch.rand(len(real), 1, generator=gen).to(real.device)
    mixed = (alpha * real + (1 - alpha) * fake).detach().requires_grad_(True)
    grad, = torch.autograd.grad(critic(mixed).sum(), mixed, create_graph=True)
    return (grad.norm(dim=1) - 1).square().mean()
