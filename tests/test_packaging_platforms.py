"""The service definitions for endpoints that are not Linux, checked as far as Linux can: they parse, and
they say what the service manager needs."""

from __future__ import annotations

import plistlib
import xml.etree.ElementTree as ET

from tests.support import ROOT

PLIST = ROOT / "packaging" / "macos" / "com.relaywatch.agent.plist"
WINSW = ROOT / "packaging" / "windows" / "relaywatch.xml"


def test_launchd_plist_parses_and_keeps_the_agent_in_the_foreground() -> None:
    with PLIST.open("rb") as f:
        plist = plistlib.load(f)  # what plutil -lint accepts: a well-formed XML property list
    assert plist["Label"] == "com.relaywatch.agent"
    assert plist["RunAtLoad"] is True and plist["KeepAlive"] is True
    assert plist["StandardErrorPath"].endswith(".log") and plist["StandardOutPath"].endswith(".log")
    argv = plist["ProgramArguments"]
    assert argv[1] == "run" and "--config.file" in argv
    # launchd supervises the process it started: no self-daemonising options, no shell wrapper
    assert not any(a in ("--daemon", "-d", "&") for a in argv) and not argv[0].endswith("sh")
    assert plist.get("UserName") == "_relaywatch"


def test_winsw_definition_runs_the_agent_with_restarts_and_logs() -> None:
    svc = ET.parse(WINSW).getroot()
    assert svc.tag == "service" and svc.findtext("id") == "relaywatch"
    assert svc.findtext("executable", "").endswith("relaywatch.exe")
    args = svc.findtext("arguments", "")
    assert args.startswith("run ") and "--textfile" in args and "textfile_inputs" in args
    assert [e.get("action") for e in svc.findall("onfailure")] == ["restart", "restart"]
    assert svc.find("log") is not None and svc.findtext("startmode") == "Automatic"
