"""The monitoring stack around many agents, as real processes on loopback: Prometheus servers configured
from the shipped files, Alertmanager, a webhook receiver that records what Alertmanager sends, a lab
interceptor that can be switched on and off, and agents listening on distinct loopback addresses."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
import re
import socket
import ssl
import subprocess
import threading
import urllib.parse
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import yaml
from relaywatch.lab.pki import Issued, make_leaf
from relaywatch.lab.proxies import Resigner, _pump
from relaywatch.lab.servers import LabServer, server_context

from tests.agent_helpers import RECORDING_RULES as RECORDING_RULES  # the test files import it from here
from tests.agent_helpers import service
from tests.support import ROOT, agent_argv, free_port, get, stop, wait_for, which

PROM_DIR = ROOT / "packaging" / "prometheus"
ALERT_RULES = PROM_DIR / "relaywatch-rules.yml"

SITE_CONFIG = PROM_DIR / "prometheus-site.yml"
ALERTMANAGER_CONFIG = ROOT / "packaging" / "alertmanager" / "alertmanager.yml"
ALERTMANAGER = "prometheus-alertmanager"  # Debian's name for the alertmanager binary

_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}


def seconds(duration: str) -> float:
    """A Prometheus duration of one unit (`5m`, `1h`) in seconds."""
    m = re.fullmatch(r"(\d+)([smhd])", duration)
    if m is None:
        raise ValueError(f"unsupported duration {duration!r}")
    return int(m.group(1)) * _UNITS[m.group(2)]


def fast_rules(tmp: Path, divide: int = 120) -> Path:
    """The shipped alert rules with every `for:` divided by `divide` (at least 1 s): the same rules,
    on a test's time scale. Everything else (expressions, labels, annotations) is the shipped text."""
    doc = yaml.safe_load(ALERT_RULES.read_text())
    for group in doc["groups"]:
        for rule in group["rules"]:
            if "for" in rule:
                rule["for"] = f"{max(1, round(seconds(rule['for']) / divide))}s"
    out = tmp / "relaywatch-rules.fast.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


# --------------------------------------------------------------------------- Prometheus and Alertmanager


@dataclass(frozen=True)
class Prom:
    url: str  # http://127.0.0.1:PORT

    @property
    def api(self) -> str:
        return self.url + "/api/v1"

    def query(self, expr: str) -> list[dict[str, Any]]:
        body = json.loads(get(f"{self.api}/query?query={urllib.parse.quote(expr)}")[1])
        if body.get("status") != "success":
            raise AssertionError((expr, body))
        result: list[dict[str, Any]] = body["data"]["result"]
        return result


@contextlib.contextmanager
def prometheus_server(tmp: Path, name: str, config: dict[str, Any], *flags: str) -> Iterator[Prom]:
    """A Prometheus server with `config` (a prometheus.yml as a dict), its own TSDB under `tmp/name`."""
    port = free_port()
    home = tmp / name
    home.mkdir(parents=True, exist_ok=True)
    cfg = home / "prometheus.yml"
    cfg.write_text(yaml.safe_dump(config, sort_keys=False))
    argv = [
        which("prometheus") or "/usr/bin/prometheus",
        f"--config.file={cfg}",
        f"--storage.tsdb.path={home / 'data'}",
        f"--web.listen-address=127.0.0.1:{port}",
        *flags,
    ]
    with service(argv, f"http://127.0.0.1:{port}/-/ready"):
        yield Prom(f"http://127.0.0.1:{port}")


def site_config(
    sd_file: Path,
    rule_files: list[Path],
    interval: str = "1s",
    alertmanager: str | None = None,
    remote_write: str | None = None,
) -> dict[str, Any]:
    """packaging/prometheus/prometheus-site.yml with this test's intervals, files and addresses."""
    doc: dict[str, Any] = yaml.safe_load(SITE_CONFIG.read_text())
    doc["global"].update(scrape_interval=interval, evaluation_interval=interval)
    doc["rule_files"] = [str(p) for p in rule_files]
    job = doc["scrape_configs"][0]
    job["file_sd_configs"] = [{"files": [str(sd_file)], "refresh_interval": "1s"}]
    job["scrape_timeout"] = interval
    if alertmanager is None:
        del doc["alerting"]
    else:
        doc["alerting"]["alertmanagers"][0]["static_configs"] = [{"targets": [alertmanager]}]
    if remote_write is None:
        del doc["remote_write"]
    else:
        doc["remote_write"][0]["url"] = remote_write
        doc["remote_write"][0]["queue_config"] = {"batch_send_deadline": "1s"}
    return doc


