"""The input pipeline: the next steps' batches are sampled and assembled in background threads
while the current step computes.

Each step's batch depends only on its own seed rows and its own generator (seeded by the run's
seed, the epoch and the step: relssl.train.seeding), never on what another step drew, so building
step k+1 ahead of step k changes nothing: the same seed gives the same batches with 0, 1 or 8
workers. Threads, not processes: sampling and gathering are torch and numpy kernels that release
the GIL, the prepared tensors (memory-mapped cache entries) are shared without copies, and a
worker's batch needs no pickling on its way back. The step's loss comes back the other way one
step late (``LaggedValue``), so the host never waits for the device inside a step.
"""
from __future__ import annotations

from collections import deque
from concurrent.futures import Future, ThreadPoolExecutor
from typing import Callable, Generic, Iterator, TypeVar

import torch

T = TypeVar("T")


class Prefetcher(Generic[T]):
    """``make(0), make(1), ..., make(steps - 1)`` in order; with ``workers`` > 0 each is built by
    a pool of that many threads up to ``depth`` steps ahead of the one being consumed (a bounded
    queue: at most ``depth`` + 1 batches exist, the one in use and those ahead; ``initializer``
    runs once in each thread, e.g. to select its CUDA device). An error in a worker is raised where its step is
    consumed; leaving the loop early (an error, Ctrl-C, early stopping) cancels what is queued and
    waits for the running builds, so no thread outlives the epoch."""

    def __init__(self, make: Callable[[int], T], steps: int, workers: int = 0, depth: int | None = None,
                 initializer: Callable[[], None] | None = None):
        if workers < 0:
            raise ValueError(f"workers must be >= 0, got {workers}")
        self.make, self.steps, self.workers, self.initializer = make, steps, workers, initializer
        self.depth = max(1, depth if depth is not None else 2 * workers)

    def __iter__(self) -> Iterator[T]:
        if self.workers == 0:
            for step in range(self.steps):
                yield self.make(step)
            return
        pool = ThreadPoolExecutor(self.workers, thread_name_prefix="relssl-input", initializer=self.initializer)
        queued: deque[Future] = deque()
        try:
            ahead = 0
            for step in range(self.steps):
                while ahead < self.steps and ahead <= step + self.depth:
                    queued.append(pool.submit(self.make, ahead))
                    ahead += 1
                yield queued.popleft().result()
        finally:
            for future in queued:
                future.cancel()
            pool.shutdown(wait=True, cancel_futures=True)

    def __len__(self) -> int:
        return self.steps


class LaggedValue:
    """A step's 0-d device tensor (its loss) read on the host later, without draining the device's
    queue: on CUDA it is copied into pinned memory behind the step's kernels and ``read`` waits for
    that copy alone, so the training loop reads step k's loss after queueing step k + 1 and the GPU
    never idles for the read. On the CPU it is the value itself."""

    def __init__(self, value: torch.Tensor):
        value = value.detach()
        self.event = None
        if value.is_cuda:
            self.value = torch.empty((), dtype=value.dtype, pin_memory=True)
            self.value.copy_(value, non_blocking=True)
            self.event = torch.cuda.Event()
            self.event.record(torch.cuda.current_stream(value.device))  # the copy's device, not the current one
        else:
            self.value = value

    def read(self) -> float:
        if self.event is not None:
            self.event.synchronize()
        return float(self.value)
