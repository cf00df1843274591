"""``--jobs``: an experiment's runs trained several at a time, one spawned process per run.

Written on multiprocessing.Process rather than a pool: a pool loses the task of a worker that
dies (killed for memory, a crash) and waits for it for ever, and cannot stop the runs still going
when one fails. Here the parent watches every process: the first error, or a process that dies,
stops the others and is raised (a stopped run resumes from its last checkpoint); a worker also
ends when the parent does, however the parent ends (Linux), so no run trains on orphaned.
"""
from __future__ import annotations

import ctypes
import logging
import multiprocessing
import os
import signal
import sys
import time
import traceback
from logging.handlers import QueueHandler, QueueListener
from pathlib import Path
from typing import Callable

import torch

from relssl.errors import RelsslError
from relssl.logs import LOG
from relssl.train.run_folder import RunFolder

PR_SET_PDEATHSIG = 1  # prctl(2): the signal this process gets when its parent exits
RAISED_AS = {"RelsslError": RelsslError, "MemoryError": MemoryError, "KeyboardInterrupt": KeyboardInterrupt}


class _ToParentLog(logging.Handler):
    """In the parent: a worker's log record, through relssl's logger as if logged here."""

    def emit(self, record: logging.LogRecord) -> None:
        if LOG.isEnabledFor(record.levelno):
            LOG.handle(record)


def _end_with_parent(parent: int) -> None:
    """Linux: SIGTERM when the parent exits (not otherwise available; elsewhere a killed parent's
    workers finish their runs)."""
    try:
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM)
    except (OSError, AttributeError):
        return
    if os.getppid() != parent:  # the parent ended before the request took effect
        sys.exit(1)


def _worker(label: str, function: Callable, args: tuple, threads: int, logs, errors, parent: int) -> None:
    """One run: its share of the torch threads, its log records to the parent, its error (type
    and message; the traceback of an unexpected one on stderr) to the parent."""
    _end_with_parent(parent)
    torch.set_num_threads(threads)
    LOG.handlers[:] = [QueueHandler(logs)]
    LOG.setLevel(logging.DEBUG)  # the parent's level and handlers decide
    LOG.propagate = False
    try:
        function(*args)
    except BaseException as err:
        if not isinstance(err, (RelsslError, KeyboardInterrupt)):
            traceback.print_exc()
        kind = "RelsslError" if isinstance(err, RelsslError) else type(err).__name__
        errors.put((label, kind, str(err)))
        sys.exit(1)


def run_parallel(jobs: int, calls: list[tuple[str, Callable, tuple]]) -> None:
    """Each ``(label, function, args)`` of ``calls`` (a module-level function and picklable
    arguments) in a fresh process, ``jobs`` at a time (spawned: a forked OpenMP runtime can hang),
    each with 1/jobs of this process's torch threads (at least one). A run's result depends on its
    settings and its thread count, not on ``jobs``."""
    ctx = multiprocessing.get_context("spawn")
    logs, errors = ctx.Queue(), ctx.SimpleQueue()
    listener = QueueListener(logs, _ToParentLog())
    listener.start()
    threads = max(1, torch.get_num_threads() // jobs)
    waiting, running = list(calls), {}
    try:
        while waiting or running:
            while waiting and len(running) < jobs:
                label, function, args = waiting.pop(0)
                process = ctx.Process(target=_worker, args=(label, function, args, threads, logs, errors, os.getpid()),
                                      daemon=True)
                process.start()
                running[label] = process
            for label, process in list(running.items()):
                if process.exitcode is None:
                    continue
                del running[label]
                if not errors.empty():  # a worker puts its error before it exits
                    failed, kind, message = errors.get()
                    raise RAISED_AS.get(kind, RuntimeError)(
                        message if kind in RAISED_AS else f"[{failed}] {kind}: {message} (its traceback above)")
                code = process.exitcode
                if code != 0:
                    why = f"killed by signal {-code}" + ("; out of memory?" if code == -9 else "") if code < 0 \
                        else f"exit code {code}"
                    raise RelsslError(f"[{label}] its process died ({why}); the run resumes from its last checkpoint "
                                      f"when the experiment is run again")
            time.sleep(0.1)
    finally:
        for process in running.values():
            process.terminate()
        for process in running.values():
            process.join()
        listener.stop()


def train_unfinished(jobs: int, train: Callable, runs: list[tuple[str, Path, object]]) -> None:
    """``train(run, config, label)`` for each ``(label, run folder, config)`` not yet finished,
    ``jobs`` at a time: an experiment's grid, before it reads every run back in order."""
    run_parallel(jobs, [(label, train, (run, wanted, label)) for label, run, wanted in runs
                        if not RunFolder(run).finished])
