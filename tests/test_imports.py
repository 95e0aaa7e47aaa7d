"""What each process imports is a footprint feature: checked in fresh interpreters."""

from __future__ import annotations

import hashlib
import json
import os
import pickle
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from tests.support import modules_without_site


def test_the_path_tracer_loads_only_the_scapy_layers_it_uses() -> None:
    mods = modules_without_site("import relaywatch.path.trace")
    assert "scapy.layers.inet" in mods and "scapy.all" not in mods


TRACER_PROCESS = textwrap.dedent(
    """
    import json, os, sys
    import relaywatch.path.trace as trace
    import scapy.data, scapy.main
    from scapy.config import conf
    from scapy.layers.inet import ICMP, IP, TCP, IPerror, TCPerror
    from scapy.layers.inet6 import ICMPv6TimeExceeded, IPerror6, IPv6

    out = {
        "cache_folder": scapy.main.SCAPY_CACHE_FOLDER and str(scapy.main.SCAPY_CACHE_FOLDER),
        "xdg_cache_home": os.environ.get("XDG_CACHE_HOME"),
        "manuf": [type(scapy.data.MANUFDB).__name__, getattr(scapy.data.MANUFDB, "_name", None)],
        "manuf_len": len(scapy.data.MANUFDB),
        "bluetooth_len": len(scapy.data.BLUETOOTH_CORE_COMPANY_IDENTIFIERS),
        "crypto_loaded": "cryptography" in sys.modules,
        "crypto_valid": conf.crypto_valid,
        "scapy_all": "scapy.all" in sys.modules,
    }
    # What the tracer builds and dissects: a SYN with options, quoted back by a router (MSS rewritten).
    opts = trace._options()
    syn = IP(src="192.0.2.9", dst="192.0.2.1", ttl=3) / TCP(dport=25, flags="S", window=64240, options=opts)
    seen = IP(bytes(syn))
    seen[TCP].options = [("MSS", 1400) if k == "MSS" else (k, v) for k, v in seen[TCP].options]
    quote = IP(bytes(IP(src="198.51.100.1", dst="192.0.2.9") / ICMP(type=11, code=0) / seen))
    out["v4"] = [quote.haslayer(IPerror), quote.haslayer(TCPerror), list(trace._changes(quote))]
    syn6 = IPv6(src="2001:db8::9", dst="2001:db8::1") / TCP(dport=25, flags="S", window=1024, options=opts)
    quote6 = IPv6(bytes(IPv6(src="2001:db8::fe", dst="2001:db8::9") / ICMPv6TimeExceeded() / syn6))
    out["v6"] = [quote6.haslayer(IPerror6), quote6.haslayer(TCPerror), list(trace._changes(quote6))]
    import cryptography  # importable again once scapy is loaded
    print(json.dumps(out))
    """
)


