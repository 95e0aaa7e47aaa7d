"""Wires config, state, scheduler and web together; handles SIGHUP (reload) and SIGTERM (clean stop)."""

from __future__ import annotations

import json
import logging
import os
import signal
import sys
import threading
from dataclasses import dataclass
from pathlib import Path

from relaywatch.analysis.baseline import Baseline, default_state_dir
from relaywatch.export.outputs import Outputs
from relaywatch.probe.dnsconfig import DNSSECMode
from relaywatch.run.client import Worker
from relaywatch.run.config import Config, ConfigError, load_config, with_dns
from relaywatch.run.events import EventLog
from relaywatch.run.evidence import HostWatch, PathRunner
from relaywatch.run.malloc import Trimmer, fewer_malloc_arenas
from relaywatch.run.scheduler import Listener, Scheduler
from relaywatch.run.state import AgentState
from relaywatch.run.web import Web
from relaywatch.run.webconfig import load_web_config

log = logging.getLogger("relaywatch")
WORKER_THREADS = 128  # an upper bound: the scheduler's `concurrency` decides how many probes run at once


class _Logfmt(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', "'")
        return (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} "
            f'logger={record.name} msg="{msg}"'
        )


class _Json(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        return json.dumps(
            {
                "ts": self.formatTime(record, "%Y-%m-%dT%H:%M:%S"),
                "level": record.levelname.lower(),
                "logger": record.name,
                "msg": record.getMessage(),
            }
        )


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--web.listen-address {text!r}: expected [host]:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)


@dataclass(frozen=True)
class Settings:
    config_file: str | None = None
    listen: str | None = None  # default: the config's web.listen_address, else :10587
    log_level: str = "info"
    log_format: str = "logfmt"
    web_config_file: str | None = None
    push_gateway: str | None = None
    textfile: str | None = None
    events_file: str | None = None
    state_dir: str | None = None  # the baseline; default: systemd's STATE_DIRECTORY, else XDG's
    dns_resolver: str | None = None  # --dns.resolver: wins over the config's dns.resolver (checked by cli)
    dnssec: DNSSECMode | None = None  # --dnssec: wins over the config's dns.dnssec


def _state_dir(flag: str | None) -> Path:
    if flag:
        return Path(flag)
    systemd = os.environ.get("STATE_DIRECTORY")  # StateDirectory= in the unit
    return Path(systemd.split(":")[0]) if systemd else default_state_dir()


def serve(settings: Settings) -> int:
    fewer_malloc_arenas()
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Json() if settings.log_format == "json" else _Logfmt())
    logging.basicConfig(level=getattr(logging, settings.log_level.upper()), handlers=[handler], force=True)
    # TLS, X.509 and the analysis live in the probe worker; this process schedules, keeps state, serves
    # the first worker is forked at the config's first profile check, before any thread starts
    worker = Worker(WORKER_THREADS, fork=True)
    try:
        return _serve(settings, worker)
    finally:
        worker.stop()


def _serve(settings: Settings, worker: Worker) -> int:
    config_file = settings.config_file
    config = with_dns(load_config(config_file, worker.profile), settings.dns_resolver, settings.dnssec)
    listen = settings.listen or config.listen_address or ":10587"
    address = parse_listen(listen)
    web_config = load_web_config(settings.web_config_file or config.web_config_file)
    if settings.textfile and not Path(settings.textfile).parent.is_dir():
        raise ConfigError(f"--textfile {settings.textfile}: its directory does not exist")
    state = AgentState(config)
    state.baseline = Baseline(_state_dir(settings.state_dir))
    state.worker_restarts = lambda: worker.restarts
    events = EventLog(settings.events_file) if settings.events_file else None
    if events is not None:
        state.events_write_failures = lambda: events.write_failures
    lock = threading.Lock()

    def reload() -> str | None:
        """SIGHUP and POST /-/reload: a config that does not load is refused, with one line, never raised."""
        with lock:
            try:
                new: Config = with_dns(
                    load_config(config_file, worker.profile), settings.dns_resolver, settings.dnssec
                )
            except Exception as exc:  # ConfigError, and whatever else a broken file or a dead worker raises
                reason = (str(exc) or type(exc).__name__).splitlines()[0]
                log.error("reload refused, keeping the running config: %s", reason)
                return reason
            state.set_config(new)
            scheduler.reschedule()
            log.info("config reloaded from %s: %d targets", new.source, len(new.targets))
            return None

    try:
        web = Web(state, reload, address, web_config, worker.probe_async, worker.profile)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}") from exc
    outputs = Outputs(state.exposition, settings.push_gateway, settings.textfile)
    paths = PathRunner(state)
    host = HostWatch(state, worker.host)
    listeners: list[Listener] = [outputs.changed, paths, *([events] if events else [])]
    scheduler = Scheduler(state, worker.probe, listeners, worker.probe_async, worker.expire)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, daemon=True).start())
    web.start()
    outputs.start()
    host.start()
    scheduler.start()
    log.info(
        "listening on %s:%d, %d targets from %s", address[0], web.port, len(config.targets), config.source
    )
    trimmer = Trimmer()
    while not stop.wait(trimmer.every):  # the main thread's only work: housekeeping
        trimmer.maybe()
    log.info("shutting down")
    scheduler.stop()
    paths.stop()
    host.stop()
    outputs.stop()
    web.stop()
    if events:
        events.close()
    return 0
