"""Gateway hosts (SMTP on port 25): the DNS evidence DANE and MTA-STS need, gathered in the probe.

A host target on port 25 gets its addresses from the configured resolver, with their DNSSEC state, and,
only when those are secure (RFC 7672 §2.2), its TLSA records at `_25._tcp.<host>`. An `mx:domain` target
first looks up the domain's MX hosts (preference order), then probes each host like that, every address,
while the domain's MTA-STS policy (RFC 8461) is fetched beside: the `_mta-sts` TXT record, then
`https://mta-sts.<domain>/.well-known/mta-sts.txt` with full certificate validation. All of it shares the
target's one timeout; DNS gets at most part of it, so a resolver that never answers still leaves time to
report the rest of the probe."""

from __future__ import annotations

import concurrent.futures
import dataclasses
import os
import socket
import ssl
import time
from collections.abc import Callable

from relaywatch.addresses import AddressFamily
from relaywatch.analysis.mta_sts import txt_value
from relaywatch.model import DNSAnswer, GatewayDNS, PolicyFetch, ProbeRecord
from relaywatch.probe import dns
from relaywatch.probe.dnsconfig import MTA_STS_CA_FILE_ENV, MTA_STS_PORT_ENV, DNSSECMode
from relaywatch.probe.limits import ProbeError
from relaywatch.probe.options import ProbeOptions
from relaywatch.probe.resolve import _capped, _static_hosts
from relaywatch.target import GATEWAY_PORT, Target, TargetError, normalise_host

MAX_MX_HOSTS = 8  # each is a probe of every address: a hostile zone could list hundreds
MAX_POLICY = 64 * 1024  # RFC 8461 §3.3 suggests 64 KiB as the maximum policy size
DNS_SHARE = 0.4  # of the target's timeout, for the DNS of one host

Probe = Callable[[Target, list[str], GatewayDNS], list[ProbeRecord]]


def host_evidence(
    host: str, options: ProbeOptions, deadline: float, secure_chain: bool = True
) -> tuple[list[str], GatewayDNS]:
    """The addresses to probe and what DNS said about them; ProbeError when there is none.

    secure_chain: the name reached us securely (an mx: target with an insecure MX RRset does not)."""
    limits = options.limits
    static = _static_hosts().get(host)
    if static is not None:
        found = _capped(
            host,
            options.address_family,
            [a for a in static if options.address_family.admits(a)],
            limits.max_addresses,
        )
        return found, GatewayDNS(host, None, note="addresses from RELAYWATCH_HOSTS_FILE: not DNSSEC-secured")
    where = dns.server(options.dns)
    budget = min(deadline, time.monotonic() + limits.timeout * DNS_SHARE)
    families = _families(options.address_family)
    found, answer = dns.addresses(where, host, families, budget)
    found = [a for a in found if options.address_family.admits(a)]
    evidence = GatewayDNS(host, answer)
    if options.dns.dnssec is not DNSSECMode.OFF and answer.secure and secure_chain and found:
        evidence = dataclasses.replace(evidence, tlsa=dns.tlsa(where, host, answer.cname, budget))
    elif options.dns.dnssec is DNSSECMode.OFF:
        evidence = dataclasses.replace(evidence, note="dnssec: off")
    elif not secure_chain:
        evidence = dataclasses.replace(
            evidence, note="the MX RRset is not DNSSEC-secure: no DANE for its hosts"
        )
    if not found:
        raise _NoAddress(answer, evidence)
    return _capped(host, options.address_family, found, limits.max_addresses), evidence


class _NoAddress(ProbeError):
    def __init__(self, answer: DNSAnswer, evidence: GatewayDNS) -> None:
        why = answer.message or answer.status
        super().__init__("resolve", "unreachable", f"cannot resolve {answer.name}: {why}")
        self.evidence = evidence


def _families(family: AddressFamily) -> list[str]:
    return {"4": ["A"], "6": ["AAAA"]}.get(str(family), ["A", "AAAA"])


def mx_hosts(domain: str, options: ProbeOptions, deadline: float) -> tuple[list[str], DNSAnswer]:
    """The MX hosts in preference order (RFC 5321 §5.1), capped; no MX: the domain itself (implicit MX)."""
    where = dns.server(options.dns)
    budget = min(deadline, time.monotonic() + options.limits.timeout * DNS_SHARE)
    answer = dns.lookup(where, domain, "MX", budget)
    if answer.status != "ok":
        raise ProbeError("resolve", "unreachable", f"MX of {domain}: {answer.message or answer.status}")
    ranked: list[tuple[int, str]] = []
    for text in answer.records:
        fields = text.split()
        if len(fields) != 2 or not fields[0].isdigit():
            continue
        name = fields[1].rstrip(".")
        if not name:
            raise ProbeError("resolve", "unreachable", f"{domain} publishes a null MX: it accepts no mail")
        try:
            ranked.append((int(fields[0]), normalise_host(name)))
        except TargetError:
            continue
    hosts = list(dict.fromkeys(h for _, h in sorted(ranked)))[:MAX_MX_HOSTS]
    return (hosts or [domain]), answer


def mta_sts(domain: str, options: ProbeOptions, deadline: float) -> tuple[DNSAnswer, PolicyFetch | None]:
    """The `_mta-sts` TXT record; the policy only when a record says there is one (RFC 8461 §3.1)."""
    where = dns.server(options.dns)
    txt = dns.lookup(where, f"_mta-sts.{domain}", "TXT", deadline)
    if txt.status != "ok" or not any(txt_value(r).startswith("v=STSv1") for r in txt.records):
        return txt, None
    return txt, fetch_policy(domain, options, deadline)


