"""Facts the README repeats for readers are checked against the one place that holds them."""

from __future__ import annotations

import re
from pathlib import Path

from relaywatch.model import Verdict

README = (Path(__file__).resolve().parent.parent / "README.md").read_text()


def test_the_verdict_table_lists_every_verdict_in_severity_order() -> None:
    section = README[README.index("## Verdicts and what to do") :]
    section = section[: section.index("\n## ", 4)]
    rows = re.findall(r"^\| `([a-z_]+)` \|", section, re.MULTILINE)
    assert rows == [str(v) for v in Verdict]