def write_sd(path: Path, groups: list[dict[str, Any]]) -> Path:
    """A file_sd_configs file, written atomically as Prometheus expects of its inventory."""
    tmp = path.with_suffix(".tmp")
    tmp.write_text(json.dumps(groups))
    os.replace(tmp, path)
    return path


def test_alertmanager_config(tmp: Path, webhook: str) -> Path:
    """The shipped Alertmanager config with every receiver pointed at `webhook` (the path says which
    receiver it was) and timings on a test's scale; routing, grouping and inhibition are the shipped."""
    doc: dict[str, Any] = yaml.safe_load(ALERTMANAGER_CONFIG.read_text())
    for key in [k for k in doc["global"] if k.startswith("smtp_")]:
        del doc["global"][key]
    doc["receivers"] = [
        {"name": r["name"], "webhook_configs": [{"url": f"{webhook}/{r['name']}", "send_resolved": True}]}
        for r in doc["receivers"]
    ]
    for route in [doc["route"], *doc["route"].get("routes", [])]:
        route.update(group_wait="1s", group_interval="2s", repeat_interval="1h")
    out = tmp / "alertmanager.yml"
    out.write_text(yaml.safe_dump(doc, sort_keys=False))
    return out


test_alertmanager_config.__test__ = False  # type: ignore[attr-defined]  # a helper, not a test


@contextlib.contextmanager
def alertmanager(tmp: Path, config: Path) -> Iterator[str]:
    """Alertmanager on loopback, clustering off (it would listen on every address); yields its URL."""
    port = free_port()
    argv = [
        which(ALERTMANAGER) or f"/usr/bin/{ALERTMANAGER}",
        f"--config.file={config}",
        f"--storage.path={tmp / 'alertmanager'}",
        f"--web.listen-address=127.0.0.1:{port}",
        "--cluster.listen-address=",
    ]
    with service(argv, f"http://127.0.0.1:{port}/-/ready"):
        yield f"http://127.0.0.1:{port}"


# --------------------------------------------------------------------------- the webhook receiver


@dataclass
class Webhook:
    """Records every notification Alertmanager posts, as (receiver path, parsed body)."""

    url: str
    received: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def notifications(self) -> list[tuple[str, dict[str, Any]]]:
        with self.lock:
            return list(self.received)

    def alerts(self, name: str, status: str | None = None) -> list[tuple[str, dict[str, Any]]]:
        """(notification status, alert) for every alert named `name` in every notification."""
        return [
            (body["status"], a)
            for _, body in self.notifications()
            for a in body["alerts"]
            if a["labels"].get("alertname") == name and (status is None or a["status"] == status)
        ]


@contextlib.contextmanager
def webhook_receiver() -> Iterator[Webhook]:
    port = free_port()
    hook = Webhook(f"http://127.0.0.1:{port}")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:
            length = min(int(self.headers.get("Content-Length", "0")), 1 << 20)
            body = json.loads(self.rfile.read(length))
            with hook.lock:
                hook.received.append((self.path, body))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *_: object) -> None:  # quiet: the test reports what matters
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True)
    thread.start()
    try:
        yield hook
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


# --------------------------------------------------------------------------- a switchable interceptor


class ShortLivedResigner(Resigner):
    """A mail shield whose forged leaves live `days` days (some products issue short-lived ones), so an
    interception also shows a leaf under the expiry alert's 14 days, which must reach nobody."""

    def __init__(self, upstream: tuple[str, int], ca: Issued, days: int = 10) -> None:
        super().__init__(upstream, ca)
        self.days = days
        self._made: dict[bytes, ssl.SSLContext] = {}

    def _context(self, der: bytes) -> ssl.SSLContext:
        from cryptography import x509

        with self._lock:
            ctx = self._made.get(der)
            if ctx is None:
                original = x509.load_der_x509_certificate(der)
                names = tuple(
                    str(n.value)
                    for n in original.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
                )
                start = dt.datetime.now(dt.UTC) - dt.timedelta(days=1)
                forged = make_leaf(self.ca, names, original.subject, start, self.days + 1)
                ctx = self._made[der] = server_context(forged, [self.ca])
            return ctx


class Switch:
    """A transparent TCP forwarder to `upstream` that becomes `interceptor` while `on` is set: the lab
    equivalent of a mail shield being installed, then uninstalled."""

    def __init__(self, upstream: tuple[str, int], interceptor: Resigner) -> None:
        self.upstream, self.interceptor = upstream, interceptor
        self.on = threading.Event()

    def __call__(self, client: socket.socket, server: LabServer) -> None:
        if self.on.is_set():
            self.interceptor(client, server)
            return
        with socket.create_connection(self.upstream, timeout=10) as up:
            _pump(client, up)