def fetch_policy(domain: str, options: ProbeOptions, deadline: float) -> PolicyFetch:
    """GET the policy over HTTPS, validated for the policy host, at most 64 KiB, within the deadline."""
    host = f"mta-sts.{domain}"
    port = int(os.environ.get(MTA_STS_PORT_ENV) or 443)
    url = f"https://{host}{'' if port == 443 else f':{port}'}/.well-known/mta-sts.txt"
    try:
        addresses, _ = host_evidence_plain(host, options, deadline)
        return _get(url, host, addresses[0], port, deadline)
    except ProbeError as exc:
        return PolicyFetch(url, "failed", "", exc.message)


def host_evidence_plain(host: str, options: ProbeOptions, deadline: float) -> tuple[list[str], None]:
    static = _static_hosts().get(host)
    if static is not None:
        return list(static), None
    found, answer = dns.addresses(dns.server(options.dns), host, _families(options.address_family), deadline)
    if not found:
        raise ProbeError(
            "resolve", "unreachable", f"cannot resolve {host}: {answer.message or answer.status}"
        )
    return found, None


def _context() -> ssl.SSLContext:
    ca = os.environ.get(MTA_STS_CA_FILE_ENV)
    ctx = ssl.create_default_context(cafile=ca) if ca else ssl.create_default_context()
    ctx.minimum_version = ssl.TLSVersion.TLSv1_2
    return ctx


def _get(url: str, host: str, address: str, port: int, deadline: float) -> PolicyFetch:
    def left() -> float:
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            raise TimeoutError("the policy fetch took longer than the probe's deadline")
        return remaining

    try:
        with (
            socket.create_connection((address, port), timeout=left()) as raw,
            _context().wrap_socket(raw, server_hostname=host) as tls,
        ):
            tls.settimeout(left())
            tls.sendall(
                f"GET /.well-known/mta-sts.txt HTTP/1.0\r\nHost: {host}\r\n"
                "User-Agent: relaywatch\r\nAccept: text/plain\r\n\r\n".encode("ascii")
            )
            data = bytearray()
            while len(data) <= MAX_POLICY + 4096:
                tls.settimeout(left())
                chunk = tls.recv(16384)
                if not chunk:
                    break
                data += chunk
    except ssl.SSLCertVerificationError as exc:
        return PolicyFetch(
            url, "untrusted", "", f"the policy host's certificate does not validate: {exc.verify_message}"
        )
    except TimeoutError:
        return PolicyFetch(url, "timeout", "", "the policy fetch took longer than the probe's deadline")
    except (OSError, ssl.SSLError, ValueError) as exc:
        return PolicyFetch(url, "failed", "", f"{type(exc).__name__}: {str(exc)[:200]}")
    return _http(url, bytes(data))


def _http(url: str, data: bytes) -> PolicyFetch:
    head, sep, body = data.partition(b"\r\n\r\n")
    if not sep:
        return PolicyFetch(url, "failed", "", "not an HTTP response")
    status = head.split(b"\r\n", 1)[0].decode("latin-1")[:100]
    parts = status.split()
    if len(parts) < 2 or parts[1] != "200":
        return PolicyFetch(url, "failed", "", f"HTTP status {status!r} (RFC 8461 §3.3: only 200 counts)")
    if len(body) > MAX_POLICY:
        return PolicyFetch(url, "too_large", "", f"the policy is larger than {MAX_POLICY // 1024} KiB")
    return PolicyFetch(url, "fetched", body.decode("utf-8", "replace"))


def probe_mx(target: Target, options: ProbeOptions, probe_host: Probe) -> list[ProbeRecord]:
    """Every MX host of the domain, every address, with the domain's MX and MTA-STS evidence on each."""
    deadline = time.monotonic() + options.limits.timeout
    hosts, mx = mx_hosts(target.host, options, deadline)
    with concurrent.futures.ThreadPoolExecutor(1 + len(hosts), thread_name_prefix="gateway") as pool:
        policy = pool.submit(mta_sts, target.host, options, deadline)
        futures = [pool.submit(_one_host, target, h, mx, options, deadline, probe_host) for h in hosts]
        records = [r for f in futures for r in f.result()]
        txt, fetched = policy.result()
    return [
        dataclasses.replace(
            r,
            dns=dataclasses.replace(
                r.dns or GatewayDNS(r.target.host, None), mta_sts_txt=txt, policy=fetched
            ),
        )
        for r in records
    ]


def _one_host(
    target: Target, host: str, mx: DNSAnswer, options: ProbeOptions, deadline: float, probe_host: Probe
) -> list[ProbeRecord]:
    one = Target(raw=target.raw, scheme=target.scheme, host=host, port=GATEWAY_PORT)
    try:
        addresses, evidence = host_evidence(host, options, deadline, secure_chain=mx.secure)
    except _NoAddress as exc:
        evidence = dataclasses.replace(exc.evidence, domain=target.host, mx=mx)
        return probe_host(one, [], evidence)
    except ProbeError:
        return probe_host(one, [], GatewayDNS(host, None, domain=target.host, mx=mx))
    return probe_host(one, addresses, dataclasses.replace(evidence, domain=target.host, mx=mx))
