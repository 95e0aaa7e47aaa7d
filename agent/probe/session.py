"""One probe = one session to one address, returned as a ProbeRecord.

Like blackbox_exporter's prober/, one dialogue per protocol behind one signature (the registry in
protocols.py says which); this module drives them all through the same phases: connect, greeting,
capabilities, STARTTLS, handshake, after TLS. It never raises for anything a server does: failures are
recorded with the evidence captured so far.
"""

from __future__ import annotations

import concurrent.futures
import contextlib
import dataclasses
import datetime as dt
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field

from relaywatch.host.model import LocalProcess
from relaywatch.model import (
    GatewayDNS,
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
from relaywatch.probe.limits import Clock, Phase, ProbeError
from relaywatch.probe.options import ProbeOptions, default_ehlo_name
from relaywatch.probe.resolve import resolve
from relaywatch.protocols import MX_SCHEME
from relaywatch.target import Target

# Finds the process on this host that holds the far end of a connection (host inspection). Injected by
# the caller, so that the network layer never imports host inspection.
PeerLookup = Callable[[tuple[str, int]], LocalProcess | None]


def probe_target(
    target: Target, options: ProbeOptions = ProbeOptions(), peer_lookup: PeerLookup | None = None
) -> list[ProbeRecord]:
    """Resolve, then probe every address at once: the whole target stays within one timeout. Gateway
    targets (port 25, mx:) resolve through the configured DNS resolver and carry its evidence."""
    started = dt.datetime.now(dt.UTC)
    t0 = time.monotonic()
    deadline = t0 + options.limits.timeout
    evidence: GatewayDNS | None = None
    try:
        if target.gateway:  # dnspython (3 MB): loaded in the probe worker, and only for these targets
            from relaywatch.probe import gateway

            if target.scheme == MX_SCHEME:
                return gateway.probe_mx(
                    target,
                    options,
                    lambda t, addrs, ev: probe_addresses(
                        t, addrs, ev, options, peer_lookup, started, t0, deadline
                    ),
                )
            addresses, evidence = gateway.host_evidence(target.host, options, deadline)
        else:
            addresses = resolve(
                target.host,
                target.port,
                options.address_family,
                options.limits.timeout,
                options.limits.max_addresses,
            )
    except ProbeError as exc:
        return [_unresolved(target, started, t0, exc, getattr(exc, "evidence", evidence))]
    return probe_addresses(target, addresses, evidence, options, peer_lookup, started, t0, deadline)


def probe_addresses(
    target: Target,
    addresses: list[str],
    evidence: GatewayDNS | None,
    options: ProbeOptions,
    peer_lookup: PeerLookup | None,
    started: dt.datetime,
    t0: float,
    deadline: float,
) -> list[ProbeRecord]:
    """Every address of one host at once; the DNS evidence goes on each record."""
    if not addresses:
        failure = ProbeError("resolve", "unreachable", f"{target.host} has no address to probe")
        return [_unresolved(target, started, t0, failure, evidence)]
    resolve_time = time.monotonic() - t0
    if options.first_address:
        addresses = addresses[:1]

    def one(address: str) -> ProbeRecord:
        record = probe_address(target, address, options, resolve_time, peer_lookup, deadline)
        return record if evidence is None else dataclasses.replace(record, dns=evidence)

    if len(addresses) == 1:
        return [one(addresses[0])]
    with concurrent.futures.ThreadPoolExecutor(len(addresses), thread_name_prefix="address") as pool:
        return list(pool.map(one, addresses))


def _unresolved(
    target: Target, started: dt.datetime, t0: float, exc: ProbeError, evidence: GatewayDNS | None
) -> ProbeRecord:
    elapsed = time.monotonic() - t0
    return ProbeRecord(
        target,
        None,
        started,
        {Phase.RESOLVE: elapsed, Phase.TOTAL: elapsed},
        (),
        StartTLS(_initial_state(target)),
        None,
        ProbeFailure(exc.phase, exc.kind, exc.message),
        dns=evidence,
    )


def _initial_state(target: Target) -> StartTLSState:
    return StartTLSState.UNKNOWN if target.starttls else StartTLSState.NOT_APPLICABLE


def _dialogue(target: Target, options: ProbeOptions) -> Dialogue | None:
    protocol = target.mail_protocol
    if protocol is None:
        return None  # tls://: the handshake is the whole dialogue
    factory: Callable[[str], Dialogue] = protocol.load_dialogue()
    return factory(options.ehlo_name or default_ehlo_name())


@dataclass
class _Probe:
    """What one session has captured so far; every phase adds to it, a failure keeps it."""

    target: Target
    options: ProbeOptions
    clock: Clock
    peer_lookup: PeerLookup | None
    transcript: list[TranscriptLine] = field(default_factory=list)
    state: StartTLSState = StartTLSState.UNKNOWN
    caps: tuple[str, ...] = ()
    caps_after: tuple[str, ...] = ()
    reply: str | None = None
    session: TLSSession | None = None
    peer: LocalProcess | None = None
    sock: socket.socket | None = None

    @contextlib.contextmanager
    def phase(self, phase: Phase) -> Iterator[None]:
        self.clock.begin(phase)
        yield
        self.clock.finish()

    def find_peer(self) -> None:
        """Once the server has accepted: which process on this host holds the far end, if any."""
        if self.peer is not None or self.peer_lookup is None or self.sock is None:
            return
        start = time.monotonic()
        try:
            self.peer = self.peer_lookup(self.sock.getsockname()[:2])
        except OSError:
            self.peer = None
        finally:
            self.clock.timings[Phase.LOCAL_PEER] = time.monotonic() - start


def probe_address(
    target: Target,
    address: str,
    options: ProbeOptions = ProbeOptions(),
    resolve_time: float = 0.0,
    peer_lookup: PeerLookup | None = None,
    deadline: float | None = None,
) -> ProbeRecord:
    """One session; never raises for anything the server does: failures are recorded, evidence kept."""
    started = dt.datetime.now(dt.UTC)
    p = _Probe(target, options, Clock(options.limits, deadline), peer_lookup, state=_initial_state(target))
    dialogue = _dialogue(target, options)
    failure: ProbeFailure | None = None
    try:
        with p.phase(Phase.CONNECT):
            p.sock = open_connection(address, target.port, p.clock)
        raw = SocketStream(p.sock, p.clock)
        chan = LineChannel(raw, p.clock, p.transcript)
        if target.starttls and dialogue is not None:
            if _starttls_phases(p, dialogue, chan):
                _tls_phases(p, dialogue, raw, chan)
        else:
            _tls_phases(p, dialogue, raw, chan)
    except ProbeError as exc:
        p.clock.finish()
        failure = ProbeFailure(exc.phase, exc.kind, exc.message)
        if isinstance(exc.session, TLSSession) and exc.session.chain_der:
            p.session = exc.session
        p.transcript.append(TranscriptLine("!", f"{exc.phase}: {exc.message}", p.clock.elapsed()))
    except Exception as exc:  # a library choking on hostile input: still a verdict, with what was captured
        p.clock.finish()
        failure = ProbeFailure(p.clock.phase, "protocol", f"unexpected {type(exc).__name__}: {exc}")
        p.transcript.append(TranscriptLine("!", f"{p.clock.phase}: {failure.message}", p.clock.elapsed()))
    finally:
        if p.sock is not None:
            p.sock.close()
    timings = {Phase.RESOLVE: resolve_time, **p.clock.timings, Phase.TOTAL: resolve_time + p.clock.elapsed()}
    return ProbeRecord(
        target,
        address,
        started,
        timings,
        tuple(p.transcript),
        StartTLS(p.state, p.caps, p.caps_after, p.reply),
        p.session,
        failure,
        p.peer,
    )


def _starttls_phases(p: _Probe, dialogue: Dialogue, chan: LineChannel) -> bool:
    """Greeting, capabilities, STARTTLS in plaintext; True when both sides now expect a handshake."""
    with p.phase(Phase.GREETING):
        dialogue.greeting(chan)
    p.find_peer()  # accepted by now
    with p.phase(Phase.CAPABILITIES):
        p.caps = dialogue.capabilities(chan)
        p.state = classify(p.caps, dialogue.starttls_keyword)
    with p.phase(Phase.STARTTLS):
        upgrade, p.reply = dialogue.starttls(chan)
    if not upgrade:
        if p.state is StartTLSState.OFFERED:
            p.state = StartTLSState.REJECTED
        _quietly(dialogue.quit, chan)
        return False
    if extra := chan.take_buffer():
        chan.note(f"server sent {len(extra)} bytes after the STARTTLS reply; discarded")
    return True


def _tls_phases(p: _Probe, dialogue: Dialogue | None, raw: SocketStream, chan: LineChannel) -> None:
    """The handshake, then the dialogue inside TLS: capabilities again (STARTTLS) or the whole dialogue."""
    sni = None if p.target.host_is_ip else p.target.host
    with p.phase(Phase.HANDSHAKE):
        chan.note("TLS handshake")
        p.session, stream = tls.handshake(raw, sni)
        s = p.session
        chan.note(f"TLS established: {s.version} {s.cipher}, {len(s.chain_der)} certificates")
    p.find_peer()
    if dialogue is None:
        return
    tchan = LineChannel(stream, p.clock, p.transcript)
    if p.target.starttls:
        with p.phase(Phase.POST_TLS):
            p.caps_after = dialogue.capabilities(tchan)
    else:
        with p.phase(Phase.GREETING):
            dialogue.greeting(tchan)
        with p.phase(Phase.CAPABILITIES):
            p.caps = p.caps_after = dialogue.capabilities(tchan)
    _quietly(dialogue.quit, tchan)


def _quietly(step: Callable[[LineChannel], None], chan: LineChannel) -> None:
    """QUIT/LOGOUT: a server that hangs up instead is no finding."""
    with contextlib.suppress(ProbeError):
        step(chan)