# --------------------------------------------------------------------------- agents on many addresses


@dataclass
class FleetAgent:
    proc: subprocess.Popen[bytes]
    address: str
    port: int
    log: Path

    @property
    def instance(self) -> str:
        return f"{self.address}:{self.port}"


def start_agent(config: Path, address: str, port: int, log: Path) -> FleetAgent:
    """`relaywatch run` listening on address:port; its stderr goes to `log` (a pipe nobody reads would
    fill up and stall it)."""
    with log.open("wb") as err:
        proc = subprocess.Popen(
            agent_argv(config, f"{address}:{port}"),
            cwd=ROOT,
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    return FleetAgent(proc, address, port, log)


def _up_or_gone(agent: FleetAgent) -> Callable[[], bool]:
    return lambda: agent.proc.poll() is not None or get(f"http://{agent.instance}/-/healthy")[0] == 200


@contextlib.contextmanager
def fleet(
    agents: list[tuple[Path, str]], port: int, logs: Path, timeout: float = 120
) -> Iterator[list[FleetAgent]]:
    """Agents (config, loopback address) all on `port`; every one is stopped at the end, whatever fails."""
    started: list[FleetAgent] = []
    try:
        for config, address in agents:
            started.append(start_agent(config, address, port, logs / f"agent-{address}.log"))
        for a in started:
            wait_for(_up_or_gone(a), timeout)
            assert a.proc.poll() is None, a.log.read_text()[-2000:]
        yield started
    finally:
        for a in started:
            if a.proc.poll() is None:
                a.proc.terminate()
        for a in started:
            stop(a.proc, f"agent {a.instance}")


# --------------------------------------------------------------------------- a lab fleet

SITES = ("hq", "branch")
# what sits between each fourth agent and its second relay: the lab scenario it probes
BEHIND = ("mail-shield", "corporate-proxy", "cisco-asa", "relay")


@dataclass(frozen=True)
class FleetPlan:
    """Who probes what: agent i on 127.0.0.(10+i), site SITES[i * len(SITES) // n], targets: the lab
    relay, the IMAPS server, and the scenario BEHIND[i % 4] (so a quarter is intercepted by a product
    the patterns name, a quarter by an unknown corporate CA, a quarter stripped). The first `traced` agents
    trace the path too."""

    agents: int
    interval: str = "5s"
    traced: int = 2  # the first agents also trace the path (on verdict changes: raw sockets, root)

    def address(self, i: int) -> str:
        return f"127.0.0.{10 + i}"

    def site(self, i: int) -> str:
        return SITES[i * len(SITES) // self.agents]

    def scenarios(self, i: int) -> tuple[str, ...]:
        behind = BEHIND[i % len(BEHIND)]
        return ("relay", "imaps") if behind == "relay" else ("relay", "imaps", behind)

    def expected_intercepted(self, site: str | None = None) -> int:
        return sum(
            1
            for i in range(self.agents)
            if BEHIND[i % len(BEHIND)] in ("mail-shield", "corporate-proxy") and site in (None, self.site(i))
        )


def fleet_configs(tmp: Path, plan: FleetPlan, lab: Any) -> list[tuple[Path, str]]:
    """One agent config per agent of `plan` against the running lab `lab` (relaywatch.lab.demo.Lab)."""
    by_name = {s.name: s.target for s in lab.scenarios}
    out = []
    for i in range(plan.agents):
        cfg = tmp / f"agent-{i}.yml"
        cfg.write_text(
            f"interval: {plan.interval}\ntimeout: 3s\nprofile: {lab.directory}/lab-profile.yml\n"
            + ("path: {every: 3, timeout: 1s}\n" if i < plan.traced else "path: {enabled: false}\n")
            + "host: {interval: 1h}\ntargets:\n"
            + "".join(f"  - target: {by_name[s]}\n" for s in plan.scenarios(i))
        )
        out.append((cfg, plan.address(i)))
    return out


def fleet_sd(path: Path, plan: FleetPlan, agents: list[FleetAgent]) -> Path:
    """The inventory as file_sd_configs reads it: one group per site."""
    groups = [
        {
            "targets": [a.instance for i, a in enumerate(agents) if plan.site(i) == site],
            "labels": {"site": site},
        }
        for site in SITES
    ]
    return write_sd(path, groups)
