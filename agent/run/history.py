"""The recent-probe history behind the status page, like blackbox_exporter's: the last probes, and the
last failures kept apart so a burst of good probes does not push them out."""

from __future__ import annotations

import collections
import itertools
from collections.abc import Iterator
from dataclasses import dataclass

from relaywatch.model import ProbeResult, Verdict

HISTORY = 100


@dataclass(frozen=True, slots=True)
class Entry:
    id: int
    target: str
    result: ProbeResult


class History:
    """Not thread-safe by itself: the agent's state holds its lock around every call."""

    def __init__(self, size: int = HISTORY) -> None:
        self._ids = itertools.count(1)
        self.recent: collections.deque[Entry] = collections.deque(maxlen=size)
        self.failures: collections.deque[Entry] = collections.deque(maxlen=size)

    def add(self, target: str, result: ProbeResult) -> Entry:
        entry = Entry(next(self._ids), target, result)
        self.recent.append(entry)
        if result.verdict is not Verdict.OK:
            self.failures.append(entry)
        return entry

    def find(self, entry_id: int) -> Entry | None:
        return next((e for e in self if e.id == entry_id), None)

    def __iter__(self) -> Iterator[Entry]:
        return itertools.chain(self.recent, self.failures)
