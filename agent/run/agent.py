"""Wires config, state, scheduler and web together; handles SIGHUP (reload) and SIGTERM (clean stop)."""

from __future__ import annotations

import logging
import signal
import sys
import threading

from agent.run.config import Config, ConfigError, load_config
from agent.run.scheduler import Scheduler
from agent.run.state import AgentState
from agent.run.web import Web

log = logging.getLogger("relaywatch")


class _Logfmt(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        msg = record.getMessage().replace('"', "'")
        return (
            f"ts={self.formatTime(record, '%Y-%m-%dT%H:%M:%S')} level={record.levelname.lower()} "
            f'logger={record.name} msg="{msg}"'
        )


def parse_listen(text: str) -> tuple[str, int]:
    host, sep, port = text.rpartition(":")
    if not sep or not port.isdigit() or not 0 <= int(port) < 65536:
        raise ConfigError(f"--web.listen-address {text!r}: expected [host]:port")
    return (host.strip("[]") or "0.0.0.0"), int(port)


def serve(config_file: str | None, listen: str, log_level: str) -> int:
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(_Logfmt())
    logging.basicConfig(level=getattr(logging, log_level.upper()), handlers=[handler], force=True)
    address = parse_listen(listen)
    config = load_config(config_file)
    state = AgentState(config)
    scheduler = Scheduler(state)
    lock = threading.Lock()

    def reload() -> str | None:
        with lock:
            try:
                new: Config = load_config(config_file)
            except ConfigError as exc:
                log.error("reload refused, keeping the running config: %s", exc)
                return str(exc)
            state.set_config(new)
            scheduler.reschedule()
            log.info("config reloaded from %s: %d targets", new.source, len(new.targets))
            return None

    try:
        web = Web(state, reload, address)
    except OSError as exc:
        raise ConfigError(f"cannot listen on {listen}: {exc.strerror}") from exc
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    signal.signal(signal.SIGHUP, lambda *_: threading.Thread(target=reload, daemon=True).start())
    web.start()
    scheduler.start()
    log.info(
        "listening on %s:%d, %d targets from %s", address[0], web.port, len(config.targets), config.source
    )
    stop.wait()
    log.info("shutting down")
    scheduler.stop()
    web.stop()
    return 0
