"""What the agent's main process knows of a trust profile: its name, version, file and anchors' names.

The certificates themselves are parsed and used only where the analysis runs (the probe worker), so the
agent's main process never loads the X.509 and TLS stack."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from relaywatch.datadir import PROFILES


class ProfileError(ValueError):
    """A profile that cannot be used; the message names the file and what is wrong."""


@dataclass(frozen=True, slots=True)
class ProfileRef:
    name: str
    version: str
    source: str  # the YAML file, resolved
    anchors: tuple[str, ...]  # RFC 4514 subjects, for people reading the status page
    digest: str = ""  # of the YAML and every PEM: what was checked at (re)load is what probes use


def builtin_profile_path(name: str) -> Path | None:
    """The shipped profile of that name, or None: a name, never a path (the agent's /probe takes only
    these and the configured ones)."""
    if not name or len(name) > 64 or not name.replace("-", "").replace("_", "").isalnum():
        return None
    path = PROFILES / f"{name}.yml"
    return path if path.is_file() else None
