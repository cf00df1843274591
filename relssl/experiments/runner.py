"""Run a grid of pre-training configurations over seeds; finished runs are reused, so an
interrupted experiment continues where it stopped — but only runs trained with the settings asked
for now, so a report never mixes in results of an older command."""
from __future__ import annotations

from dataclasses import asdict, replace
from pathlib import Path


from relssl.logs import info
from relssl.data.cache import data_digests
from relssl.errors import RelsslError
from relssl.train.pretrain import PretrainConfig, pretrain
from relssl.train.run_folder import CONFIG, RunFolder

# Settings that change where or how fast a run trains, not what it computes.
RUNTIME_KEYS = frozenset({"device", "workers", "cache", "cache_dir", "log"})


def flatten(settings: dict, prefix: str = "") -> dict:
    flat = {}
    for key, value in settings.items():
        if isinstance(value, dict) and value:
            flat.update(flatten(value, f"{prefix}{key}."))
        else:
            flat[f"{prefix}{key}"] = list(value) if isinstance(value, tuple) else value
    return flat


def same_value(saved, wanted) -> bool:
    """Equal, or two spellings of one existing file (``data/x.csv`` and its absolute path)."""
    if saved == wanted:
        return True
    return (isinstance(saved, str) and isinstance(wanted, str) and Path(saved).exists() and Path(wanted).exists()
            and Path(saved).resolve() == Path(wanted).resolve())


def check_same_settings(run: Path, wanted, resolved: tuple[str, ...] = ()) -> None:
    """Refuse to reuse or resume the run in ``run`` when its config.yaml differs from the config
    dataclass ``wanted``. A setting the saved run predates counts as its default there (a folder
    trained before ``trees`` existed is not reused for ``trees: tuned``).

    ``resolved`` names keys the run stores resolved (e.g. a default task) or that do not matter to it,
    at any depth (``combiner_options`` leaves out ``train.combiner_options.beta``)."""
    if not (run / "config.yaml").exists():
        return
    saved = {**flatten(asdict(type(wanted)())), **flatten(RunFolder(run, writer=False).config())}
    ignore = RUNTIME_KEYS | set(resolved)
    differences = [f"{key} {saved[key]!r} there, {value!r} now" for key, value in flatten(asdict(wanted)).items()
                   if key in saved and ignore.isdisjoint(key.split(".")) and not same_value(saved[key], value)]
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
    return {"final": folder.final(), "history": folder.history()}


def run_grid(configs: dict[str, PretrainConfig], seeds: list[int], out: Path, progress: bool = True,
             log=info) -> dict[str, list[dict]]:
    """label -> one record per seed: {"seed", "final" (test metrics), "history" (metrics.jsonl)}."""
    results: dict[str, list[dict]] = {}
    for label, cfg in configs.items():
        results[label] = []
        for seed in seeds:
            run = out / "runs" / f"{label}-seed{seed}"
            wanted = replace(cfg, seed=seed)
            wanted.validate()
            record = reuse_or_train(run, wanted, lambda resume: pretrain(
                wanted, run, resume=resume, progress=progress, log=lambda msg: log(f"  {msg}")),
                f"{label}, seed {seed}", log)
            results[label].append({"seed": seed, **record})
    return results
