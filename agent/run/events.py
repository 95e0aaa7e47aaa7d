"""The evidence log: one JSON line per verdict change, with the findings, the whole chain as PEM and the
protocol transcript, so a security team can investigate without re-probing. Size-bounded rotation."""

from __future__ import annotations

import datetime as dt
import json
import logging
import logging.handlers
from collections.abc import Sequence

from relaywatch.model import ProbeResult
from relaywatch.run.config import TargetConfig
from relaywatch.run.state import Change


class EventLog:
    def __init__(self, path: str, max_bytes: int = 10 << 20, backups: int = 5) -> None:
        self.logger = logging.getLogger(f"relaywatch.events.{path}")
        self.logger.propagate = False
        self.logger.setLevel(logging.INFO)
        self.handler = logging.handlers.RotatingFileHandler(
            path, maxBytes=max_bytes, backupCount=backups, encoding="utf-8"
        )
        self.handler.setFormatter(logging.Formatter("%(message)s"))
        self.logger.addHandler(self.handler)

    def __call__(self, tc: TargetConfig, results: Sequence[ProbeResult], changes: Sequence[Change]) -> None:
        """A scheduler listener: one event per changed verdict."""
        for c in changes:
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
            self.logger.info(json.dumps(event, separators=(",", ":")))

    def close(self) -> None:
        self.logger.removeHandler(self.handler)
        self.handler.close()
