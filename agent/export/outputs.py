"""Outputs for hosts that cannot be scraped: a Prometheus Pushgateway and a node_exporter textfile.
Both carry exactly the series of /metrics; writes are coalesced (at most one per second) off the probe
threads, and the textfile is replaced atomically."""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable
from pathlib import Path
from urllib.parse import quote

from relaywatch.export.exposition import CONTENT_TYPE
from relaywatch.replacefile import replace_file

log = logging.getLogger("relaywatch.outputs")
PUSH_TIMEOUT = 10.0
FINAL_PUSH = 2.0  # at SIGTERM


class Outputs:
    def __init__(
        self,
        exposition: Callable[[], bytes],
        push_url: str | None,
        textfile: str | None,
        job: str = "relaywatch",
    ) -> None:
        self.exposition, self.push_url, self.textfile, self.job = exposition, push_url, textfile, job
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
        """The last state goes out before exit, within FINAL_PUSH seconds whatever the Pushgateway does
        (systemd's stop timeout is 15 s); a push still running in the loop thread is abandoned."""
        self._stop.set()
        self._dirty.set()
        if not self.enabled:
            return
        final = threading.Thread(target=self.flush, args=(FINAL_PUSH,), name="outputs-final", daemon=True)
        final.start()
        final.join(FINAL_PUSH)
        if final.is_alive():
            log.error(
                "final push to %s did not finish within %gs; exiting without it", self.push_url, FINAL_PUSH
            )

    def _loop(self) -> None:
        while not self._stop.is_set():
            self._dirty.wait()
            if self._stop.is_set():
                return
            self._dirty.clear()
            self.flush()
            self._stop.wait(1.0)

    def flush(self, timeout: float = PUSH_TIMEOUT) -> None:
        body = self.exposition()
        if self.textfile:
            try:
                write_textfile(body, self.textfile)
            except Exception as exc:  # the outputs thread must outlive any one failure
                log.error("cannot write textfile %s: %s", self.textfile, exc)
        if self.push_url:
            try:
                push(self.push_url, self.job, self.instance, body, timeout)
            except Exception as exc:  # e.g. http.client.BadStatusLine from a broken gateway
                log.error("push to %s failed: %s", self.push_url, exc)


def push(url: str, job: str, instance: str, body: bytes, timeout: float = PUSH_TIMEOUT) -> None:
    """PUT replaces every series of this grouping key, as prometheus_client's push_to_gateway does."""
    import urllib.request  # only agents that push pay for it (http.client, email: about 3 MB)

    target = f"{url.rstrip('/')}/metrics/job/{quote(job, safe='')}/instance/{quote(instance, safe='')}"
    request = urllib.request.Request(target, data=body, method="PUT", headers={"Content-Type": CONTENT_TYPE})
    with urllib.request.urlopen(request, timeout=timeout) as response:
        if response.status // 100 != 2:
            raise OSError(f"Pushgateway answered {response.status}")


TEXTFILE_NAME = "relaywatch.prom"  # in a directory: what node_exporter and windows_exporter collect (*.prom)


def textfile_path(path: str) -> Path:
    """PATH itself, or PATH/relaywatch.prom when PATH is a directory (node_exporter's
    --collector.textfile.directory, windows_exporter's textfile_inputs)."""
    target = Path(path)
    return target / TEXTFILE_NAME if target.is_dir() else target


def write_textfile(body: bytes, path: str) -> None:
    """The exporters read the file at any moment: write beside it, then rename over it (os.replace is
    atomic on POSIX and replaces an existing file on Windows too)."""
    replace_file(textfile_path(path), body, mode=0o644)
