"""The source folder agent/ is installed as the package relaywatch: every subpackage must be listed."""

from __future__ import annotations

import tomllib
from pathlib import Path

from tests.support import ROOT


def test_every_subpackage_is_listed_in_pyproject() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    assert config["package-dir"] == {"relaywatch": "agent"}
    found = {
        "relaywatch" + "".join(f".{p}" for p in init.parent.relative_to(ROOT / "agent").parts)
        for init in (ROOT / "agent").rglob("__init__.py")
    }
    assert set(config["packages"]) == found


def test_import_name_is_relaywatch() -> None:
    import relaywatch

    assert Path(relaywatch.__file__).resolve().parent == ROOT / "agent"
