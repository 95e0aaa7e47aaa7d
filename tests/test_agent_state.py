"""The agent's state in-process: bounded series, vanished addresses removed, label values sanitized."""

from __future__ import annotations

import dataclasses
import datetime as dt
import ssl
from pathlib import Path

import pytest
from relaywatch.analysis.profile import TrustProfile
from relaywatch.export.metrics import MAX_LABEL, label
from relaywatch.lab.pki import LabPKI, make_ca, make_leaf
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.run.config import parse_config
from relaywatch.run.state import AgentState

from tests.support import cn_name, data_lines, probe, samples


def exposition(state: AgentState) -> str:
    return state.exposition().decode()


def test_label_values_are_bounded_and_printable() -> None:
    hostile = "\x1b[31m" + "é" * 10 + "\n" + "A" * 500
    value = label(hostile)
    assert len(value) == MAX_LABEL and value.isprintable() and value.isascii()


@pytest.mark.peers
def test_series_per_target_are_fixed_whatever_the_chain(
    pki: LabPKI, lab_dir: Path, lab_profile: TrustProfile
) -> None:
    """A 60-certificate chain with huge names yields the same number of series as a 2-certificate one."""
    cfg = parse_config(
        f"profile: {lab_dir}/lab-profile.yml\nmetrics: {{detail: true}}\ntargets: [smtp://127.0.0.1:1]\n",
        "t",
        lab_dir,
    )
    tc = cfg.targets[0]

    def count(chain_ctx: ssl.SSLContext) -> tuple[int, str]:
        state = AgentState(cfg)
        with LabServer(Mail("smtp", chain_ctx)) as s:
            results = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
        state.record(tc, [dataclasses.replace(r) for r in results])
        text = exposition(state)
        return len(data_lines(text)), text

    small, _ = count(server_context(pki.relay, [pki.issuing]))
    cas = [make_ca(cn_name("X" * 60 + "\u202e0"))]
    for i in range(1, 59):
        cas.append(make_ca(cn_name("Y" * 60 + str(i)), cas[-1]))
    big, text = count(server_context(make_leaf(cas[-1], ("localhost",)), list(reversed(cas))))
    chain_series = samples(text, "relaywatch_chain_certificate_info")
    assert len(chain_series) == 10  # at most 10 positions
    assert all(len(v) <= MAX_LABEL and v.isascii() for s in chain_series for v in s.labels.values())
    # 8 more positions (chain info and expiry) and interceptor_info: a constant, whatever the server sends
    assert big == small + 2 * (10 - 2) + 1


@pytest.mark.peers
def test_addresses_that_vanish_are_removed(pki: LabPKI, lab_dir: Path, lab_profile: TrustProfile) -> None:
    cfg = parse_config(f"profile: {lab_dir}/lab-profile.yml\ntargets: [smtp://relay.test:25]\n", "t", lab_dir)
    tc = cfg.targets[0]
    state = AgentState(cfg)
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:
        [r] = probe(f"smtp://127.0.0.1:{s.port}", lab_profile)
    rec = r.record
    v4 = r
    v6 = dataclasses.replace(r, record=dataclasses.replace(rec, address="::1"))
    state.record(tc, [v4, v6])
    assert 'address="::1"' in exposition(state)
    later = dataclasses.replace(v4, record=dataclasses.replace(rec, started_at=dt.datetime.now(dt.UTC)))
    changes = state.record(tc, [later])
    assert 'address="::1"' not in exposition(state) and 'address="127.0.0.1"' in exposition(state)
    assert changes == []  # same verdict on the remaining address: no event


@pytest.mark.peers
def test_path_worker_keeps_scapy_out_of_the_agent() -> None:
    import socket
    import sys

    from relaywatch.path.client import Tracer

    tracer = Tracer()
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        try:
            result = tracer.trace("127.0.0.1", s.getsockname()[1], max_hops=2, timeout=0.5)
        finally:
            tracer.close()
    assert result.status == "terminated_at_destination" and result.terminating_hop == 1
    assert not [m for m in sys.modules if m.startswith("scapy")]


def test_host_metrics_are_bounded_and_labelled() -> None:
    from relaywatch.export.metrics import host_families
    from relaywatch.host.model import HostReport, LocalProcess, StoreCA

    report = HostReport(
        (LocalProcess(42, "AvastSvc", "/opt/avast/AvastSvc", "Avast"),),
        (
            StoreCA(
                "CN=Avast Web/Mail Shield Root",
                "Avast Web/Mail Shield Root",
                "ab" * 32,
                "store",
                "Avast",
                False,
            ),
        ),
        (),
        ("store",),
    )
    fams = {f.name: f for f in host_families(report)}
    [proc] = fams["relaywatch_local_interceptor_process"].samples
    assert proc.labels == {"product": "Avast", "process": "AvastSvc"}
    [ca] = fams["relaywatch_trust_store_interception_ca"].samples
    assert ca.labels["subject_cn"] == "Avast Web/Mail Shield Root" and ca.labels["product"] == "Avast"
