"""User-facing errors: one clear line, exit code 2, no traceback unless --debug."""
import errno


class RelsslError(Exception):
    """Bad input or option: the message names the file/column/option and what was expected."""


def out_of_memory(err: BaseException) -> bool:
    """A MemoryError, or torch's and pyarrow's allocation failures (CPU and CUDA)."""
    text = str(err)
    return isinstance(err, MemoryError) or "can't allocate memory" in text or "out of memory" in text.lower()


def out_of_disk(err: BaseException) -> bool:
    """ENOSPC or EDQUOT, also where a C++ or Rust writer (torch.save, safetensors) only says so in words."""
    return (isinstance(err, OSError) and err.errno in (errno.ENOSPC, errno.EDQUOT)) or \
        "No space left on device" in str(err) or "Disk quota exceeded" in str(err)
