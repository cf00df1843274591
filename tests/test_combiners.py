import pytest
import torch
from torch import nn
from torch.nn import functional as F

from relssl.errors import RelsslError
from relssl.multitask import COMBINERS, build_combiner
from relssl.multitask.base import combined_backward
from relssl.multitask.moco import MoCo, project_simplex


def conflicting_grads():
    # two tasks whose gradients point 135 degrees apart, of different lengths
    return torch.tensor([[1.0, 0.0, 0.5], [-1.0, 1.0, -0.5]])


def test_project_simplex():
    for v in (torch.tensor([0.2, 0.3, 0.5]), torch.tensor([2.0, -1.0, 0.5]), torch.randn(7) * 3):
        p = project_simplex(v)
        assert torch.all(p >= 0) and abs(float(p.sum()) - 1) < 1e-6
    assert torch.allclose(project_simplex(torch.tensor([0.2, 0.3, 0.5])), torch.tensor([0.2, 0.3, 0.5]))
    assert torch.allclose(project_simplex(torch.tensor([3.0, 0.0])), torch.tensor([1.0, 0.0]))
    assert torch.allclose(project_simplex(torch.tensor([0.5, 0.5, -2.0]) + 0.25), torch.tensor([0.5, 0.5, 0.0]))


def test_moco_lambda_on_simplex_and_direction_agrees_with_every_tracked_gradient():
    moco = MoCo(2)
    g = conflicting_grads()
    gen = torch.Generator().manual_seed(0)
    for _ in range(2000):
        noisy = g + 0.05 * torch.randn(g.shape, generator=gen)
        d = moco.direction(noisy, torch.ones(2))
        assert torch.all(moco.lambd >= 0) and abs(float(moco.lambd.sum()) - 1) < 1e-5
    # λ converges to the min-norm point of conv(Y): the direction agrees with each tracked gradient
    assert torch.all(moco.y @ d >= -1e-3), moco.y @ d
    assert int(moco.step) == 2000


def test_moco_state_round_trips_through_a_checkpoint(tmp_path):
    a = MoCo(3, beta=0.3)
    gen = torch.Generator().manual_seed(1)
    for _ in range(5):
        a.direction(torch.randn(3, 10, generator=gen), torch.ones(3))
    torch.save(a.state_dict(), tmp_path / "c.pt")
    b = MoCo(3, beta=0.3)
    b.load_state_dict(torch.load(tmp_path / "c.pt", weights_only=True))
    assert torch.equal(a.y, b.y) and torch.equal(a.lambd, b.lambd) and int(a.step) == int(b.step)
    g = torch.randn(3, 10, generator=gen)
    assert torch.equal(a.direction(g, torch.ones(3)), b.direction(g, torch.ones(3)))


def test_pcgrad_removes_conflicts():
    pc = build_combiner("pcgrad", 2)
    g = conflicting_grads()
    d = pc.direction(g, torch.ones(2), torch.Generator().manual_seed(0))
    # with two tasks each projected gradient is orthogonal to the other's gradient; no negative cosine
    p0 = g[0] - (g[0] @ g[1]) / (g[1] @ g[1]) * g[1]
    p1 = g[1] - (g[1] @ g[0]) / (g[0] @ g[0]) * g[0]
    assert torch.allclose(d, p0 + p1, atol=1e-6)
    # the update conflicts with neither task (each p_i is orthogonal to the other task's gradient)
    assert float(d @ g[0]) > 0 and float(d @ g[1]) > 0 and float(g[0] @ g[1]) < 0
    agreeing = torch.tensor([[1.0, 0.0], [1.0, 1.0]])
    assert torch.allclose(pc.direction(agreeing, torch.ones(2)), agreeing.sum(0))


def test_cagrad_improves_the_worst_task_over_the_mean():
    ca = build_combiner("cagrad", 2)
    g = conflicting_grads()
    d = ca.direction(g, torch.ones(2))
    g0 = g.mean(0)
    assert float((g @ d).min()) * (1 + 0.5 ** 2) >= float((g @ g0).min()) - 1e-6
    assert float((g @ d).min()) > 0


def test_uncertainty_weighting_and_weighted_sum():
    uw = build_combiner("uw", 2)
    losses = torch.tensor([1.0, 3.0])
    assert uw.combine(losses).item() == pytest.approx(4.0)
    ws = build_combiner("weighted", 2, weights=[0.5, 2.0])
    assert float(ws.combine(losses)) == pytest.approx(6.5)
    with pytest.raises(RelsslError, match="--weights"):
        build_combiner("weighted", 2, weights=[1.0])
    with pytest.raises(RelsslError, match="--combiner 'mean'"):
        build_combiner("mean", 2)


