"""Where the data files shipped with the agent are: trust profiles, interceptor patterns, the CT log list.

One folder beside the code. Every reader opens these by path, so a path is what it needs; importlib.resources
would give the same folder for an installed package, and importing it loads tempfile, shutil, random, bz2
and lzma into the agent's main process."""

from __future__ import annotations

from pathlib import Path

DATA = Path(__file__).resolve().parent / "data"
PROFILES = DATA / "profiles"
CT = DATA / "ct"
