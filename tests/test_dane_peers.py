"""DANE and MTA-STS against real components on loopback: Knot DNS signs the lab zones, Unbound validates
them, lab relays listen on 127.0.77.x:25 (plain, behind the re-signing interceptor, behind the stripper),
and an HTTPS policy host serves the MTA-STS policy."""

from __future__ import annotations

import hashlib
import socket
import ssl
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import dns.flags
import dns.message
import dns.query
import dns.rdatatype
import pytest
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.pki import Issued, LabPKI, make_leaf
from relaywatch.lab.proxies import Resigner, Stripper
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.model import DaneStatus, ProbeResult, Verdict
from relaywatch.pipeline import check
from relaywatch.probe.dns import MAX_RECORD_TEXT
from relaywatch.probe.dnsconfig import MTA_STS_CA_FILE_ENV, MTA_STS_PORT_ENV, DNSConfig
from relaywatch.probe.limits import Limits
from relaywatch.probe.options import ProbeOptions
from relaywatch.target import parse_target

from tests import dnslab
from tests.agent_helpers import Agent, run_agent
from tests.support import codes, free_port, get, samples, wait_for

pytestmark = [
    pytest.mark.peers,
    pytest.mark.skipif(
        not dnslab.available(), reason="knot and unbound are not installed (scripts/setup.sh)"
    ),
]
RELAY, RESIGNED, STRIPPED, POLICY = "127.0.77.1", "127.0.77.4", "127.0.77.5", "127.0.77.10"
NAMES = ("*.lab.test", "mx9.plain.test", "mta-sts.lab.test")
# 65,297 bytes of rdata (17 + 255 x 256): with its signature, the largest a DNS message over TCP carries
GIANT_TXT = " ".join(['"v=STSv1; id=big1"'] + ['"' + "x" * 255 + '"'] * 255)


def spki(cert: Issued) -> str:
    der = cert.cert.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    return hashlib.sha256(der).hexdigest()


class Gateway:
    def __init__(self, pki: LabPKI, leaf: Issued, profile: TrustProfile, resolver: str, d: Path) -> None:
        self.pki, self.leaf, self.profile, self.resolver, self.dir = pki, leaf, profile, resolver, d
        self.profile_file = ""

    def check(self, target: str, timeout: float = 8.0) -> list[ProbeResult]:
        options = ProbeOptions(
            limits=Limits(timeout=timeout, phase_timeout=timeout), dns=DNSConfig(self.resolver)
        )
        return check(parse_target(target), self.profile, options)


@pytest.fixture(scope="module")
def gateway(pki: LabPKI, lab_dir: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Gateway]:
    d = tmp_path_factory.mktemp("dane")
    leaf = make_leaf(pki.issuing, NAMES)
    ee, ta = spki(leaf), spki(pki.issuing)
    zones = {
        "lab.test": [
            "@ MX 10 mx1.lab.test.",
            "mx1 A 127.0.77.1",
            f"_25._tcp.mx1 TLSA 3 1 1 {ee}",
            "mx2 A 127.0.77.1",
            f"_25._tcp.mx2 TLSA 2 1 1 {ta}",
            "mx4 A 127.0.77.4",
            f"_25._tcp.mx4 TLSA 3 1 1 {ee}",
            "mx5 A 127.0.77.5",
            f"_25._tcp.mx5 TLSA 3 1 1 {ee}",
            "mx6 A 127.0.77.1",
            "_25._tcp.mx6 TLSA 3 1 1 abcd",
            f"_25._tcp.mx6 TLSA 0 0 1 {ee}",
            "bogus A 127.0.77.1",
            # RFC 7672 §2.2.3: a secure CNAME is expanded for the TLSA base name, then the original is tried
            "mxc CNAME mxt.lab.test.",
            "mxt A 127.0.77.1",
            f"_25._tcp.mxt TLSA 3 1 1 {ee}",
            "_25._tcp.mxc TLSA 3 1 1 " + "00" * 32,
            "mxd CNAME mxu.lab.test.",
            "mxu A 127.0.77.1",
            f"_25._tcp.mxd TLSA 3 1 1 {ee}",
            "mxi CNAME mx9.plain.test.",
            # bad input from the zone: a TXT record as near 64 KiB as a DNS message allows, TLSA rdata
            # cut short (usage and selector only) and a SHA-256 record without its digest
            "big MX 10 mx1.lab.test.",
            f"_mta-sts.big TXT {GIANT_TXT}",
            "mx7 A 127.0.77.1",
            r"_25._tcp.mx7 TYPE52 \# 2 0301",
            "mx8 A 127.0.77.1",
            r"_25._tcp.mx8 TYPE52 \# 3 030101",
            '_mta-sts TXT "v=STSv1; id=lab20261201"',
            "mta-sts A 127.0.77.10",
        ],
        "_tcp.bogus.lab.test": [f"_25 TLSA 3 1 1 {ee}"],
        "plain.test": ["mx9 A 127.0.77.1", f"_25._tcp.mx9 TLSA 3 1 1 {ee}"],
    }
    profile_file = lab_dir / "gateway-profile.yml"
    profile_file.write_text(
        'name: lab-gateway\nversion: "lab"\nanchors: [root.pem]\nintermediates: [issuing.pem]\n'
        f'names: [{", ".join(repr(n) for n in NAMES)}]\nmin_tls_version: "1.2"\nrequire_starttls: true\n'
        "public_roots: root.pem\n"
    )
    relay_ctx = server_context(leaf, [pki.issuing])
    with (
        dnslab.running_dns_lab(d / "dns", zones) as dns,
        LabServer(Mail("smtp", relay_ctx), RELAY, 25),
        LabServer(Resigner((RELAY, 25), pki.interception_ca), RESIGNED, 25),
        LabServer(Stripper((RELAY, 25)), STRIPPED, 25),
    ):
        lab = Gateway(pki, leaf, load_profile(str(profile_file)), dns.resolver, d)
        lab.profile_file = str(profile_file)
        yield lab


