"""Files other processes read at any moment (the textfile, the baseline): written beside, then renamed over.

By hand rather than tempfile.mkstemp: importing tempfile loads shutil, random, bz2 and lzma into the
agent's main process for one unique name, which O_EXCL and a random suffix give as well."""

from __future__ import annotations

import contextlib
import os
from pathlib import Path


def replace_file(path: Path, data: bytes, mode: int = 0o600, durable: bool = False) -> None:
    """Write `data` to `path` atomically (os.replace: readers see the old file or the new one, never half
    of one, on POSIX and Windows). `durable` fsyncs before the rename, so a crash cannot leave an empty
    file. Raises OSError; on failure the old file stays and no temporary one is left."""
    tmp = path.with_name(f".{path.name}.{os.urandom(6).hex()}")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    fd = os.open(tmp, flags, 0o600)  # O_BINARY: Windows would write \r\n, which the text format forbids
    try:
        f = os.fdopen(fd, "wb")
    except BaseException:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    try:
        with f:
            f.write(data)
            if durable:
                f.flush()
                os.fsync(f.fileno())
        if mode != 0o600:
            os.chmod(tmp, mode)  # not subject to the umask, unlike os.open's mode
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
