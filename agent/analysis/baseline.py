"""Trust on first use, per target and address: what the path showed before, persisted across restarts.

A profile says what a chain should look like; a baseline says what it looked like yesterday. A change of
chain (SPKI per position) or of TLS parameters (version, cipher, group, capabilities before and after TLS)
is evidence worth a look, never a verdict by itself: Microsoft rotates leaves and CAs. Pure Python over the
model (no TLS stack), so the agent's main process can keep it.

The file is JSON, written atomically (temporary file, fsync, rename), bounded in targets and in chains per
target. A corrupt or unreadable file gives one warning and a fresh baseline, never a crash or a lost probe.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from relaywatch.model import Finding, ProbeResult, Severity
from relaywatch.replacefile import replace_file

log = logging.getLogger("relaywatch.baseline")

FILE = "baseline.json"
MAX_TARGETS = 4096  # (target, address) entries; the least recently seen go first
MAX_CHAINS = 8  # distinct chains remembered per entry
FLUSH_EVERY = 60.0  # seconds: `last_seen` alone is written at most this often
FORMAT = 1


def default_state_dir(service: bool = False) -> Path:
    """/var/lib/relaywatch for the service (systemd's StateDirectory), $XDG_STATE_HOME/relaywatch else."""
    if service:
        return Path("/var/lib/relaywatch")
    xdg = os.environ.get("XDG_STATE_HOME") or str(Path.home() / ".local" / "state")
    return Path(xdg) / "relaywatch"


@dataclass(frozen=True, slots=True)
class Change:
    code: str  # chain_changed | tls_parameters_changed
    target: str
    address: str
    before: dict[str, Any]
    after: dict[str, Any]
    at: float

    def finding(self) -> Finding:
        what = "chain" if self.code == "chain_changed" else "TLS parameters"
        return Finding(
            self.code,
            Severity.WARNING,
            f"the {what} changed since this path was last seen: before {json.dumps(self.before)}, "
            f"after {json.dumps(self.after)} (evidence only: a planned rotation looks the same)",
        )

    def to_dict(self) -> dict[str, Any]:
        return {
            "event": self.code,
            "target": self.target,
            "address": self.address,
            "before": self.before,
            "after": self.after,
            "at": self.at,
        }


def _observed(result: ProbeResult) -> tuple[list[str], dict[str, Any]] | None:
    r, a = result.record, result.analysis
    if r.tls is None or not a.chain:
        return None
    params = {
        "version": r.tls.version,
        "cipher": r.tls.cipher,
        "group": r.tls.group,
        "capabilities_before_tls": list(r.starttls.capabilities),
        "capabilities_after_tls": list(r.starttls.capabilities_after_tls),
    }
    return [c.spki_sha256 for c in a.chain], params


class Baseline:
    """observe() per probe result; thread-safe (the scheduler probes targets concurrently)."""

    def __init__(self, directory: Path, max_targets: int = MAX_TARGETS) -> None:
        self.path = Path(directory) / FILE
        self.max_targets = max_targets
        self._lock = threading.Lock()
        self._written = 0.0
        self.entries: dict[str, dict[str, Any]] = self._load()

    def _load(self) -> dict[str, dict[str, Any]]:
        try:
            raw = self.path.read_bytes()
        except FileNotFoundError:
            return {}
        except OSError as exc:
            log.warning("baseline %s unreadable (%s): starting a fresh baseline", self.path, exc.strerror)
            return {}
        try:
            doc = json.loads(raw)
            if (
                not isinstance(doc, dict)
                or doc.get("format") != FORMAT
                or not isinstance(doc.get("paths"), dict)
            ):
                raise ValueError("not a relaywatch baseline")
            entries = {str(k): v for k, v in doc["paths"].items() if _valid(v)}
        except (ValueError, RecursionError) as exc:
            log.warning("baseline %s is corrupt (%s): replaced by a fresh baseline", self.path, exc)
            with contextlib.suppress(OSError):
                self.path.replace(self.path.with_suffix(".corrupt"))
            return {}
        return entries

    def observe(self, result: ProbeResult, now: float | None = None) -> list[Change]:
        seen = _observed(result)
        if seen is None or result.record.address is None:
            return []
        chain, params = seen
        now = time.time() if now is None else now
        target, address = result.record.target.raw, result.record.address
        key = f"{target} {address}"
        with self._lock:
            entry = self.entries.get(key)
            changes: list[Change] = []
            if entry is None:
                entry = {"first_seen": now, "chains": [chain], "tls": params, "chain_changed_at": None}
                self.entries[key] = entry
            else:
                changes = self._compare(entry, chain, params, target, address, now)
            entry["last_seen"] = now
            self._bound()
            if changes or now - self._written >= FLUSH_EVERY or len(self.entries) == 1:
                self._write(now)
        return changes

    def _compare(
        self,
        entry: dict[str, Any],
        chain: list[str],
        params: dict[str, Any],
        target: str,
        address: str,
        now: float,
    ) -> list[Change]:
        changes = []
        if chain not in entry["chains"]:
            before = {"spki_sha256": entry["chains"][-1]}
            changes.append(Change("chain_changed", target, address, before, {"spki_sha256": chain}, now))
            entry["chains"] = [*entry["chains"], chain][-MAX_CHAINS:]
            entry["chain_changed_at"] = now
        elif entry["chains"][-1] != chain:  # back to a known chain: remembered as the latest, not reported
            entry["chains"] = [*(c for c in entry["chains"] if c != chain), chain]
        if entry["tls"] != params:
            diff = [k for k in params if entry["tls"].get(k) != params[k]]
            changes.append(
                Change(
                    "tls_parameters_changed",
                    target,
                    address,
                    {k: entry["tls"].get(k) for k in diff},
                    {k: params[k] for k in diff},
                    now,
                )
            )
            entry["tls"] = params
        return changes

    def chain_changed_at(self, target: str, address: str) -> float | None:
        entry = self.entries.get(f"{target} {address}")
        return entry.get("chain_changed_at") if entry else None

    def _bound(self) -> None:
        if len(self.entries) > self.max_targets:
            oldest = sorted(self.entries, key=lambda k: self.entries[k].get("last_seen", 0))
            for k in oldest[: len(self.entries) - self.max_targets]:
                del self.entries[k]

    def _write(self, now: float) -> None:
        """Atomic: a crash mid-write leaves the previous file. A failed write is logged, never raised."""
        data = json.dumps({"format": FORMAT, "paths": self.entries}, separators=(",", ":")).encode()
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            replace_file(self.path, data, durable=True)
        except OSError as exc:
            log.warning("baseline %s not written: %s", self.path, exc.strerror or exc)
            return
        self._written = now


def _valid(entry: object) -> bool:
    return (
        isinstance(entry, dict)
        and isinstance(entry.get("chains"), list)
        and bool(entry["chains"])
        and all(isinstance(c, list) and all(isinstance(s, str) for s in c) for c in entry["chains"])
        and isinstance(entry.get("tls"), dict)
    )