def one(results: list[ProbeResult]) -> ProbeResult:
    assert len(results) == 1, [r.record.address for r in results]
    return results[0]


def test_dane_ee_matching_relay_is_verified(gateway: Gateway) -> None:
    r = one(gateway.check("mx1.lab.test:25"))
    assert r.verdict is Verdict.OK, r.analysis.findings
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED
    assert "dane_verified" in codes(r)
    assert r.analysis.dane.records[0].matched_position == 0


def test_resigned_session_is_a_dane_mismatch(gateway: Gateway) -> None:
    r = one(gateway.check("mx4.lab.test:25"))
    assert r.verdict is Verdict.INTERCEPTED
    assert {"dane_mismatch"} <= codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.MISMATCH


def test_dane_ta_on_the_issuing_ca_is_verified(gateway: Gateway) -> None:
    r = one(gateway.check("mx2.lab.test:25"))
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED, r.analysis.dane
    assert r.analysis.dane.records[0].matched_position == 1
    assert r.verdict is Verdict.OK


def test_broken_signature_is_dnssec_bogus(gateway: Gateway) -> None:
    r = one(gateway.check("bogus.lab.test:25"))
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.BOGUS
    f = next(f for f in r.analysis.findings if f.code == "dnssec_bogus")
    assert f.severity == "critical"
    assert r.record.tls is not None  # the rest of the probe is still reported


def test_unsigned_zone_is_dane_unavailable(gateway: Gateway) -> None:
    r = one(gateway.check("mx9.plain.test:25"))
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.UNAVAILABLE
    assert "dane_unavailable" in codes(r)
    assert r.verdict is Verdict.OK


def test_tlsa_present_and_starttls_hidden_is_stripped(gateway: Gateway) -> None:
    r = one(gateway.check("mx5.lab.test:25"))
    assert r.verdict is Verdict.STARTTLS_STRIPPED
    assert "dane_starttls_missing" in codes(r)


def test_malformed_and_unusable_tlsa_records_are_findings(gateway: Gateway) -> None:
    r = one(gateway.check("mx6.lab.test:25"))
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.UNAVAILABLE
    assert "tlsa_malformed" in codes(
        r
    )  # dnspython refuses a digest of the wrong length: the RRset is malformed
    assert r.verdict is Verdict.OK


def test_tlsa_base_is_the_expanded_name_of_a_secure_cname_first(gateway: Gateway) -> None:
    """mxc -> mxt: the records at the expanded name decide (those at mxc would mismatch)."""
    r = one(gateway.check("mxc.lab.test:25"))
    ev = r.record.dns
    assert ev is not None and ev.addresses is not None and ev.addresses.cname == "mxt.lab.test"
    assert ev.tlsa is not None and ev.tlsa.name == "_25._tcp.mxt.lab.test"
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED, r.analysis.dane
    assert r.verdict is Verdict.OK


def test_tlsa_falls_back_to_the_original_name_when_the_expanded_one_has_none(gateway: Gateway) -> None:
    r = one(gateway.check("mxd.lab.test:25"))
    ev = r.record.dns
    assert ev is not None and ev.tlsa is not None and ev.tlsa.name == "_25._tcp.mxd.lab.test"
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED, r.analysis.dane


