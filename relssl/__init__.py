"""relssl: self-supervised representation learning on relational multimodal data.

The Python API (relssl.api, docs/api.md): ``pretrain``, ``finetune``, ``load``, ``from_dataframe``, ``from_relbench``, and the run
objects they return, ``Pretrained`` (``.embed()``) and ``Finetuned`` (``.predict()``). They load
on first use, so that ``import relssl`` (and the command line's start) stays light.
"""

from relssl.version import __version__

__all__ = ["Finetuned", "Pretrained", "__version__", "finetune", "from_dataframe", "from_relbench", "load", "pretrain"]


def __getattr__(name: str):
    if name in __all__:
        import relssl.api as api

        return getattr(api, name)
    raise AttributeError(f"module 'relssl' has no attribute {name!r}")
