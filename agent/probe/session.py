"""One probe = one session to one address, returned as a ProbeRecord.

Like blackbox_exporter's prober/, one module per protocol behind one signature; this module drives
them through the same phases: connect, greeting, capabilities, STARTTLS, handshake, after TLS.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import socket
import time

from relaywatch.model import (
    LocalProcess,
    ProbeFailure,
    ProbeRecord,
    StartTLS,
    StartTLSState,
    TLSSession,
    TranscriptLine,
)
from relaywatch.probe import tls
from relaywatch.probe.connect import LineChannel, SocketStream, open_connection
from relaywatch.probe.dialogue import Dialogue, classify
from relaywatch.probe.imap import IMAP
from relaywatch.probe.limits import Clock, ProbeError
from relaywatch.probe.options import ProbeOptions, default_ehlo_name
from relaywatch.probe.pop3 import POP3
from relaywatch.probe.resolve import resolve
from relaywatch.probe.smtp import SMTP
from relaywatch.target import Target


def _dialogue(target: Target, options: ProbeOptions) -> Dialogue | None:
    if target.protocol == "smtp":
        return SMTP(options.ehlo_name or default_ehlo_name())
    if target.protocol == "imap":
        return IMAP()
    if target.protocol == "pop3":
        return POP3()
    return None  # tls://: the handshake is the whole dialogue


def probe_target(target: Target, options: ProbeOptions = ProbeOptions()) -> list[ProbeRecord]:
    """Resolve, then probe each address in turn (or only the first)."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    try:
        addresses = resolve(
            target.host,
            target.port,
            options.address_family,
            options.limits.timeout,
            options.limits.max_addresses,
        )
    except ProbeError as exc:
        failure = ProbeFailure(exc.phase, exc.kind, exc.message)
        return [
            ProbeRecord(
                target,
                None,
                started,
                {"resolve": time.monotonic() - t0, "total": time.monotonic() - t0},
                (),
                StartTLS(_initial_state(target)),
                None,
                failure,
            )
        ]
    resolve_time = time.monotonic() - t0
    if options.first_address:
        addresses = addresses[:1]
    return [probe_address(target, a, options, resolve_time) for a in addresses]


def _initial_state(target: Target) -> StartTLSState:
    return StartTLSState.UNKNOWN if target.starttls else StartTLSState.NOT_APPLICABLE


def probe_address(
    target: Target, address: str, options: ProbeOptions = ProbeOptions(), resolve_time: float = 0.0
) -> ProbeRecord:
    """One session; never raises for anything the server does: failures are recorded, evidence kept."""
    started = dt.datetime.now(dt.UTC)
    clock = Clock(options.limits)
    transcript: list[TranscriptLine] = []
    state = _initial_state(target)
    caps: tuple[str, ...] = ()
    caps_after: tuple[str, ...] = ()
    reply: str | None = None
    session: TLSSession | None = None
    failure: ProbeFailure | None = None
    sni = None if target.host_is_ip else target.host
    dialogue = _dialogue(target, options)
    sock: socket.socket | None = None
    peer: LocalProcess | None = None
    try:
        clock.begin("connect")
        sock = open_connection(address, target.port, clock)
        clock.finish()
        raw = SocketStream(sock, clock)
        chan = LineChannel(raw, clock, transcript)
        upgrade = True
        if target.starttls and dialogue is not None:
            clock.begin("greeting")
            dialogue.greeting(chan)
            clock.finish()
            peer = _local_peer(sock, clock) if options.inspect_local_peer else None  # accepted by now
            clock.begin("ehlo")
            caps = dialogue.capabilities(chan)
            state = classify(caps, dialogue.starttls_keyword)
            clock.finish()
            clock.begin("starttls")
            upgrade, reply = dialogue.starttls(chan)
            clock.finish()
            if not upgrade:
                if state is StartTLSState.OFFERED:
                    state = StartTLSState.REJECTED
                _quietly(dialogue.quit, chan)
            elif extra := chan.take_buffer():
                chan.note(f"server sent {len(extra)} bytes after the STARTTLS reply; discarded")
        if upgrade:
            clock.begin("handshake")
            chan.note("TLS handshake")
            session, stream = tls.handshake(raw, sni)
            chan.note(
                f"TLS established: {session.version} {session.cipher}, {len(session.chain_der)} certificates"
            )
            clock.finish()
            if options.inspect_local_peer and peer is None:
                peer = _local_peer(sock, clock)
            if dialogue is not None:
                tchan = LineChannel(stream, clock, transcript)
                if target.starttls:
                    clock.begin("post_tls")
                    caps_after = dialogue.capabilities(tchan)
                else:
                    clock.begin("greeting")
                    dialogue.greeting(tchan)
                    clock.finish()
                    clock.begin("ehlo")
                    caps = caps_after = dialogue.capabilities(tchan)
                clock.finish()
                _quietly(dialogue.quit, tchan)
    except ProbeError as exc:
        clock.finish()
        failure = ProbeFailure(exc.phase, exc.kind, exc.message)
        if isinstance(exc.session, TLSSession) and exc.session.chain_der:
            session = exc.session
        transcript.append(TranscriptLine("!", f"{exc.phase}: {exc.message}", clock.elapsed()))
    except Exception as exc:  # a library choking on hostile input: still a verdict, with what was captured
        clock.finish()
        failure = ProbeFailure(clock.phase, "protocol", f"unexpected {type(exc).__name__}: {exc}")
        transcript.append(TranscriptLine("!", f"{clock.phase}: {failure.message}", clock.elapsed()))
    finally:
        if sock is not None:
            sock.close()
    timings = {"resolve": resolve_time, **clock.timings, "total": resolve_time + clock.elapsed()}
    return ProbeRecord(
        target,
        address,
        started,
        timings,
        tuple(transcript),
        StartTLS(state, caps, caps_after, reply),
        session,
        failure,
        peer,
    )


def _local_peer(sock: socket.socket, clock: Clock) -> LocalProcess | None:
    from relaywatch.host.processes import local_peer  # host inspection: only when asked

    start = time.monotonic()
    try:
        return local_peer(sock.getsockname()[:2])
    except OSError:
        return None
    finally:
        clock.timings["local_peer"] = time.monotonic() - start


def _quietly(step, chan: LineChannel) -> None:  # type: ignore[no-untyped-def]
    """QUIT/LOGOUT: a server that hangs up instead is no finding."""
    with contextlib.suppress(ProbeError):
        step(chan)
