"""Run a grid of pre-training configurations over seeds; finished runs are reused, so an
interrupted experiment continues where it stopped — but only runs trained with the settings asked
for now, so a report never mixes in results of an older command. With ``jobs`` > 1 the runs train
in that many processes at once (relssl.experiments.parallel), each with its share of the torch threads."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path

from relssl.experiments.parallel import train_unfinished
from relssl.logs import info
from relssl.data.cache import data_digests
from relssl.errors import RelsslError
from relssl.train.pretrain import PretrainConfig, pretrain
from relssl.train.run_folder import CONFIG, RUNTIME_KEYS, RunFolder, setting_differences
from relssl.version import source_digest


def check_same_settings(run: Path, wanted, resolved: tuple[str, ...] = ()) -> None:
    """Refuse to reuse or resume the run in ``run`` when its config.yaml differs from the config
    dataclass ``wanted`` (a folder trained before ``trees`` existed is not reused for ``trees: tuned``).

    ``resolved`` names settings the run stores resolved (e.g. a default task) or that do not matter
    to it, at any level of nesting (``combiner_options`` also leaves out ``train.combiner_options``)."""
    if not (run / CONFIG).exists():
        return
    differences = setting_differences(RunFolder(run, writer=False).config(), asdict(wanted), asdict(type(wanted)()),
                                      RUNTIME_KEYS | set(resolved))
    if differences:
        raise RelsslError(f"{run} holds a run trained with other settings ({'; '.join(differences[:3])}"
                          f"{'; ...' if len(differences) > 3 else ''}); choose another --out or delete that folder")


def reuse_or_train(run: Path, wanted, train, label: str, log=info, resolved: tuple[str, ...] = ()) -> dict:
    """The one reuse rule of every experiment: a finished run in ``run`` trained with the config
    ``wanted`` is read back, an unfinished one continues (``train(resume=True)``), a missing one
    trains (``train(resume=False)``), and a run with other settings is refused. Returns
    {"final" (test metrics), "history" (metrics.jsonl)}."""
    check_same_settings(run, wanted, resolved)
    folder = RunFolder(run)
    settings = getattr(wanted, "train", wanted)  # a fine-tuning run's data is its train settings'
    folder.check_data(data_digests(settings.data, getattr(settings, "cache_dir", None)), resume=(run / CONFIG).exists(),
                      refusal=f"{run} holds a run trained on other data ({{what}} since); choose another --out or "
                              f"delete that folder")
    if not folder.finished:
        log(f"[{label}] training into {run}")
        train(resume=(run / CONFIG).exists())
    elif folder.code() != [source_digest()]:  # the report says so too (relssl.experiments.report)
        log(f"[{label}] reusing {run}, trained by other relssl source "
            f"({', '.join(folder.code()) or 'not recorded'}; this is {source_digest()})")
    return {"final": folder.final(), "history": folder.history()}


def train_pretrain_run(run: Path, wanted: PretrainConfig, label: str) -> None:
    """One grid run in a worker process (its epoch lines named by ``label``)."""
    reuse_or_train(run, wanted, lambda resume: pretrain(wanted, run, resume=resume, progress=False,
                                                        log=lambda msg: info(f"  [{label}] {msg}")), label)


def run_grid(configs: dict[str, PretrainConfig], seeds: list[int], out: Path, progress: bool = True,
             log=info, jobs: int = 1) -> dict[str, list[dict]]:
    """label -> one record per seed: {"seed", "final" (test metrics), "history" (metrics.jsonl)}.
    ``jobs`` > 1: the unfinished runs train that many at a time first, then every run is read."""
    grid = [(label, seed, out / "runs" / f"{label}-seed{seed}", replace(cfg, seed=seed))
            for label, cfg in configs.items() for seed in seeds]
    for *_, wanted in grid:
        wanted.validate()
    if jobs > 1:
        train_unfinished(jobs, train_pretrain_run, [(f"{label}, seed {seed}", run, wanted)
                                                    for label, seed, run, wanted in grid])
    results: dict[str, list[dict]] = {label: [] for label in configs}
    for label, seed, run, wanted in grid:
        record = reuse_or_train(run, wanted, lambda resume: pretrain(
            wanted, run, resume=resume, progress=progress, log=lambda msg: log(f"  {msg}")),
            f"{label}, seed {seed}", log)
        results[label].append({"seed": seed, **record})
    return results
