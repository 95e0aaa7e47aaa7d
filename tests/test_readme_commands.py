"""The README's first command is for a user who only wants to run relaywatch: pip and the demo, nothing
from apt (no Postfix, Chromium or sslsplit); the second is the developer's, which installs everything."""

from __future__ import annotations

import re

from tests.support import ROOT

README = (ROOT / "README.md").read_text()


def _first_commands() -> list[str]:
    block = re.search(r"```sh\n(.*?)```", README, re.DOTALL)
    assert block, "no sh block in the README"
    return [line.split("#")[0].strip() for line in block.group(1).splitlines() if line.strip()]


def test_first_command_installs_only_what_running_needs() -> None:
    first, second = _first_commands()[:2]
    assert re.fullmatch(r"python3 -m pip install \. && relaywatch demo", first), first
    for heavy in ("setup.sh", "apt", "postfix", "chromium", "sslsplit", "[test]"):
        assert heavy not in first
    assert second == "bash scripts/test.sh"
    setup = (ROOT / "scripts" / "setup.sh").read_text()
    assert "scripts/setup.sh" in (ROOT / "scripts" / "test.sh").read_text()
    for deb in ("postfix", "chromium", "sslsplit", "prometheus-alertmanager"):
        assert deb in setup
