"""The status page and the per-probe detail page: plain server-rendered HTML, no external assets, and
every value escaped (certificate fields and transcripts are attacker-controlled)."""

from __future__ import annotations

import datetime as dt

from relaywatch.model import Analysis, Verdict
from relaywatch.run.history import Entry
from relaywatch.run.state import AgentState

_VERDICTS = frozenset(str(v) for v in Verdict)
_COLUMNS = (
    "Target",
    "Address",
    "Verdict",
    "Since",
    "Interceptor",
    "STARTTLS",
    "TLS",
    "DANE / MTA-STS",
    "Last probe",
    "",
)


def status_page(state: AgentState) -> str:
    rows = []
    for s in sorted(state.series(), key=lambda s: (s.target, s.address)):
        r, a = s.result.record, s.result.analysis
        since = state.since(s.target, s.address)
        cells = (
            _e(s.target),
            _e(s.address or "-"),
            _verdict(str(a.verdict)),
            _e(_time(since) if since else "-"),
            _e(a.interceptor.product if a.interceptor else "-"),
            _e(r.starttls.state),
            _e(r.tls.version if r.tls else "-"),
            _e(_gateway_summary(a)),
            _e(_time(r.started_at.timestamp())),
            f'<a href="/details?id={s.entry_id}">details</a>',
        )
        rows.append("<tr>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>")
    history = "".join(
        f'<li><a href="/details?id={e.id}">{_e(_time(e.result.record.started_at.timestamp()))} '
        f"{_e(e.target)} {_e(e.result.record.address or '-')}</a> {_verdict(str(e.result.verdict))}</li>"
        for e in reversed(state.recent)
    )
    failures = "".join(
        f'<li><a href="/details?id={e.id}">{_e(_time(e.result.record.started_at.timestamp()))} '
        f"{_e(e.target)}</a> {_verdict(str(e.result.verdict))}</li>"
        for e in reversed(state.failures)
    )
    head = "".join(f"<th>{c}</th>" for c in _COLUMNS)
    return _page(
        "relaywatch",
        f"<h1>relaywatch</h1><table><tr>{head}</tr>{''.join(rows)}</table>"
        f"<h2>Recent probes</h2><ul>{history}</ul><h2>Recent failures</h2><ul>{failures}</ul>"
        '<p><a href="/metrics">Metrics</a></p>',
    )


def detail_page(state: AgentState, entry: Entry) -> str:
    r, a = entry.result.record, entry.result.analysis
    parts = [
        f"<h1>{_e(entry.target)} {_e(r.address or '')}</h1>",
        f"<p>Verdict: {_verdict(str(a.verdict))} {_e(a.verdict.meaning)}. "
        f"What to do: {_e(a.verdict.advice)}</p>",
        "<h2>Findings</h2><ul>"
        + "".join(f"<li><b>{_e(f.severity)}</b> {_e(f.code)}: {_e(f.message)}</li>" for f in a.findings)
        + "</ul>",
    ]
    parts += _gateway(entry)
    if a.interceptor:
        i = a.interceptor
        parts.append(
            f"<p class=interceptor>Interceptor: {_e(i.product)} ({_e(i.kind)}, {_e(i.vendor)}), "
            f"CA {_e(i.ca_subject)}, trusted locally: {'yes' if i.trusted_locally else 'no'}</p>"
        )
    parts.append(
        "<h2>Chain presented</h2><table><tr><th>#</th><th>Expected</th><th>Subject</th><th>Issuer</th>"
        "<th>Not after</th><th>SPKI SHA-256</th></tr>"
        + "".join(
            f"<tr><td>{c.position}</td><td>{'yes' if c.expected else 'NO'}</td><td>{_e(c.subject)}</td>"
            f"<td>{_e(c.issuer)}</td><td>{c.not_after:%Y-%m-%d}</td><td><code>{c.spki_sha256}</code></td></tr>"
            for c in a.chain
        )
        + "</table>"
    )
    profile = next((t.profile for t in state.config.targets if t.name == entry.target), None)
    if profile:
        anchors = "".join(f"<li>{_e(subject)}</li>" for subject in profile.anchors)
        parts.append(f"<h2>Expected anchors ({_e(profile.name)})</h2><ul>{anchors}</ul>")
    transcript = "\n".join(f"{t.at * 1000:8.1f} ms {t.direction} {t.text}" for t in r.transcript)
    parts.append(f"<h2>Transcript</h2><pre>{_e(transcript)}</pre>")
    parts.append("<h2>Certificates</h2>")
    for c in a.chain:
        fields = [
            ("Subject", c.subject),
            ("Issuer", c.issuer),
            ("Expected", "yes" if c.expected else "NO"),
            ("Serial", c.serial),
            ("Not before", f"{c.not_before:%Y-%m-%d %H:%M:%S} UTC"),
            ("Not after", f"{c.not_after:%Y-%m-%d %H:%M:%S} UTC"),
            ("Names", ", ".join(c.dns_names)),
            ("Key", c.key),
            ("Signature", c.signature_algorithm),
            ("CA", "yes" if c.is_ca else "no"),
            ("SCTs", str(c.sct_count)),
            ("SHA-256", c.sha256),
            ("SPKI SHA-256", c.spki_sha256),
        ]
        rows = "".join(f"<tr><th>{_e(k)}</th><td>{_e(v)}</td></tr>" for k, v in fields)
        parts.append(f"<h3>#{c.position} {_e(c.subject_cn)}</h3><table>{rows}</table><pre>{_e(c.pem)}</pre>")
    return _page(f"relaywatch: {entry.target}", "".join(parts) + '<p><a href="/">Back</a></p>')