def test_combined_backward_fills_shared_and_head_gradients():
    torch.manual_seed(0)
    trunk, heads = nn.Linear(3, 4), nn.ModuleList([nn.Linear(4, 1), nn.Linear(4, 1)])
    x = torch.randn(8, 3)

    def losses():
        z = trunk(x)
        return [heads[0](z).pow(2).mean(), (heads[1](z) - 1).pow(2).mean()]

    shared, own = list(trunk.parameters()), list(heads.parameters())
    combined_backward(build_combiner("sum", 2), losses(), shared, own)
    expected = [p.grad.clone() for p in [*shared, *own]]
    for p in [*shared, *own]:
        p.grad = None
    # a gradient combiner whose direction is the plain sum must reproduce the same gradients
    pc = build_combiner("pcgrad", 2)
    pc.direction = lambda grads, losses, generator=None: grads.sum(0)
    combined_backward(pc, losses(), shared, own)
    for p, e in zip([*shared, *own], expected):
        assert torch.allclose(p.grad, e, atol=1e-6)


def test_moco_weights_move_away_from_uniform_when_tasks_conflict():
    # normalised to its loss, the second task's gradient is three times as long as the first
    g, losses = conflicting_grads(), torch.tensor([1.0, 3.0])
    y = g / g.norm(dim=1, keepdim=True) * losses.unsqueeze(1)
    # min over λ of |λ y0 + (1 - λ) y1|², in closed form: the point MoCo's λ tracks
    best = float((y[1] @ (y[1] - y[0])) / (y[1] - y[0]).pow(2).sum())
    assert best > 0.7
    for options in ({}, {"gamma": 0.1, "gamma_sigma": 0.5}):  # the defaults, and LibMTL's smaller steps
        moco = MoCo(2, **options)
        gen = torch.Generator().manual_seed(0)
        trace = []
        for _ in range(300):
            moco.direction(g + 0.05 * torch.randn(g.shape, generator=gen), losses)
            trace.append(float(moco.lambd[0]))
        assert max(abs(w - 0.5) for w in trace) > 0.2, options
    # with steps small enough to settle, λ lands near the min-norm point and the direction agrees
    # with both normalised task gradients (a common descent direction)
    assert abs(trace[-1] - best) < 0.1, (trace[-1], best)
    assert torch.all(y @ moco.direction(g, losses) > 0)


def test_one_task_is_sum_bit_for_bit_exactly_where_a_combiner_says_so():
    """Experiments share the sum's run for a lone task under a combiner that says it is the sum:
    the claim must hold bit for bit, and a combiner that differs must not make it."""
    def grads(name):
        torch.manual_seed(0)
        trunk, head = nn.Linear(3, 4), nn.Linear(4, 1)
        combiner = build_combiner(name, 1)
        params = [*trunk.parameters(), *head.parameters(), *combiner.parameters()]
        optimizer = torch.optim.SGD(params, lr=0.1)
        for _ in range(3):  # trained a few steps: UW's log-variance and MoCo's state move
            optimizer.zero_grad()
            combined_backward(combiner, [head(trunk(torch.randn(8, 3))).pow(2).mean()], list(trunk.parameters()),
                              [*head.parameters(), *combiner.parameters()], torch.Generator().manual_seed(0))
            optimizer.step()
        return [p.grad.clone() for p in [*trunk.parameters(), *head.parameters()]]

    reference = grads("sum")
    for name, combiner in COMBINERS.items():
        if name == "weighted":
            continue
        same = all(torch.equal(a, b) for a, b in zip(reference, grads(name)))
        assert same == combiner.one_task_is_sum, name
    assert {n for n, c in COMBINERS.items() if c.one_task_is_sum} == {"sum", "moco", "pcgrad"}


@pytest.mark.parametrize("name", ["sum", "uw", "moco", "pcgrad", "cagrad"])
def test_a_task_without_rows_in_this_shard_has_zero_gradients(name):
    """A data-parallel rank may hold no row of a task's table: its loss is a constant zero with no
    graph, and every combiner must still fill the others' gradients (and take part in reductions)."""
    w, head = nn.Parameter(torch.tensor([1.0, -2.0])), nn.Parameter(torch.tensor(0.5))
    combiner = build_combiner(name, 2)
    calls = []

    def reduce(g):
        calls.append(g.shape)
        return g

    losses = [((w * head) ** 2).sum(), torch.zeros(())]
    alone = torch.autograd.grad(losses[0], w, retain_graph=True)[0]
    combined_backward(combiner, losses, [w], [head, *combiner.parameters()], torch.Generator().manual_seed(0), reduce)
    assert w.grad is not None and torch.isfinite(w.grad).all()
    # the empty task adds nothing: the update is the other task's gradient (exactly, for the sums;
    # rescaled, for the combiners that weigh or normalise the tasks)
    assert float(F.cosine_similarity(w.grad, alone, dim=0)) > 1 - 1e-6, (w.grad, alone)
    if name in ("sum", "pcgrad"):
        assert torch.equal(w.grad, alone)
    assert calls  # the reductions every other rank waits for were made
