"""Two gloo processes, each with its own input-pipeline threads, follow the single-process run
(batches built in its loop) with the same global batch and seed."""
from __future__ import annotations

import os
import socket

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp

from relssl.data.prepare import prepare, prepare_database
from relssl.nn.backbone import ModelConfig
from relssl.train.pretrain import PretrainConfig, Pretrainer
from tests.conftest import toy_relational

STEPS = 3


def config(database: bool = False) -> PretrainConfig:
    # Draws that do not depend on how a batch is sharded: every cell masked and removed, fan-outs
    # above every degree (whole neighbourhoods). MoCo checks that its state stays identical. The
    # database: pretext tasks on two of its tables, whose batches shard unevenly (32 + 31 rows of
    # one table, 18 + 18 of the other).
    size = 63 if database else 64
    return PretrainConfig(objectives=["mcm", "am"], mask="remove", mask_prob=1.0, batch_size=size,
                          train_rows_per_epoch=size, eval_rows=128, combiner="moco", device="cpu", seed=3,
                          tables=["ratings", "movies"] if database else [],
                          model=ModelConfig(channels=16, heads=2, row_layers=1, fanouts=[100]))


def data(database: bool):
    if database:
        from tests.test_database_tasks import ratings_database

        return prepare_database(ratings_database(600), "ratings", pretext=["ratings", "movies"])
    return prepare(toy_relational(1200))


def flat_params(trainer: Pretrainer) -> torch.Tensor:
    return torch.cat([p.detach().reshape(-1) for p in [*trainer.model.parameters(), *trainer.task_parameters()]])


def run(trainer: Pretrainer) -> tuple[list[float], list[torch.Tensor], list[torch.Tensor]]:
    """One step per epoch: the reduced training loss, parameters and MoCo's λ after each step."""
    losses, params, lambdas = [], [], []
    for epoch in range(1, STEPS + 1):
        losses.append(trainer.train_epoch(epoch, progress=False)["loss"])
        params.append(flat_params(trainer))
        lambdas.append(trainer.combiner.lambd.clone())
    losses.append(trainer.evaluate(1)["loss"])
    return losses, params, lambdas


def worker(rank: int, port: int, out: str, database: bool) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port), WORLD_SIZE="2", RANK=str(rank), LOCAL_RANK=str(rank))
    torch.set_num_threads(1)
    cfg = config(database)
    cfg.workers = 2  # each rank's own input pipeline; the single process below builds in its loop
    trainer = Pretrainer(cfg, data(database))
    assert trainer.world.size == 2 and trainer.workers == 2
    losses, params, lambdas = run(trainer)
    same = []
    for p in params:  # every rank holds identical parameters after each step
        gathered = [torch.empty_like(p) for _ in range(2)]
        dist.all_gather(gathered, p)
        same.append(bool(torch.equal(gathered[0], gathered[1])))
    if rank == 0:
        torch.save({"losses": losses, "params": params[-1], "lambd": lambdas[-1], "same": same}, out)
    dist.destroy_process_group()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.mark.slow
@pytest.mark.parametrize("database", [False, True])
def test_two_gloo_processes_follow_one_process(tmp_path, database):
    out = tmp_path / "rank0.pt"
    mp.start_processes(worker, args=(free_port(), str(out), database), nprocs=2, start_method="spawn")
    two = torch.load(out, weights_only=True)
    losses2, params2, lambd2, same = two["losses"], two["params"], two["lambd"], two["same"]
    single = Pretrainer(config(database), data(database))
    assert not single.world.enabled
    losses1, params1, lambdas1 = run(single)
    assert same == [True] * STEPS
    torch.testing.assert_close(params2, params1[-1], rtol=1e-3, atol=1e-5)
    # The reported loss averages each rank's batch means: with uneven shards not exactly the global
    # mean (the gradients are exact, above).
    torch.testing.assert_close(torch.tensor(losses2), torch.tensor(losses1), rtol=1e-2 if database else 1e-4, atol=1e-5)
    torch.testing.assert_close(lambd2, lambdas1[-1], rtol=1e-3, atol=1e-5)
    assert losses1[0] != losses1[1]  # the steps did change the model


def test_a_cuda_rank_selects_its_gpu_before_joining_nccl(monkeypatch):
    """Under torchrun on GPUs each rank sets its own device (LOCAL_RANK) before the NCCL group
    exists, so the first collective (a barrier) runs on that GPU, not on GPU 0 for every rank."""
    from relssl.train import distributed

    calls = []
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "set_device", lambda index: calls.append(("set_device", index)))
    monkeypatch.setattr(dist, "is_initialized", lambda: False)
    monkeypatch.setattr(dist, "init_process_group", lambda backend: calls.append(("init", backend)))
    monkeypatch.setattr(dist, "get_rank", lambda: 1)
    monkeypatch.setattr(dist, "get_world_size", lambda: 2)
    world = distributed.init_world("cuda")
    assert calls == [("set_device", 1), ("init", "nccl")] and world.local_rank == 1
    calls.clear()
    distributed.init_world("cpu")
    assert calls == [("init", "gloo")]
