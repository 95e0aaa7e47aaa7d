"""The shipped trust data stays in step with itself: index.txt describes exactly the PEMs beside it."""

from __future__ import annotations

import importlib.util
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
CERTS = ROOT / "agent" / "data" / "profiles" / "certs"


def test_certificate_index_is_current() -> None:
    spec = importlib.util.spec_from_file_location("make_cert_index", ROOT / "scripts" / "make_cert_index.py")
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    assert (CERTS / "index.txt").read_text() == module.index(), "run python3 scripts/make_cert_index.py"


def test_every_profile_certificate_is_shipped() -> None:
    import yaml

    for profile in (ROOT / "agent" / "data" / "profiles").glob("*.yml"):
        doc = yaml.safe_load(profile.read_text())
        for path in [*doc.get("anchors", []), *doc.get("intermediates", [])]:
            assert (profile.parent / path).is_file(), f"{profile.name}: {path}"
