"""The combiner interface and the one routine that applies any combiner to a training step."""
from __future__ import annotations

from typing import Callable

import torch
from torch import Tensor, nn


class Combiner(nn.Module):
    """Turns per-task losses into gradients on the model's parameters.

    Loss-weighting combiners (sum, weighted, uncertainty weighting) implement ``combine``;
    gradient-manipulation combiners (MoCo, PCGrad, CAGrad) set ``uses_task_gradients`` and
    implement ``direction`` over per-task gradients of the shared parameters. State that must
    survive epochs (e.g. MoCo's tracked gradients and λ) lives in buffers, so it is saved in and
    restored from checkpoints with the state dict.
    """

    uses_task_gradients = False
    # True where one task's update is the plain sum's bit for bit (tested), so an experiment may
    # share the sum's run instead of training the same model again.
    one_task_is_sum = False
    OPTION_HELP: dict[str, str] = {}  # keyword options of __init__ (flag --<combiner>-<option>) -> help

    def __init__(self, num_tasks: int):
        super().__init__()
        self.num_tasks = num_tasks

    def combine(self, losses: Tensor) -> Tensor:
        raise NotImplementedError

    def direction(self, grads: Tensor, losses: Tensor, generator: torch.Generator | None = None) -> Tensor:
        """[T, P] per-task gradients of the shared parameters -> [P] update direction."""
        raise NotImplementedError

    def weights(self) -> Tensor:
        """[T] the current (effective) task weights, for logging."""
        raise NotImplementedError


def combined_backward(combiner: Combiner, losses: list[Tensor], shared: list[nn.Parameter],
                      task_specific: list[nn.Parameter], generator: torch.Generator | None = None,
                      reduce: Callable[[Tensor], Tensor] | None = None) -> None:
    """Fill ``.grad`` of every parameter from one forward pass's per-task losses.

    Gradient combiners need each task's gradient on the shared parameters: one backward pass per
    task through the shared graph (no extra forward). Task-specific parameters (heads) receive
    their own task's gradient, which is the gradient of the plain sum.

    ``reduce`` (data-parallel training) turns a tensor of this process's gradients into the global
    one; it is applied to the per-task gradients *before* the combiner, so a stateful combiner sees
    the same input, and evolves the same state, in every process.
    A loss without a graph (a task with no rows in this process's shard, a constant zero) has zero
    gradients: every process still takes part in every reduction.
    """
    stacked = torch.stack(losses)
    if not combiner.uses_task_gradients:
        combined = combiner.combine(stacked)
        if combined.requires_grad:
            combined.backward()
        if reduce is not None:
            reduce_grads([*shared, *task_specific], reduce)
        return
    shared = [p for p in shared if p.requires_grad]
    rows = []
    for loss in losses:
        grads = (torch.autograd.grad(loss, shared, retain_graph=True, allow_unused=True) if loss.requires_grad
                 else [None] * len(shared))
        rows.append(torch.cat([(g if g is not None else torch.zeros_like(p)).reshape(-1)
                               for g, p in zip(grads, shared)]))
    grads, stacked = torch.stack(rows), stacked.detach()
    if reduce is not None:
        grads, stacked = reduce(grads), reduce(stacked.clone())
    direction = combiner.direction(grads, stacked, generator)
    offset = 0
    for p in shared:
        n = p.numel()
        p.grad = direction[offset:offset + n].view_as(p).clone()
        offset += n
    heads = [p for p in task_specific if p.requires_grad]
    if heads:
        total = torch.stack(losses).sum()
        if total.requires_grad:
            torch.autograd.backward(total, inputs=heads)
        if reduce is not None:
            reduce_grads(heads, reduce)


def reduce_grads(params: list[nn.Parameter], reduce: Callable[[Tensor], Tensor]) -> None:
    """Reduce all gradients in one flat buffer; a parameter without a gradient in every process
    keeps none (an optimiser skips it, as it would in a single process)."""
    params = list({id(p): p for p in params if p.requires_grad}.values())
    if not params:
        return
    present = torch.tensor([p.grad is not None for p in params], dtype=torch.float32, device=params[0].device)
    flat = torch.cat([present, *[(p.grad if p.grad is not None else torch.zeros_like(p)).reshape(-1)
                                 for p in params]])
    flat = reduce(flat)
    offset = len(params)
    for p, has_grad in zip(params, flat[:len(params)].tolist()):
        n = p.numel()
        p.grad = flat[offset:offset + n].view_as(p).clone() if has_grad else None
        offset += n