def test_the_path_tracer_has_no_vendor_tables_and_no_scapy_cache(tmp_path: Path) -> None:
    """The manufacturer and Bluetooth tables stay empty (path/scapy_lite.py), scapy's pickle cache in
    XDG_CACHE_HOME is neither written (an empty table would reach every scapy program of the user) nor
    read (a planted manufdb.pickle that a cache-reading scapy would return), and packets still build and
    dissect."""
    cache = tmp_path / "scapy"
    cache.mkdir()
    planted = pickle.dumps({"id": hashlib.sha256(b"").hexdigest(), "content": {"00:00:5E": ("IANA", "IANA")}})
    (cache / "manufdb.pickle").write_bytes(planted)
    env = {**os.environ, "XDG_CACHE_HOME": str(tmp_path)}
    proc = subprocess.run(
        [sys.executable, "-c", TRACER_PROCESS], env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, proc.stderr
    out = json.loads(proc.stdout)
    assert out["cache_folder"] is None and out["xdg_cache_home"] == str(tmp_path)
    written = sorted(str(p.relative_to(tmp_path)) for p in tmp_path.rglob("*"))
    assert written == ["scapy", "scapy/manufdb.pickle"]
    assert (cache / "manufdb.pickle").read_bytes() == planted
    kind, source = out["manuf"]
    assert kind == "ManufDA"  # built here, not the planted pickle's dict
    # empty when built from the stubbed scapy.libs.manuf; a host's Wireshark manuf file is read instead
    if source == "scapy/manufdb":
        assert out["manuf_len"] == 0
    assert out["bluetooth_len"] == 0
    assert not out["crypto_loaded"] and out["crypto_valid"] is False and not out["scapy_all"]
    assert out["v4"] == [True, True, ["mss_rewritten:1460->1400"]]
    assert out["v6"] == [True, True, ["window_rewritten:64240->1024"]]


ROUTES_PROCESS = textwrap.dedent(
    """
    import json, sys
    import relaywatch.path.trace as trace
    from scapy.config import conf

    out = {"at_import": [len(conf.route.routes), len(conf.route6.routes)], "ssl": "ssl" in sys.modules}
    trace._read_routes("127.0.0.1")
    out["after_v4"] = [len(conf.route.routes), len(conf.route6.routes)]
    default = [r[3] for r in conf.route.routes if r[1] == 0]  # (net, mask, gw, iface, ...) of 0.0.0.0/0
    out["default_iface"] = [default[0] if default else None, conf.iface.network_name]  # before any lookup
    out["lo"] = conf.route.route("127.0.0.1")[0]
    conf.route.routes.clear()
    trace._read_routes("127.0.0.2")  # read once per process: not again
    out["again"] = len(conf.route.routes)
    print(json.dumps(out))
    """
)

ROUTES6_PROCESS = textwrap.dedent(
    """
    import json
    import relaywatch.path.trace as trace
    from scapy.config import conf

    trace._read_routes("::1")
    print(json.dumps([len(conf.route.routes), len(conf.route6.routes)]))
    """
)


def test_the_path_tracer_reads_only_the_routing_table_of_the_family_it_traces() -> None:
    """scapy reads both tables at import, through rtnetlink dissected by its own packet classes (tens of ms
    each): the tracer reads the IPv4 table for an IPv4 trace, once per process, and never the IPv6 one for
    it. ssl is left out too (only an implicit-TLS trace needs it)."""
    proc = subprocess.run(
        [sys.executable, "-c", ROUTES_PROCESS], capture_output=True, text=True, timeout=60, check=True
    )
    out = json.loads(proc.stdout)
    assert out["at_import"] == [0, 0] and not out["ssl"]
    assert out["after_v4"][0] > 0 and out["after_v4"][1] == 0
    assert out["lo"] == "lo" and out["again"] == 0
    default, iface = out["default_iface"]
    if default is not None:  # scapy's default interface follows the default route, as with its own import
        assert iface == default
    v4, v6 = json.loads(
        subprocess.run(
            [sys.executable, "-c", ROUTES6_PROCESS], capture_output=True, text=True, timeout=60, check=True
        ).stdout
    )
    assert v4 == 0 and v6 > 0  # an IPv6 trace reads the IPv6 table only


@pytest.mark.parametrize("module", ["relaywatch.run.agent", "relaywatch.target", "relaywatch.run.client"])
def test_the_agent_process_parses_targets_without_the_tls_stack(module: str) -> None:
    mods = modules_without_site(f"import {module}")
    assert not {"cryptography", "OpenSSL", "scapy", "relaywatch.probe.smtp"} & mods


def test_the_probe_worker_loads_dnspython_only_for_gateway_targets() -> None:
    """dnspython is about 3 MB of the worker: a relay on 587 or 993 (the default config) never needs it."""
    probe = (
        "from relaywatch.probe.session import probe_target\n"
        "from relaywatch.probe.options import ProbeOptions\n"
        "from relaywatch.probe.limits import Limits\n"
        "from relaywatch.target import parse_target\n"
        "import relaywatch.run.worker\n"
        "[r] = probe_target(parse_target('smtp://127.0.0.1:1'), ProbeOptions(Limits(timeout=2)))\n"
        "assert r.failure is not None, r\n"
    )
    mods = modules_without_site(probe)
    assert "relaywatch.probe.session" in mods
    assert not {m for m in mods if m == "dns" or m.startswith("dns.")}
    assert "relaywatch.probe.gateway" not in mods


def test_the_agent_process_leaves_out_what_it_does_not_use() -> None:
    """html.entities (the status pages escape with a table of their own), urllib.request (only with a
    Pushgateway), prometheus_client (export/families.py), dnspython (the probe worker's), ssl and hashlib
    (only with TLS or basic auth on the web port: run/webconfig.py), tempfile and importlib.resources
    (replacefile.py, datadir.py). In an interpreter started without site: a .pth file of this machine
    imports certifi, and with it tempfile, at every start."""
    mods = modules_without_site("import relaywatch.cli, relaywatch.run.agent")
    assert "relaywatch.run.agent" in mods
    assert not {"html.entities", "urllib.request", "prometheus_client", "dns"} & mods
    assert not {"ssl", "_ssl", "hashlib", "_hashlib", "tempfile", "importlib.resources"} & mods
