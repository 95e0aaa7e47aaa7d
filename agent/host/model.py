from __future__ import annotations

from dataclasses import dataclass

from relaywatch.model import LocalProcess


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
