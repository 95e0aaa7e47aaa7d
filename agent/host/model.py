"""What host inspection finds: processes of known products, and CAs in this host's trust stores."""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class LocalProcess:
    """A process on this host (the far end of a redirected connection, or a known product's process)."""

    pid: int
    name: str
    exe: str
    product: str | None  # the known product whose process name this is


@dataclass(frozen=True, slots=True)
class StoreCA:
    subject: str
    subject_cn: str
    spki_sha256: str
    source: str
    product: str | None  # a known interceptor's CA name
    in_mozilla: bool  # shipped by certifi (Mozilla's root program)


@dataclass(frozen=True, slots=True)
class HostReport:
    interceptor_processes: tuple[LocalProcess, ...]
    store_interception_cas: tuple[StoreCA, ...]  # named like a known interceptor
    store_foreign_cas: tuple[StoreCA, ...]  # not in Mozilla's program (corporate roots, antivirus, ...)
    stores: tuple[str, ...]
