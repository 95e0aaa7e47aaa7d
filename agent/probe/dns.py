"""DNS lookups for gateway hosts through the configured resolver (dnspython), bounded in time and size.

Everything here is attacker-controlled (the zone, and anything on the path to a resolver that is not
local): answers are capped in records and characters, a message or rdata that does not parse is an
answer of status `malformed`, and every query ends at the caller's deadline. The AD bit is the only
evidence of DNSSEC (see dnsconfig.py: the resolver must be trusted and local); a SERVFAIL that a
checking-disabled query answers is `bogus`: the resolver refused the data because validation failed."""

from __future__ import annotations

import time
from collections.abc import Sequence

import dns.exception
import dns.flags
import dns.message
import dns.name
import dns.query
import dns.rcode
import dns.rdatatype
from relaywatch.model import DNSAnswer
from relaywatch.probe.dnsconfig import DNSConfig, parse_resolver

MAX_RECORDS = 16  # per answer: TLSA, MX, TXT; a hostile zone can list hundreds
MAX_RECORD_TEXT = 8192  # characters of one record (a full-certificate TLSA record is about 3 KiB of hex)
MAX_MESSAGE = 240  # characters of an error message
MAX_CNAMES = 8  # links of a CNAME chain followed in one answer


def server(config: DNSConfig) -> tuple[str, int]:
    """The configured resolver, or the first nameserver of /etc/resolv.conf (the system resolver)."""
    if config.resolver:
        return parse_resolver(config.resolver)
    try:
        with open("/etc/resolv.conf", encoding="utf-8", errors="replace") as f:
            for line in f:
                fields = line.split()
                if len(fields) >= 2 and fields[0] == "nameserver":
                    return parse_resolver(fields[1] if ":" not in fields[1] else f"[{fields[1]}]")
    except (OSError, ValueError):
        pass
    return "127.0.0.1", 53


def lookup(where: tuple[str, int], name: str, rdtype: str, deadline: float) -> DNSAnswer:
    """One question; never raises for anything the network does."""
    try:
        qname = dns.name.from_text(name)
    except dns.exception.DNSException as exc:
        return DNSAnswer(name, rdtype, "error", False, (), f"not a DNS name: {_short(exc)}")
    try:
        reply = _ask(where, qname, rdtype, deadline, checking_disabled=False)
        if reply.rcode() == dns.rcode.SERVFAIL:
            return _servfail(where, qname, name, rdtype, deadline)
        return _answer(reply, name, rdtype)
    except dns.exception.Timeout:
        return DNSAnswer(name, rdtype, "timeout", False, (), f"no answer from {where[0]}:{where[1]} in time")
    except (dns.exception.FormError, dns.exception.SyntaxError, ValueError, IndexError) as exc:
        return DNSAnswer(name, rdtype, "malformed", False, (), f"the answer does not parse: {_short(exc)}")
    except (dns.exception.DNSException, OSError, EOFError) as exc:
        return DNSAnswer(name, rdtype, "error", False, (), f"{type(exc).__name__}: {_short(exc)}")


def _servfail(
    where: tuple[str, int], qname: dns.name.Name, name: str, rdtype: str, deadline: float
) -> DNSAnswer:
    """SERVFAIL from a validating resolver: bogus when the same question with CD set is answered."""
    try:
        unchecked = _ask(where, qname, rdtype, deadline, checking_disabled=True)
    except (dns.exception.DNSException, OSError, EOFError, ValueError):
        return DNSAnswer(name, rdtype, "error", False, (), "SERVFAIL")
    if unchecked.rcode() in (dns.rcode.NOERROR, dns.rcode.NXDOMAIN):
        return DNSAnswer(
            name,
            rdtype,
            "bogus",
            False,
            (),
            "SERVFAIL, answered with checking disabled: DNSSEC validation failed",
        )
    return DNSAnswer(name, rdtype, "error", False, (), "SERVFAIL")


