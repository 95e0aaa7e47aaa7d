"""Outputs for hosts that cannot be scraped: a Prometheus Pushgateway and a node_exporter textfile.
Both carry exactly the series of /metrics; writes are coalesced (at most one per second) off the probe
threads, and the textfile is replaced atomically."""

from __future__ import annotations

import logging
import os
import socket
import tempfile
import threading
from pathlib import Path

from prometheus_client import push_to_gateway, write_to_textfile
from prometheus_client.registry import CollectorRegistry

log = logging.getLogger("relaywatch.outputs")


class Outputs:
    def __init__(
        self, registry: CollectorRegistry, push_url: str | None, textfile: str | None, job: str = "relaywatch"
    ) -> None:
        self.registry, self.push_url, self.textfile, self.job = registry, push_url, textfile, job
        self.instance = socket.gethostname()
        self._dirty = threading.Event()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="outputs", daemon=True)

    @property
    def enabled(self) -> bool:
        return bool(self.push_url or self.textfile)

    def start(self) -> None:
        if self.enabled:
            self._thread.start()

    def changed(self, *_: object) -> None:
        """A probe finished: schedule a write (a scheduler listener)."""
        self._dirty.set()

    def stop(self) -> None:
        self._stop.set()
        self._dirty.set()
        if self._thread.is_alive():
            self._thread.join(5)
        if self.enabled:
            self.flush()  # last state before exit

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            self.flush()
            self._stop.wait(1.0)

    def flush(self) -> None:
        if self.textfile:
            try:
                write_textfile(self.registry, self.textfile)
            except OSError as exc:
                log.error("cannot write textfile %s: %s", self.textfile, exc)
        if self.push_url:
            try:
                push_to_gateway(
                    self.push_url,
                    job=self.job,
                    registry=self.registry,
                    grouping_key={"instance": self.instance},
                    timeout=10,
                )
            except OSError as exc:
                log.error("push to %s failed: %s", self.push_url, exc)


def write_textfile(registry: CollectorRegistry, path: str) -> None:
    """node_exporter reads the file at any moment: write beside it, then rename over it."""
    target = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{target.name}.", dir=target.parent)
    os.close(fd)
    try:
        write_to_textfile(tmp, registry)
        os.chmod(tmp, 0o644)
        os.replace(tmp, target)
    finally:
        if os.path.exists(tmp):
            os.unlink(tmp)
