"""The relssl command line. Argparse only: every command parses flags into a config and calls the
library; nothing in the library imports this package."""
from __future__ import annotations

import os

os.environ.setdefault("HF_HUB_OFFLINE", "1")  # before anything can import huggingface_hub

from relssl.cli.flags import add_run_flags, config_from_args, number_list, print_metrics  # noqa: E402
from relssl.cli.main import build_parser, main  # noqa: E402

__all__ = ["add_run_flags", "build_parser", "config_from_args", "main", "number_list", "print_metrics"]