def _ask(
    where: tuple[str, int], qname: dns.name.Name, rdtype: str, deadline: float, checking_disabled: bool
) -> dns.message.Message:
    query = dns.message.make_query(qname, rdtype, want_dnssec=True, payload=1232)
    query.flags |= dns.flags.AD  # RFC 6840 §5.7: ask for the AD bit
    if checking_disabled:
        query.flags |= dns.flags.CD
    left = deadline - time.monotonic()
    if left <= 0:
        raise dns.exception.Timeout
    reply, _tcp = dns.query.udp_with_fallback(query, where[0], timeout=left, port=where[1])
    if time.monotonic() > deadline:
        raise dns.exception.Timeout
    return reply


def _answer(reply: dns.message.Message, name: str, rdtype: str) -> DNSAnswer:
    secure = bool(reply.flags & dns.flags.AD)
    rcode = reply.rcode()
    if rcode == dns.rcode.NXDOMAIN:
        return DNSAnswer(name, rdtype, "nxdomain", secure)
    if rcode != dns.rcode.NOERROR:
        return DNSAnswer(name, rdtype, "error", secure, (), dns.rcode.to_text(rcode))
    wanted = dns.rdatatype.from_text(rdtype)
    expanded = _expanded(reply, name)
    records: list[str] = []
    dropped = 0
    for rrset in reply.answer:
        if rrset.rdtype != wanted:
            continue  # CNAMEs on the way, signatures
        for rdata in rrset:
            if len(records) >= MAX_RECORDS:
                dropped += 1
                continue
            text = rdata.to_text()
            records.append(text if len(text) <= MAX_RECORD_TEXT else text[:MAX_RECORD_TEXT] + "...")
    note = f"{dropped} records beyond the first {MAX_RECORDS} ignored" if dropped else ""
    return DNSAnswer(name, rdtype, "ok", secure, tuple(records), note, expanded)


def _expanded(reply: dns.message.Message, name: str) -> str:
    """The end of the CNAME chain that starts at the question's name, followed through the answer section
    only (at most MAX_CNAMES links, no loops); "" when the name is no alias."""
    targets = {
        rrset.name: rrset[0].target for rrset in reply.answer if rrset.rdtype == dns.rdatatype.CNAME and rrset
    }
    current = dns.name.from_text(name)
    seen = {current}
    for _ in range(MAX_CNAMES):
        following = targets.get(current)
        if following is None or following in seen:
            break
        current = following
        seen.add(current)
    final = current.to_text(omit_final_dot=True).lower()
    return "" if len(seen) == 1 else final[:MAX_MESSAGE]


def addresses(
    where: tuple[str, int], name: str, families: Sequence[str], deadline: float
) -> tuple[list[str], DNSAnswer]:
    """A and/or AAAA as one answer: secure only when every family's answer (or denial) is."""
    answers = [lookup(where, name, rdtype, deadline) for rdtype in families]
    found = [r for a in answers if a.status == "ok" for r in a.records]
    worst = next((a for a in answers if a.status in ("bogus", "malformed", "timeout", "error")), None)
    status = "ok" if found else (worst.status if worst else answers[0].status)
    if worst is not None and worst.status == "bogus":
        status = "bogus"
    secure = all(a.secure for a in answers if a.status in ("ok", "nxdomain"))
    secure = secure and not worst
    message = "; ".join(f"{a.rdtype}: {a.message or a.status}" for a in answers if a.status != "ok")
    expanded = next((a.cname for a in answers if a.cname), "")
    return found, DNSAnswer(
        name, "/".join(families), status, secure, tuple(found), message[:MAX_MESSAGE], expanded
    )


def tlsa(where: tuple[str, int], host: str, expanded: str, deadline: float) -> DNSAnswer:
    """The TLSA RRset of an SMTP server (RFC 7672 §2.2.3): when the MX host is a secure CNAME, at the
    expanded name first, and at the original name when the expanded one has no secure records (a lookup
    that fails there is the answer: a failure is never a reason to look elsewhere)."""
    if expanded and expanded != host:
        first = lookup(where, f"_25._tcp.{expanded}", "TLSA", deadline)
        if first.status not in ("ok", "nxdomain") or (first.records and first.secure):
            return first
    return lookup(where, f"_25._tcp.{host}", "TLSA", deadline)


def _short(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    return text if len(text) <= MAX_MESSAGE else text[: MAX_MESSAGE - 3] + "..."
