"""Data files read once and kept until they change: the key of such a cache is the file and its mtime."""

from __future__ import annotations

from pathlib import Path


def file_key(path: str | Path) -> tuple[str, int]:
    """(resolved path, modification time in ns): an edited file is a new key. Raises OSError."""
    p = Path(path)
    return str(p.resolve()), p.stat().st_mtime_ns