def test_a_cname_into_an_unsigned_zone_is_no_dane(gateway: Gateway) -> None:
    """mxi -> mx9.plain.test: the expansion is insecure, so its TLSA records (there are some) do not count."""
    r = one(gateway.check("mxi.lab.test:25"))
    ev = r.record.dns
    assert ev is not None and ev.addresses is not None and not ev.addresses.secure and ev.tlsa is None
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.UNAVAILABLE


def test_openssl_dane_agrees(gateway: Gateway) -> None:
    """openssl s_client's own DANE check on the same servers: match on the relay, none through the proxy."""
    ee = spki(gateway.leaf)
    for address, expect in ((RELAY, True), (RESIGNED, False)):
        out = subprocess.run(
            [
                "openssl",
                "s_client",
                "-connect",
                f"{address}:25",
                "-starttls",
                "smtp",
                "-dane_tlsa_domain",
                "mx1.lab.test",
                "-dane_tlsa_rrdata",
                f"3 1 1 {ee}",
                "-brief",
            ],
            input="QUIT\n",
            capture_output=True,
            text=True,
            timeout=20,
            check=False,
        )
        text = out.stdout + out.stderr
        assert ("Verified peername" in text or "Verification: OK" in text) is expect, text[-800:]
    ours = one(gateway.check("mx1.lab.test:25")).analysis.dane
    theirs = one(gateway.check("mx4.lab.test:25")).analysis.dane
    assert ours is not None and ours.status is DaneStatus.VERIFIED
    assert theirs is not None and theirs.status is DaneStatus.MISMATCH


def _policy_server(ctx: ssl.SSLContext, body: bytes):  # type: ignore[no-untyped-def]
    def handle(sock: socket.socket, server: LabServer) -> None:
        with ctx.wrap_socket(sock, server_side=True) as tls:
            tls.recv(4096)
            tls.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: text/plain\r\n\r\n" + body)

    return handle