def _gateway_summary(a: Analysis) -> str:
    """One cell: the DANE state and the MTA-STS mode (or why there is none); "-" off gateway hosts."""
    parts = []
    if a.dane is not None:
        parts.append(f"DANE {a.dane.status}")
    if a.mta_sts is not None:
        m = a.mta_sts
        mode = m.mode or "no policy"
        match = {True: "", False: ", mx not listed", None: ""}[m.matched]
        parts.append(f"MTA-STS {mode[:16]}{match}")
    return "; ".join(parts) or "-"


def _gateway(entry: Entry) -> list[str]:
    """DANE and MTA-STS evidence of a gateway host (DNS data is attacker-controlled: escaped)."""
    a, parts = entry.result.analysis, []
    if a.dane is not None:
        rows = "".join(
            f"<tr><td>{t.usage} {t.selector} {t.matching}</td><td><code>{_e(t.data[:64])}</code></td>"
            f"<td>{_e(t.matched_position if t.matched_position is not None else '-')}</td>"
            f"<td>{'yes' if t.usable else 'no'}</td><td>{_e(t.note)}</td></tr>"
            for t in a.dane.records
        )
        parts.append(
            f"<h2>DANE</h2><p>Status: <b>{_e(a.dane.status)}</b> {_e(a.dane.reason)}</p>"
            "<table><tr><th>TLSA</th><th>Data</th><th>Matched position</th><th>Usable</th><th>Note</th></tr>"
            f"{rows}</table>"
        )
    if a.mta_sts is not None:
        m = a.mta_sts
        parts.append(
            f"<h2>MTA-STS</h2><p>{_e(m.domain)}: mode {_e(m.mode or '-')}, id {_e(m.id or '-')}, max_age "
            f"{_e(m.max_age if m.max_age is not None else '-')}, mx {_e(', '.join(m.mx) or '-')}, this host "
            f"{_e({True: 'matches', False: 'does not match', None: '-'}[m.matched])}. {_e(m.reason)}</p>"
        )
    return parts


# html.escape(quote=True)'s table: `import html` would also load html.entities (0.35 MB of the agent's
# Python objects, for a function of five replacements); tests/test_run_state.py checks they agree
_HTML_ESCAPES = str.maketrans({"&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;"})


def _e(value: object) -> str:
    return str(value).translate(_HTML_ESCAPES)


def _verdict(v: str) -> str:
    colour = Verdict.of(v).colour if v in _VERDICTS else "#000"
    return f'<span class="verdict" style="color:{colour};font-weight:bold">{_e(v)}</span>'


def _time(ts: float) -> str:
    return dt.datetime.fromtimestamp(ts, dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def _page(title: str, body: str) -> str:
    return (
        f"<!doctype html><html><head><meta charset=utf-8><title>{_e(title)}</title><style>"
        "body{font-family:sans-serif;margin:2em}table{border-collapse:collapse}"
        "td,th{border:1px solid #ccc;padding:4px 8px;text-align:left}pre{background:#f6f6f6;padding:8px}"
        f"</style></head><body>{body}</body></html>"
    )
