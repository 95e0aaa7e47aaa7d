"""The human report of `relaywatch check` / `analyze`: the verdict in words, what to do, the evidence.

Certificate fields and server lines are attacker-controlled: control characters are escaped before they
reach a terminal."""

from __future__ import annotations

import re
from collections.abc import Iterable

from relaywatch.host.model import HostReport, LocalProcess
from relaywatch.model import ProbeResult, Verdict
from relaywatch.path.model import PathResult

# every control character (newlines too: a certificate must not forge a report line) and the
# bidirectional overrides that reorder what a terminal shows
_CONTROL = re.compile(r"[\x00-\x1f\x7f-\x9f\u200e\u200f\u202a-\u202e\u2066-\u2069]")


def safe(text: object, limit: int = 200) -> str:
    """Escape control characters (no terminal escape sequences from a server) and bound the length."""
    s = _CONTROL.sub(
        lambda m: f"\\u{ord(m.group()):04x}" if ord(m.group()) > 0xFF else f"\\x{ord(m.group()):02x}",
        str(text),
    )
    return s if len(s) <= limit else s[: limit - 3] + "..."


def render(results: Iterable[ProbeResult], transcript: bool = False) -> str:
    return "\n".join(render_one(r, transcript) for r in results)


def render_one(result: ProbeResult, transcript: bool = False) -> str:
    r, a = result.record, result.analysis
    mode = "STARTTLS" if r.target.starttls else "implicit TLS"
    out = [
        f"{safe(r.target.raw)}  ({r.target.protocol}, {mode}, port {r.target.port})"
        f"  address {r.address or '-'}",
        f"  Verdict:   {a.verdict.upper()}: {a.verdict.meaning}",
    ]
    if a.verdict is not Verdict.OK:
        out.append(f"  What to do: {a.verdict.advice}")
    out.append(f"  Profile:   {safe(a.profile)} {safe(a.profile_version)}")
    caps = ", ".join(safe(c, 40) for c in r.starttls.capabilities_after_tls[:12])
    out.append(
        f"  STARTTLS:  {r.starttls.state}"
        + (f" (reply {safe(r.starttls.reply, 80)})" if r.starttls.reply and r.target.starttls else "")
    )
    if r.tls is not None:
        extra = f", group {r.tls.group}" if r.tls.group else ""
        out.append(f"  TLS:       {r.tls.version or 'unknown'} {r.tls.cipher}{extra}")
    if caps:
        out.append(f"  After TLS: {caps}")
    if a.interceptor is not None:
        i = a.interceptor
        out.append(
            f"  Interceptor: {safe(i.product)} ({safe(i.kind)}, {safe(i.vendor)})"
            + (f"; CA {safe(i.ca_subject, 120)}" if i.ca_subject else "")
            + (f"; trusted locally: {'YES' if i.trusted_locally else 'no'}" if i.ca_subject else "")
        )
        if i.ca_spki_sha256:
            out.append(f"               CA key (SPKI SHA-256) {i.ca_spki_sha256}")
    if a.findings:
        out.append("  Findings:")
        out += [f"    [{f.severity}] {f.code}: {safe(f.message, 400)}" for f in a.findings]
    if a.chain:
        out.append("  Chain presented (leaf first; ok = part of the profile's trust):")
        out.append(f"    {'#':>2}  {'':3} {'subject CN':34} {'issuer CN':34} {'not after':10}  sha256")
        for c in a.chain:
            mark = "ok" if c.expected else "!!"
            out.append(
                f"    {c.position:>2}  {mark:3} {safe(c.subject_cn, 34):34} {safe(c.issuer_cn, 34):34} "
                f"{c.not_after:%Y-%m-%d}  {c.sha256[:16]}"
            )
    if a.validated_path:
        out.append("  Validated path: " + " -> ".join(safe(s, 60) for s in a.validated_path))
    out += _gateway_lines(result)
    out += _path_lines(result.path)
    out += _host_lines(result.host, r.local_peer)
    timings = ", ".join(f"{k} {v * 1000:.1f} ms" for k, v in r.timings.items())
    out.append(f"  Timings:   {timings}")
    if transcript and r.transcript:
        out.append("  Transcript:")
        out += [f"    {t.at * 1000:8.1f} ms {t.direction} {safe(t.text, 160)}" for t in r.transcript]
    return "\n".join(out) + "\n"


def _gateway_lines(result: ProbeResult) -> list[str]:
    """DANE and MTA-STS (gateway hosts): DNS data is attacker-controlled, escaped like the rest."""
    a, out = result.analysis, []
    if a.dane is not None:
        d = a.dane
        out.append(f"  DANE:      {d.status}" + (f": {safe(d.reason, 200)}" if d.reason else ""))
        for t in d.records[:16]:
            where = (
                f"matches certificate {t.matched_position}" if t.matched_position is not None else "no match"
            )
            if not t.usable:
                where = "unusable"
            out.append(f"    TLSA {t.usage} {t.selector} {t.matching} {safe(t.data, 24)}  {where}")
    if a.mta_sts is not None:
        m = a.mta_sts
        if m.mode:
            matched = "matches" if m.matched else "does NOT match"
            out.append(
                f"  MTA-STS:   {safe(m.domain)} mode {safe(m.mode)}, id {safe(m.id, 40)}, "
                f"max_age {m.max_age}; "
                f"mx {', '.join(safe(x, 60) for x in m.mx[:8])}: {safe(result.record.target.host)} {matched}"
            )
        else:
            out.append(f"  MTA-STS:   {safe(m.domain)}: {safe(m.reason, 200)}")
    return out


def _path_lines(path: PathResult | None) -> list[str]:
    if path is None:
        return []
    out = [f"  Path:      {path.status}: {safe(path.reason, 300)}"]
    if path.trace is not None:
        out.append(
            f"    mail port answers at hop {path.terminating_hop}, address answers ICMP echo at hop "
            f"{path.destination_hop}, server packets travelled {path.server_distance or '?'} hops"
        )
        for h in path.trace.tcp_hops:
            rtt = f"{h.rtt_ms:.2f} ms" if h.rtt_ms is not None else "-"
            changes = f"  altered: {', '.join(safe(c, 60) for c in h.changes)}" if h.changes else ""
            out.append(
                f"    {h.ttl:>3}  {safe(h.address or '*', 40):40} {safe(h.kind, 14):14} {rtt}{changes}"
            )
    return out


def _host_lines(host: HostReport | None, peer: LocalProcess | None) -> list[str]:
    out = []
    if peer is not None:
        out.append(
            f"  Local end: process {safe(peer.name)} (pid {peer.pid}, {safe(peer.exe) or '?'})"
            + (f", product {safe(peer.product)}" if peer.product else "")
        )
    if host is not None:
        procs = ", ".join(
            f"{safe(p.name)} (pid {p.pid}, {safe(p.product)})" for p in host.interceptor_processes
        )
        out.append(f"  Host:      interceptor processes: {procs or 'none'}")
        cas = ", ".join(f"{safe(c.subject_cn, 60)} ({safe(c.product)})" for c in host.store_interception_cas)
        out.append(
            f"             trust store CAs of known interceptors: {cas or 'none'}; "
            f"{len(host.store_foreign_cas)} CAs outside Mozilla's program"
        )
    return out
