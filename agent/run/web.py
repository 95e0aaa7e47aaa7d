"""The agent's HTTP endpoints, Prometheus-exporter style: /metrics, /probe, /-/healthy, /-/ready,
/-/reload, and the status pages (pages.py). The server underneath is httpd.py: bounded, and /metrics
answered ahead of everything else."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from urllib.parse import parse_qs, urlsplit

from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef, builtin_profile_path
from relaywatch.export.exposition import CONTENT_TYPE, expose
from relaywatch.export.metrics import series_layout
from relaywatch.model import ProbeResult
from relaywatch.probe.options import ProbeOptions
from relaywatch.run import pages
from relaywatch.run.config import TargetConfig
from relaywatch.run.history import Entry
from relaywatch.run.httpd import Later, Request, Response, Server, ServerLimits
from relaywatch.run.scheduler import AsyncProber, Done, Prober, options_for
from relaywatch.run.series import Series
from relaywatch.run.state import AgentState
from relaywatch.run.webconfig import Auth, WebConfig
from relaywatch.target import Target, TargetError, parse_target

log = logging.getLogger("relaywatch.web")
HTML = "text/html; charset=utf-8"
_FAST = frozenset({"/metrics", "/-/healthy", "/-/ready"})
MAX_PROBES = 16  # /probe requests in flight at once: each holds a probe worker thread until answered


class Web:
    def __init__(
        self,
        state: AgentState,
        reload: Callable[[], str | None],
        address: tuple[str, int],
        web_config: WebConfig | None = None,
        probe: AsyncProber | None = None,
        profiles: Callable[[str], ProfileRef] | None = None,
        limits: ServerLimits = ServerLimits(),
    ) -> None:
        from relaywatch.run.config import local_profiles

        self.state, self.reload = state, reload
        self.web_config = web_config or WebConfig()
        self.probe_fn = probe or synchronous(_local_probe)
        self.profiles = profiles or local_profiles
        self._probe_slots = threading.BoundedSemaphore(MAX_PROBES)
        self.server = Server(address, self.route, self.urgent, self.web_config.tls, limits)
        self.port = self.server.port

    def start(self) -> None:
        self.server.start()

    def stop(self) -> None:
        self.server.stop()

    def urgent(self, request: Request) -> bool:
        """Scrapes and health checks with no bcrypt to run go to the server's own threads."""
        path = urlsplit(request.target).path
        return path in _FAST and self.web_config.known(request.headers.get("authorization"))

    # --- routing
    def route(self, request: Request) -> Response | Later:
        auth = self.web_config.check(request.headers.get("authorization"), request.client)
        if auth is Auth.LIMITED:
            return Response(
                429, b"Too many failed logins; try again later.\n", headers=(("Retry-After", "60"),)
            )
        if auth is Auth.DENIED:
            return Response(
                401, b"Unauthorized\n", headers=(("WWW-Authenticate", 'Basic realm="relaywatch"'),)
            )
        url = urlsplit(request.target)
        query, path, method = parse_qs(url.query), url.path, request.method
        if path == "/metrics" and method == "GET":
            return Response(200, self.state.exposition(), CONTENT_TYPE)
        if path == "/probe" and method == "GET":
            return self.probe(query)
        if path == "/-/healthy":
            return Response(200, b"Healthy.\n")
        if path == "/-/ready":
            return Response(200, b"Ready.\n")
        if path == "/-/reload":
            return self.reload_config(method)
        if path == "/" and method == "GET":
            return Response(200, pages.status_page(self.state).encode(), HTML)
        if path == "/details" and method == "GET":
            entry = self._detail_entry(query)
            if entry is None:
                return Response(404, b"No such probe in the history.\n")
            return Response(200, pages.detail_page(self.state, entry).encode(), HTML)
        return Response(404, b"Not found.\n")

    def _detail_entry(self, query: dict[str, list[str]]) -> Entry | None:
        """`?id=N` (a probe in the history) or `?target=T[&address=A]` (the latest probe of a target, as
        an alert links to it: its labels name the target, never a probe id)."""
        if "target" in query:
            address = query.get("address", [None])[0]
            for s in self.state.series():
                if s.target == query["target"][0] and address in (None, s.address):
                    return Entry(s.entry_id, s.target, s.result)
            return None
        try:
            return self.state.find(int(query.get("id", ["0"])[0]))
        except ValueError:
            return None

    def reload_config(self, method: str) -> Response:
        if method != "POST":
            return Response(405, b"Only POST requests allowed.\n")
        error = self.reload()
        if error:
            line = error.splitlines()[0][:500] if error.strip() else "unknown error"
            return Response(500, f"failed to reload config: {line}\n".encode())
        return Response(200, b"OK\n")

    def probe(self, query: dict[str, list[str]]) -> Response | Later:
        name = (query.get("target") or [""])[0]
        config = self.state.config
        if not name:
            return Response(400, b"Target parameter is missing\n")
        try:  # decided on the parsed target only: the raw string never reaches the allow-list
            requested = parse_target(name)
        except TargetError as exc:
            return Response(400, f"{str(exc).splitlines()[0][:300]}\n".encode())
        configured = config.configured(requested)
        if configured is None and not config.allowed(requested):
            return Response(403, b"Target is not configured or allowed by probe_allow\n")
        try:
            profile = configured.profile if configured else config.default_profile
            if "profile" in query:  # only profiles this agent already uses, or built-in ones: no file paths
                wanted = query["profile"][0]
                known = {p.name: p for p in (config.default_profile, *(t.profile for t in config.targets))}
                builtin = builtin_profile_path(wanted)
                if wanted in known:
                    profile = known[wanted]
                elif builtin is not None:
                    try:
                        profile = self.profiles(str(builtin))
                    except ProfileError:  # the message would name files of this host: not for the client
                        return Response(400, b"that built-in profile cannot be loaded\n")
                else:
                    return Response(400, b"profile must name a built-in profile or one in the config\n")
            target = configured.target if configured else requested
        except (ProfileError, TargetError) as exc:
            return Response(400, f"{str(exc).splitlines()[0][:300]}\n".encode())
        tc = configured or TargetConfig(
            name, target, profile, 60.0, config.timeout, AddressFamily.ANY, None, (), config.dns
        )
        if not self._probe_slots.acquire(blocking=False):
            return Response(503, b"Too many probes at once; try again\n")
        return Later(lambda send: self._start_probe(send, name, tc, target, profile))

    def _start_probe(
        self,
        send: Callable[[Response], None],
        name: str,
        tc: TargetConfig,
        target: Target,
        profile: ProfileRef,
    ) -> None:
        """The probe goes to the worker; its results are rendered and sent where they arrive (the worker
        client's reader thread), so no thread of this process waits for a /probe."""
        layout = self.state.config.layout
        slot = threading.Lock()

        def release() -> None:  # once per probe, whatever the prober does
            if slot.acquire(blocking=False):
                self._probe_slots.release()

        def done(results: list[ProbeResult] | None, error: BaseException | None) -> None:
            release()
            if results is None:
                send(Response(500, f"probe failed: {str(error)[:300]}\n".encode()))
                return
            try:
                rendered = []
                for r in results:
                    s = Series(name, r.record.address or "", dict(tc.labels), r)
                    s.observe(r)
                    s.render(None, layout)
                    rendered.append(s.rendered)
                send(Response(200, expose([], series_layout(layout), rendered, []), CONTENT_TYPE))
            except Exception:  # a bug in rendering: an answer, not a hung client
                log.exception("web: rendering /probe of %s failed", name[:200])
                send(Response(500, b"Internal error.\n"))

        try:
            self.probe_fn(target, profile, options_for(tc), done)
        except Exception as exc:  # not sent at all (the worker is unreachable): done was not called
            release()
            send(Response(500, f"probe failed: {str(exc)[:300]}\n".encode()))


def synchronous(probe: Prober) -> AsyncProber:
    """A probe function that returns its results, as one that hands them on (tests run probes in process)."""

    def run(target: Target, profile: ProfileRef, options: ProbeOptions, done: Done) -> None:
        try:
            results = probe(target, profile, options)
        except Exception as exc:
            done(None, exc)
            return
        done(results, None)

    return run


def _local_probe(target, profile, options):  # type: ignore[no-untyped-def]
    from relaywatch.pipeline import check_ref

    return check_ref(target, profile, options)
