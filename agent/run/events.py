"""The evidence log: one JSON line per verdict change, with the findings, the whole chain as PEM and the
protocol transcript, so a security team can investigate without re-probing. Size-bounded rotation.

A full or failing disk must neither lose evidence silently nor corrupt the file: a line is written whole
or not at all (a short write is cut back off), events that cannot be written wait in a bounded queue in
memory and go out, in order, once the disk takes them again; the failure is logged once per episode in
the agent's own log format and counted (relaywatch_events_write_failures_total)."""

from __future__ import annotations

import collections
import datetime as dt
import json
import logging
import os
import threading
import time
from collections.abc import Sequence

from relaywatch.model import Finding, ProbeResult
from relaywatch.run.config import ConfigError, TargetConfig
from relaywatch.run.state import Change

log = logging.getLogger("relaywatch.events")
QUEUE_BYTES = 8 << 20  # events held in memory while the disk refuses them
RETRY_EVERY = 1.0  # seconds between attempts while failing


class EventLog:
    def __init__(
        self, path: str, max_bytes: int = 10 << 20, backups: int = 5, queue_bytes: int = QUEUE_BYTES
    ) -> None:
        self.path, self.max_bytes, self.backups, self.queue_bytes = path, max_bytes, backups, queue_bytes
        self.write_failures = 0  # events that could not be written when they happened
        self.dropped = 0  # events lost because the queue was full
        self._pending: collections.deque[bytes] = collections.deque()
        self._pending_bytes = 0
        self._failing: str | None = None  # the error of the current episode
        self._next_try = 0.0
        self._lock = threading.Lock()
        try:
            self._fd: int | None = self._open()
        except OSError as exc:
            raise ConfigError(f"--events.file {path}: cannot open: {exc.strerror or exc}") from None

    def _open(self) -> int:
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT | os.O_CLOEXEC, 0o640)
        self._size = os.fstat(fd).st_size
        return fd

    def __call__(self, tc: TargetConfig, results: Sequence[ProbeResult], changes: Sequence[Change]) -> None:
        """A scheduler listener: one event per changed verdict; every round also retries held events."""
        lines = [_line(tc, c) for c in changes] + [
            _baseline_line(tc, r, f) for r in results for f in r.analysis.findings if f.code in BASELINE_CODES
        ]
        with self._lock:
            for line in lines:
                self._hold(line)
            if self._pending and (not self._failing or time.monotonic() >= self._next_try):
                self._flush()
            self.write_failures += min(len(lines), len(self._pending))

    def _hold(self, line: bytes) -> None:
        self._pending.append(line)
        self._pending_bytes += len(line)
        while self._pending_bytes > self.queue_bytes and len(self._pending) > 1:
            self._pending_bytes -= len(self._pending.popleft())
            self.dropped += 1

    def _flush(self) -> None:
        written = 0
        while self._pending:
            try:
                self._write(self._pending[0])
            except OSError as exc:
                self._failed(exc)
                return
            self._pending_bytes -= len(self._pending.popleft())
            written += 1
        if self._failing:
            log.warning(
                "evidence log %s is writable again: wrote %d held events (%d dropped while it was not)",
                self.path,
                written,
                self.dropped,
            )
            self._failing = None

    def _failed(self, exc: OSError) -> None:
        self._next_try = time.monotonic() + RETRY_EVERY
        if self._failing is None:
            self._failing = exc.strerror or str(exc)
            log.error(
                "cannot write the evidence log %s: %s; holding events in memory (up to %d MB) until it can",
                self.path,
                self._failing,
                self.queue_bytes >> 20,
            )

    def _write(self, line: bytes) -> None:
        """The whole line or nothing: on any error the file is cut back to where it was."""
        if self._fd is None:
            self._fd = self._open()
        if self._size and self._size + len(line) > self.max_bytes:
            self._rotate()
        fd = self._fd
        start, view = self._size, memoryview(line)
        try:
            while view:
                view = view[os.write(fd, view) :]
        except OSError:
            try:
                os.ftruncate(fd, start)  # never needs space
            except OSError:
                self._reopen_later()
            raise
        self._size = start + len(line)

    def _rotate(self) -> None:
        self._reopen_later()  # renames need no space: rotation goes on even on a full disk
        for i in range(self.backups - 1, 0, -1):
            if os.path.exists(f"{self.path}.{i}"):
                os.replace(f"{self.path}.{i}", f"{self.path}.{i + 1}")
        if self.backups and os.path.exists(self.path) and self._size:
            os.replace(self.path, f"{self.path}.1")
        self._fd = self._open()

    def _reopen_later(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def close(self) -> None:
        with self._lock:
            if self._pending:
                self._flush()
            if self._pending:
                log.error("evidence log %s: %d events could not be written", self.path, len(self._pending))
            self._reopen_later()


BASELINE_CODES = frozenset({"chain_changed", "tls_parameters_changed"})


def _baseline_line(tc: TargetConfig, r: ProbeResult, finding: Finding) -> bytes:
    """What changed since the path was last seen: the finding says before and after, the result the rest."""
    event = {
        "ts": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "event": finding.code,
        "target": tc.name,
        "address": r.record.address,
        "labels": dict(tc.labels),
        "message": finding.message,
        "verdict": str(r.verdict),
        "result": r.to_dict(),
    }
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()


def _line(tc: TargetConfig, c: Change) -> bytes:
    event = {
        "ts": dt.datetime.now(dt.UTC).isoformat().replace("+00:00", "Z"),
        "event": "verdict_change",
        "target": c.target,
        "address": c.address,
        "labels": dict(tc.labels),
        "previous_verdict": str(c.previous) if c.previous else None,
        "verdict": str(c.result.verdict),
        "result": c.result.to_dict(),  # findings, chain with PEM, transcript, timings
    }
    return (json.dumps(event, separators=(",", ":")) + "\n").encode()
