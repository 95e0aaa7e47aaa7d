"""`relaywatch demo`: the whole lab on loopback, probed with the lab profile, verdicts side by side."""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.pki import LAB_NAMES, Issued, LabPKI, _name, make_ca, make_lab_pki
from relaywatch.lab.proxies import Resigner, Stripper
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.model import Verdict


@dataclass(frozen=True)
class Scenario:
    name: str
    target: str
    expected: Verdict
    what: str


@dataclass(frozen=True)
class Lab:
    pki: LabPKI
    profile: TrustProfile
    directory: Path
    scenarios: tuple[Scenario, ...]


@dataclass(frozen=True)
class PublicCA:
    root: Issued
    ca: Issued
    leaf: Issued  # with SCTs from two lab logs of two operators


def public_ca(directory: Path) -> PublicCA:
    """A lab 'public root program' and two lab CT logs, written as public-roots.pem and ct-logs.json."""
    from relaywatch.lab import ctlog

    root = make_ca(_name("relaywatch Lab Public Root R1", "relaywatch public lab"))
    ca = make_ca(_name("relaywatch Lab Public DV CA", "relaywatch public lab"), root)
    logs = (
        ctlog.LabLog("Lab 'Argon' log", "Lab Operator A"),
        ctlog.LabLog("Lab 'Oak' log", "Lab Operator B"),
    )
    (directory / "public-roots.pem").write_bytes(root.cert_pem())
    (directory / "ct-logs.json").write_text(json.dumps(ctlog.log_list(logs)))
    return PublicCA(root, ca, ctlog.issue_with_scts(ca, (*LAB_NAMES, "127.0.0.1", "::1"), logs))


@contextlib.contextmanager
def running_lab(host: str = "127.0.0.1") -> Iterator[Lab]:
    """Relay (Exchange-like), re-signing interceptor, Cisco-style stripper, TLS 1.0-only relay, IMAP."""
    pki = make_lab_pki()
    with tempfile.TemporaryDirectory(prefix="relaywatch-lab-") as tmp, contextlib.ExitStack() as stack:
        directory = Path(tmp)
        public = public_ca(directory)  # the relay's operator moved to a public CA: CT-logged
        profile = load_profile(
            str(pki.write(directory, public_roots="public-roots.pem", ct_logs="ct-logs.json"))
        )
        ctx = server_context(pki.relay, [pki.issuing])

        def serve(handler) -> int:  # type: ignore[no-untyped-def]
            return stack.enter_context(LabServer(handler, host)).port

        relay = serve(Mail("smtp", ctx))
        up = (host, relay)
        resigner = serve(Resigner(up, pki.interception_ca))
        corporate = serve(Resigner(up, pki.unknown_ca))
        stripper = serve(Stripper(up, "masked"))
        old = serve(Mail("smtp", server_context(pki.relay, [pki.issuing], tls_max="1.0")))
        imaps = serve(Mail("imap", ctx, implicit_tls=True))
        expired = serve(Mail("smtp", server_context(pki.expired_relay, [pki.issuing])))
        moved = serve(Mail("smtp", server_context(public.leaf, [public.ca])))
        h = f"[{host}]" if ":" in host else host
        scenarios = (
            Scenario("relay", f"smtp://{h}:{relay}", Verdict.OK, "Exchange-like relay, lab PKI"),
            Scenario("imaps", f"imaps://{h}:{imaps}", Verdict.OK, "IMAP over implicit TLS"),
            Scenario(
                "mail-shield",
                f"smtp://{h}:{resigner}",
                Verdict.INTERCEPTED,
                "antivirus-style re-signing proxy (CA named like Avast's)",
            ),
            Scenario(
                "corporate-proxy",
                f"smtp://{h}:{corporate}",
                Verdict.INTERCEPTED,
                "re-signing proxy with a corporate CA no pattern knows",
            ),
            Scenario(
                "cisco-asa",
                f"smtp://{h}:{stripper}",
                Verdict.STARTTLS_STRIPPED,
                "ESMTP inspection masking STARTTLS as XXXXXXXA",
            ),
            Scenario(
                "tls10-only", f"smtp://{h}:{old}", Verdict.TLS_DOWNGRADED, "a server that speaks TLS 1.0 only"
            ),
            Scenario(
                "ca-changed",
                f"smtp://{h}:{moved}",
                Verdict.UNEXPECTED_ISSUER,
                "a public, CT-logged CA the profile does not list (the operator changed CAs)",
            ),
            Scenario(
                "expired", f"smtp://{h}:{expired}", Verdict.CERTIFICATE_INVALID, "relay with an expired leaf"
            ),
        )
        yield Lab(pki, profile, directory, scenarios)
