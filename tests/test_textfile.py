"""--textfile DIR for windows_exporter's textfile collector (`--collectors.enabled "[defaults],textfile"`,
directory `textfile_inputs`) and node_exporter's (--collector.textfile.directory): relaywatch.prom in
the directory, a trailing newline, no timestamps, no duplicate series, replaced atomically."""

from __future__ import annotations

import os
import stat
import subprocess
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from relaywatch.export.outputs import TEXTFILE_NAME, textfile_path, write_textfile
from relaywatch.lab.demo import running_lab
from relaywatch.replacefile import replace_file

from tests.agent_helpers import lab_config, run_agent
from tests.support import data_lines, wait_for, which


def test_a_directory_gets_relaywatch_prom_and_a_file_path_is_kept(tmp_path: Path) -> None:
    assert textfile_path(str(tmp_path)) == tmp_path / TEXTFILE_NAME
    assert textfile_path(str(tmp_path / "x.prom")) == tmp_path / "x.prom"
    write_textfile(b"relaywatch_build_info 1\n", str(tmp_path))
    first = os.stat(tmp_path / TEXTFILE_NAME).st_ino
    write_textfile(b"relaywatch_build_info 2\n", str(tmp_path))
    assert (tmp_path / TEXTFILE_NAME).read_text() == "relaywatch_build_info 2\n"
    assert os.stat(tmp_path / TEXTFILE_NAME).st_ino != first, "replaced by rename, never rewritten in place"
    assert sorted(p.name for p in tmp_path.iterdir()) == [TEXTFILE_NAME], "no temporary file left behind"
    assert stat.S_IMODE(os.stat(tmp_path / TEXTFILE_NAME).st_mode) == 0o644  # node_exporter reads it


def test_a_replaced_file_is_whole_or_untouched(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """replacefile.py (the textfile and the baseline): private by default, whatever the umask; a write that
    fails leaves the old file and no temporary one."""
    target = tmp_path / "baseline.json"
    old = os.umask(0)
    try:
        replace_file(target, b"one", durable=True)
    finally:
        os.umask(old)
    assert target.read_bytes() == b"one" and stat.S_IMODE(target.stat().st_mode) == 0o600

    def full(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", full)
    with pytest.raises(OSError, match="No space"):
        replace_file(target, b"two", durable=True)
    assert target.read_bytes() == b"one"
    assert [p.name for p in tmp_path.iterdir()] == ["baseline.json"]
    with pytest.raises(FileNotFoundError):
        replace_file(tmp_path / "missing" / "x", b"")


@pytest.mark.peers
def test_agent_writes_a_collectable_textfile_into_a_directory(tmp_path: Path) -> None:
    inputs = tmp_path / "textfile_inputs"
    inputs.mkdir()
    prom = inputs / TEXTFILE_NAME
    with running_lab() as lab, run_agent(lab_config(tmp_path, lab), "--textfile", str(inputs)):
        wait_for(lambda: prom.exists() and all(s.target in prom.read_text() for s in lab.scenarios), 60)
        text = prom.read_text()
    assert text.endswith("\n") and not text.endswith("\n\n")
    keys = []
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            assert s.timestamp is None, s
            keys.append((s.name, tuple(sorted(s.labels.items()))))
    assert len(keys) == len(set(keys)) and keys, "duplicate series"
    assert len(keys) == len(data_lines(text))
    assert sorted(p.name for p in inputs.iterdir()) == [TEXTFILE_NAME]
    promtool = which("promtool")
    if promtool is None:
        pytest.skip("promtool is not installed")
    check = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert check.returncode == 0, check.stdout + check.stderr
