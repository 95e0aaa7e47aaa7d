"""The evidence log on a full disk: a small tmpfs made by the test. The failure is logged once in the
agent's format, counted, held in memory and written once space returns; no line is ever cut."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from relaywatch.run import events as events_mod
from relaywatch.run.config import parse_config
from relaywatch.run.events import EventLog
from relaywatch.run.scheduler import failed_result
from relaywatch.run.state import Change

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(os.geteuid() != 0, reason="mounts a tmpfs"),
]


@contextlib.contextmanager
def small_tmpfs(where: Path, size: str = "64k") -> Iterator[Path]:
    where.mkdir()
    subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)], check=True, timeout=10
    )
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=False, timeout=10)


def fill(path: Path) -> None:
    """Write until the file system refuses, then give back one page (so the next lines are cut short)."""
    with path.open("wb", buffering=0) as f, contextlib.suppress(OSError):
        while True:
            f.write(b"\0" * 1024)
    os.truncate(path, max(0, path.stat().st_size - 4096))


def test_full_disk_holds_events_and_writes_them_later(
    tmp_path: Path, caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(events_mod, "RETRY_EVERY", 0.0)
    tc = parse_config("targets: [mx.example:25]\n", "c.yml", tmp_path).targets[0]

    def change(i: int) -> Change:  # about 3 kB each: a page holds one and a part of the next
        return Change(tc.name, f"192.0.2.{i}", None, failed_result(tc, f"event {i} " + "x" * 3000))

    with small_tmpfs(tmp_path / "disk") as disk:
        log = EventLog(str(disk / "events.jsonl"))
        try:
            log(tc, [], [change(0)])
            fill(disk / "filler")
            with caplog.at_level(logging.INFO, logger="relaywatch.events"):
                for i in range(1, 8):
                    log(tc, [], [change(i)])
                log(tc, [], [])  # a round without changes retries too
            errors = [r for r in caplog.records if r.levelno >= logging.ERROR]
            assert len(errors) == 1 and "holding events in memory" in errors[0].getMessage()
            assert log.write_failures >= 6  # the first after the fill may still fit
            lines = (disk / "events.jsonl").read_bytes().split(b"\n")
            assert lines[-1] == b"" and all(json.loads(line) for line in lines[:-1])  # no cut lines
            written_while_full = len(lines) - 1
            (disk / "filler").unlink()
            caplog.clear()
            with caplog.at_level(logging.INFO, logger="relaywatch.events"):
                log(tc, [], [])
            assert any("writable again" in r.getMessage() for r in caplog.records)
            events = [json.loads(x) for x in (disk / "events.jsonl").read_text().splitlines()]
            assert [e["address"] for e in events] == [f"192.0.2.{i}" for i in range(8)]
            assert written_while_full < 8
        finally:
            log.close()
