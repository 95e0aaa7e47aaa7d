"""The agent's HTTP endpoints, Prometheus-exporter style: /metrics, /probe, /-/healthy, /-/ready,
/-/reload, and a plain server-rendered status page (no external assets, everything escaped:
certificate fields are attacker-controlled)."""

from __future__ import annotations

import datetime as dt
import html
import logging
import socket
import threading
from collections.abc import Callable
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit

from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.export.exposition import CONTENT_TYPE, expose
from relaywatch.export.metrics import Series, series_layout
from relaywatch.model import Verdict
from relaywatch.run.config import TargetConfig
from relaywatch.run.scheduler import Prober, options_for
from relaywatch.run.state import AgentState, Entry
from relaywatch.run.webconfig import WebConfig
from relaywatch.target import TargetError, parse_target

log = logging.getLogger("relaywatch.web")
_VERDICTS = frozenset(str(v) for v in Verdict)


class Web:
    def __init__(
        self,
        state: AgentState,
        reload: Callable[[], str | None],
        address: tuple[str, int],
        web_config: WebConfig | None = None,
        probe: Prober | None = None,
        profiles: Callable[[str], ProfileRef] | None = None,
    ) -> None:
        from relaywatch.run.config import local_profiles

        self.state, self.reload = state, reload
        self.web_config = web_config or WebConfig()
        self.probe_fn = probe or _local_probe
        self._probe_slots = threading.BoundedSemaphore(state.config.concurrency)  # /probe at once
        self.profiles = profiles or local_profiles
        web = self

        class Handler(BaseHTTPRequestHandler):
            server_version = "relaywatch"
            sys_version = ""

            def log_message(self, fmt: str, *args: object) -> None:
                log.debug("http %s", fmt % args)

            def do_GET(self) -> None:
                web.route(self, "GET")

            def do_POST(self) -> None:
                web.route(self, "POST")

        tls = self.web_config.tls

        class Server(ThreadingHTTPServer):
            daemon_threads = True
            address_family = socket.AF_INET6 if ":" in address[0] else socket.AF_INET

            def get_request(self):  # type: ignore[no-untyped-def]
                sock, addr = super().get_request()
                sock.settimeout(15)  # a stalled client holds one thread for 15 s at most
                if tls is not None:  # the handshake runs in the request's own thread
                    sock = tls.wrap_socket(sock, server_side=True, do_handshake_on_connect=False)
                return sock, addr

            def handle_error(self, request, client_address) -> None:  # type: ignore[no-untyped-def]
                log.debug("http connection from %s failed", client_address[0])

        self.server: ThreadingHTTPServer = Server(address, Handler)
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.2}, name="web", daemon=True
        )

    def start(self) -> None:
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    # --- routing
    def route(self, h: BaseHTTPRequestHandler, method: str) -> None:
        if not self.web_config.authorized(h.headers.get("Authorization")):
            h.send_response(HTTPStatus.UNAUTHORIZED)
            h.send_header("WWW-Authenticate", 'Basic realm="relaywatch"')
            h.send_header("Content-Length", "13")
            h.end_headers()
            h.wfile.write(b"Unauthorized\n")
            return None
        url = urlsplit(h.path)
        query = parse_qs(url.query)
        path = url.path
        if path == "/metrics" and method == "GET":
            return _send(h, 200, self.state.exposition(), CONTENT_TYPE)
        if path == "/probe" and method == "GET":
            return self.probe(h, query)
        if path == "/-/healthy":
            return _send(h, 200, b"Healthy.\n")
        if path == "/-/ready":
            return _send(h, 200, b"Ready.\n")
        if path == "/-/reload":
            if method != "POST":
                return _send(h, 405, b"Only POST requests allowed.\n")
            error = self.reload()
            return _send(
                h,
                500 if error else 200,
                (f"failed to reload config: {error}\n" if error else "OK\n").encode(),
            )
        if path == "/" and method == "GET":
            return _send(h, 200, self.status_page().encode(), "text/html; charset=utf-8")
        if path == "/details" and method == "GET":
            try:
                entry = self.state.find(int(query.get("id", ["0"])[0]))
            except ValueError:
                entry = None
            if entry is None:
                return _send(h, 404, b"No such probe in the history.\n")
            return _send(h, 200, self.detail_page(entry).encode(), "text/html; charset=utf-8")
        return _send(h, 404, b"Not found.\n")

    def probe(self, h: BaseHTTPRequestHandler, query: dict[str, list[str]]) -> None:
        name = (query.get("target") or [""])[0]
        config = self.state.config
        if not name:
            return _send(h, 400, b"Target parameter is missing\n")
        try:  # decided on the parsed target only: the raw string never reaches the allow-list
            requested = parse_target(name)
        except TargetError as exc:
            return _send(h, 400, f"{str(exc).splitlines()[0][:300]}\n".encode())
        configured = config.configured(requested)
        if configured is None and not config.allowed(requested):
            return _send(h, 403, b"Target is not configured or allowed by probe_allow\n")
        try:
            profile = configured.profile if configured else config.default_profile
            if "profile" in query:  # only profiles this agent already uses, or built-in ones: no file paths
                wanted = query["profile"][0]
                known = {p.name: p for p in (config.default_profile, *(t.profile for t in config.targets))}
                if wanted in known:
                    profile = known[wanted]
                elif wanted.replace("-", "").replace("_", "").isalnum():
                    profile = self.profiles(wanted)
                else:
                    return _send(h, 400, b"profile must name a built-in profile or one in the config\n")
            target = configured.target if configured else requested
        except (ProfileError, TargetError) as exc:
            return _send(h, 400, f"{str(exc).splitlines()[0][:300]}\n".encode())
        tc = configured or TargetConfig(
            name, target, profile, 60.0, config.timeout, AddressFamily.ANY, None, ()
        )
        if not self._probe_slots.acquire(timeout=1):
            return _send(h, 503, b"Too many probes at once; try again\n")
        try:
            results = self.probe_fn(target, profile, options_for(tc))
        except Exception as exc:
            return _send(h, 500, f"probe failed: {str(exc)[:300]}\n".encode())
        finally:
            self._probe_slots.release()
        rendered = []
        for r in results:
            s = Series(name, r.record.address or "", dict(tc.labels), r)
            s.observe(r)
            s.render(None, config.label_names)
            rendered.append(s.rendered)
        return _send(h, 200, expose([], series_layout(config.label_names), rendered, []), CONTENT_TYPE)

    # --- pages
    def status_page(self) -> str:
        rows = []
        for s in sorted(self.state.series(), key=lambda s: (s.target, s.address)):
            r, a = s.result.record, s.result.analysis
            since = self.state.since(s.target, s.address)
            link = f'<a href="/details?id={s.entry_id}">details</a>'
            rows.append(
                "<tr>"
                + "".join(
                    f"<td>{c}</td>"
                    for c in (
                        _e(s.target),
                        _e(s.address or "-"),
                        _verdict(str(a.verdict)),
                        _e(_time(since) if since else "-"),
                        _e(a.interceptor.product if a.interceptor else "-"),
                        _e(r.starttls.state),
                        _e(r.tls.version if r.tls else "-"),
                        _e(_time(r.started_at.timestamp())),
                        link,
                    )
                )
                + "</tr>"
            )
        history = "".join(
            f'<li><a href="/details?id={e.id}">{_e(_time(e.result.record.started_at.timestamp()))} '
            f"{_e(e.target)} {_e(e.result.record.address or '-')}</a> {_verdict(str(e.result.verdict))}</li>"
            for e in reversed(self.state.recent)
        )
        failures = "".join(
            f'<li><a href="/details?id={e.id}">{_e(_time(e.result.record.started_at.timestamp()))} '
            f"{_e(e.target)}</a> {_verdict(str(e.result.verdict))}</li>"
            for e in reversed(self.state.failures)
        )
        head = "".join(
            f"<th>{c}</th>"
            for c in (
                "Target",
                "Address",
                "Verdict",
                "Since",
                "Interceptor",
                "STARTTLS",
                "TLS",
                "Last probe",
                "",
            )
        )
        return _page(
            "relaywatch",
            f"<h1>relaywatch</h1><table><tr>{head}</tr>{''.join(rows)}</table>"
            f"<h2>Recent probes</h2><ul>{history}</ul><h2>Recent failures</h2><ul>{failures}</ul>"
            '<p><a href="/metrics">Metrics</a></p>',
        )

    def detail_page(self, entry: Entry) -> str:
        r, a = entry.result.record, entry.result.analysis
        words, todo = a.verdict.meaning, a.verdict.advice
        parts = [
            f"<h1>{_e(entry.target)} {_e(r.address or '')}</h1>",
            f"<p>Verdict: {_verdict(str(a.verdict))} {_e(words)}. What to do: {_e(todo)}</p>",
            "<h2>Findings</h2><ul>"
            + "".join(f"<li><b>{_e(f.severity)}</b> {_e(f.code)}: {_e(f.message)}</li>" for f in a.findings)
            + "</ul>",
        ]
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
        profile = next((t.profile for t in self.state.config.targets if t.name == entry.target), None)
        if profile:
            parts.append(
                "<h2>Expected anchors ("
                + _e(profile.name)
                + ")</h2><ul>"
                + "".join(f"<li>{_e(subject)}</li>" for subject in profile.anchors)
                + "</ul>"
            )
        parts.append(
            "<h2>Transcript</h2><pre>"
            + _e("\n".join(f"{t.at * 1000:8.1f} ms {t.direction} {t.text}" for t in r.transcript))
            + "</pre>"
        )
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
            parts.append(
                f"<h3>#{c.position} {_e(c.subject_cn)}</h3><table>{rows}</table><pre>{_e(c.pem)}</pre>"
            )
        return _page(f"relaywatch: {entry.target}", "".join(parts) + '<p><a href="/">Back</a></p>')


def _local_probe(target, profile, options):  # type: ignore[no-untyped-def]
    from relaywatch.pipeline import check_ref

    return check_ref(target, profile, options)


def _e(value: object) -> str:
    return html.escape(str(value), quote=True)


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


def _send(
    h: BaseHTTPRequestHandler, status: int, body: bytes, ctype: str = "text/plain; charset=utf-8"
) -> None:
    h.send_response(HTTPStatus(status))
    h.send_header("Content-Type", ctype)
    h.send_header("Content-Length", str(len(body)))
    h.end_headers()
    h.wfile.write(body)