def test_mta_sts_enforce_policy_whose_mx_does_not_match(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv(MTA_STS_PORT_ENV, str(port))
    monkeypatch.setenv(MTA_STS_CA_FILE_ENV, _root_file(gateway))
    policy = b"version: STSv1\r\nmode: enforce\r\nmx: other.lab.test\r\nmax_age: 86400\r\n"
    ctx = server_context(gateway.leaf, [gateway.pki.issuing])
    with LabServer(_policy_server(ctx, policy), POLICY, port):
        r = one(gateway.check("mx:lab.test"))
    m = r.analysis.mta_sts
    assert m is not None and m.mode == "enforce" and m.id == "lab20261201" and m.matched is False, m
    assert "mta_sts_mx_mismatch" in codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED
    assert list(r.to_dict()["mta_sts"]["mx"]) == ["other.lab.test"]
    assert ProbeResult.from_dict(r.to_dict()) == r


def test_mta_sts_policy_fetch_through_the_interceptor(
    gateway: Gateway, monkeypatch: pytest.MonkeyPatch
) -> None:
    port = free_port()
    monkeypatch.setenv(MTA_STS_PORT_ENV, str(port))
    monkeypatch.setenv(MTA_STS_CA_FILE_ENV, _root_file(gateway))
    from relaywatch.lab.pki import forge

    forged = forge(gateway.leaf.cert, gateway.pki.interception_ca)
    ctx = server_context(forged, [gateway.pki.interception_ca])
    with LabServer(
        _policy_server(ctx, b"version: STSv1\nmode: enforce\nmx: mx1.lab.test\nmax_age: 86400\n"),
        POLICY,
        port,
    ):
        r = one(gateway.check("mx:lab.test"))
    assert "mta_sts_policy_untrusted" in codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED


def test_mta_sts_policy_of_one_mebibyte(gateway: Gateway, monkeypatch: pytest.MonkeyPatch) -> None:
    port = free_port()
    monkeypatch.setenv(MTA_STS_PORT_ENV, str(port))
    monkeypatch.setenv(MTA_STS_CA_FILE_ENV, _root_file(gateway))
    ctx = server_context(gateway.leaf, [gateway.pki.issuing])
    body = b"version: STSv1\nmode: enforce\nmx: mx1.lab.test\nmax_age: 86400\n" + b"x" * (1 << 20)
    with LabServer(_policy_server(ctx, body), POLICY, port):
        r = one(gateway.check("mx:lab.test"))
    assert "mta_sts_policy_unavailable" in codes(r)
    assert r.record.tls is not None


def test_resolver_that_does_not_answer(gateway: Gateway) -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as silent:
        silent.bind(("127.0.77.60", 0))
        port = silent.getsockname()[1]
        quiet = Gateway(gateway.pki, gateway.leaf, gateway.profile, f"127.0.77.60:{port}", gateway.dir)
        results = quiet.check("mx:lab.test", timeout=3)
        host = quiet.check("mx1.lab.test:25", timeout=3)
    assert [r.verdict for r in results] == [Verdict.UNREACHABLE]
    assert [r.verdict for r in host] == [Verdict.UNREACHABLE]
    assert host[0].record.timings["total"] < 3.5


def _root_file(gateway: Gateway) -> str:
    path = gateway.dir / "policy-ca.pem"
    path.write_bytes(gateway.pki.root.cert_pem())
    return str(path)


def test_a_64_kib_mta_sts_txt_record_is_a_finding(gateway: Gateway) -> None:
    """Over UDP the answer is truncated; dnspython retries over TCP; the record is capped, the policy id
    inside it is invalid: a finding within the probe timeout, and DANE for the MX host still reported."""
    host, port = dnslab.RESOLVER
    query = dns.message.make_query("_mta-sts.big.lab.test", "TXT", want_dnssec=True, payload=1232)
    assert dns.query.udp(query, host, port=port, timeout=5).flags & dns.flags.TC
    full = dns.query.tcp(query, host, port=port, timeout=5)
    [txt] = [rrset for rrset in full.answer if rrset.rdtype == dns.rdatatype.TXT]
    assert sum(len(part) + 1 for part in txt[0].strings) == 17 + 255 * 256  # the premise: served whole
    started = time.monotonic()
    r = one(gateway.check("mx:big.lab.test", timeout=5))
    assert time.monotonic() - started < 5.5
    ev = r.record.dns
    assert ev is not None and ev.mta_sts_txt is not None and ev.mta_sts_txt.status == "ok"
    assert len(ev.mta_sts_txt.records[0]) <= MAX_RECORD_TEXT + 3
    assert "mta_sts_invalid" in codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.VERIFIED
    assert r.record.tls is not None and r.verdict is Verdict.OK


@pytest.mark.parametrize("host", ["mx7.lab.test", "mx8.lab.test"])
def test_truncated_or_garbage_tlsa_rdata_from_the_zone_is_a_finding(gateway: Gateway, host: str) -> None:
    r = one(gateway.check(f"{host}:25", timeout=5))
    ev = r.record.dns
    assert ev is not None and ev.tlsa is not None and ev.tlsa.status == "malformed", ev
    assert "tlsa_malformed" in codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.UNAVAILABLE
    assert r.record.tls is not None and r.verdict is Verdict.OK
    assert r.record.timings["total"] < 5


def test_a_resolver_that_never_answers_tlsa(gateway: Gateway) -> None:
    """MX, A and TXT answered (and secure), TLSA never: the TLSA lookup times out within the DNS share of
    the timeout, the session and MTA-STS are still probed and reported."""
    with dnslab.dropping(dnslab.RESOLVER, ["TLSA"]) as resolver:
        quiet = Gateway(gateway.pki, gateway.leaf, gateway.profile, resolver, gateway.dir)
        started = time.monotonic()
        r = one(quiet.check("mx:lab.test", timeout=4))
        elapsed = time.monotonic() - started
    assert elapsed < 4.5
    ev = r.record.dns
    assert ev is not None and ev.mx is not None and ev.mx.secure
    assert ev.addresses is not None and ev.addresses.secure
    assert ev.tlsa is not None and ev.tlsa.status == "timeout"
    assert ev.mta_sts_txt is not None and ev.mta_sts_txt.status == "ok"
    assert "dns_lookup_failed" in codes(r)
    assert r.analysis.dane is not None and r.analysis.dane.status is DaneStatus.UNAVAILABLE
    assert r.record.tls is not None and r.verdict is Verdict.OK
    assert r.analysis.mta_sts is not None and r.analysis.mta_sts.id == "lab20261201"


def test_agent_run_dns_flags_override_the_config(gateway: Gateway, tmp_path: Path) -> None:
    """`relaywatch run --dns.resolver LAB --dnssec auto` wins over a config whose resolver never answers
    and whose dnssec is off: the address is DANE-verified in /metrics and on the status page."""
    cfg = tmp_path / "agent.yml"
    cfg.write_text(
        f"interval: 30s\ntimeout: 5s\nprofile: {gateway.profile_file}\npath: {{enabled: false}}\n"
        'dns: {resolver: "127.0.77.56:9", dnssec: "off"}\ntargets: [mx1.lab.test:25]\n'
    )

    def verified(agent: Agent) -> str | None:
        text = agent.metrics()
        found = samples(text, "relaywatch_dane_status", status="verified")
        return text if found and found[0].value == 1 else None

    with run_agent(cfg, "--dns.resolver", gateway.resolver, "--dnssec", "auto") as agent:
        wait_for(lambda: verified(agent), 30)
        page = get(agent.url + "/")[1]
    assert "<td>DANE verified</td>" in page
