"""The one copy of every test helper: paths, ports and listener waits, process stoppers, the relaywatch
command, Prometheus text lookups, X.509 helpers and the static-hosts seam.

Launchers live elsewhere and import from here: agent_helpers.py (`relaywatch run`, Prometheus tools),
peers.py (Postfix, sslsplit), netlab.py (network namespaces).
"""

from __future__ import annotations

import datetime as dt
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator, Mapping
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import Any, TypeVar

from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID
from cryptography.x509.verification import Store
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from relaywatch.analysis.certs import spki_sha256
from relaywatch.analysis.profile import TrustProfile
from relaywatch.analysis.truststore import HostStore
from relaywatch.analysis.verdict import analyze
from relaywatch.lab.demo import Lab
from relaywatch.lab.pki import Issued
from relaywatch.model import ProbeFailure, ProbeRecord, ProbeResult, StartTLS, StartTLSState, TLSSession
from relaywatch.probe.connect import LineChannel, SocketStream
from relaywatch.probe.limits import Clock, Limits
from relaywatch.probe.resolve import HOSTS_FILE_ENV
from relaywatch.target import parse_target

T = TypeVar("T")

# --------------------------------------------------------------------------- where things are

ROOT = Path(__file__).resolve().parent.parent
TEST_DATA = ROOT / "tests" / "data"
SHARED_CA = ROOT.parent / "shared" / "data" / "ms365-ca"  # outside the repo: tests using it skip without
PROFILE_CERTS = ROOT / "agent" / "data" / "profiles" / "certs"
LEAF_2021 = TEST_DATA / "leaf-mail-protection-outlook-com-2021.pem"  # 2021-11-01..2022-10-31
HOST = "127.0.0.1"

# --------------------------------------------------------------------------- ports and listeners

LISTEN_DEADLINE_S = 15.0
STOP_DEADLINE_S = 10.0
LOG_TAIL_CHARS = 6000
SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def modules_without_site(code: str, timeout: float = 60) -> set[str]:
    """The modules loaded after `code` (not those blocked with None), in a fresh interpreter started
    without `site` (-S): what a site-packages .pth file of this machine imports at every start (one here
    imports certifi, and with it tempfile) must not hide what the code itself loads. The code's imports
    come from this checkout and from site-packages, on PYTHONPATH."""
    import site

    path = os.pathsep.join([str(ROOT / ".mypy"), *site.getsitepackages()])
    out = subprocess.run(
        [
            sys.executable,
            "-S",
            "-c",
            f"{code}\nimport sys\nprint('\\n'.join(k for k, v in sys.modules.items() if v))",
        ],
        capture_output=True,
        text=True,
        timeout=timeout,
        check=True,
        env={**os.environ, "PYTHONPATH": path},
    ).stdout
    return set(out.split())


def which(cmd: str) -> str | None:
    """shutil.which that also looks in the sbin directories (ss, postfix and sslsplit live there)."""
    return shutil.which(cmd, path=os.environ.get("PATH", "") + os.pathsep + SBIN_PATH)


def listeners(port: int, netns: str | None = None) -> list[str]:
    """Local addresses (``addr:port``) of TCP listeners on ``port``, as ``ss`` reports them (in ``netns``
    when given). Asking ``ss`` instead of connecting leaves no half-open session in a server's log."""
    ss = which("ss")
    if ss is None:
        raise RuntimeError("`ss` (iproute2) is not installed; it is needed to wait for listeners")
    argv = [ss, "-ltnH", f"sport = :{port}"]
    if netns is not None:
        argv = ["ip", "netns", "exec", netns, *argv]
    res = subprocess.run(argv, capture_output=True, text=True, timeout=10, check=False)
    if res.returncode != 0:
        raise RuntimeError(f"ss failed ({res.returncode}): {res.stderr.strip()}")
    out: list[str] = []
    for line in res.stdout.splitlines():
        fields = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port [Process]
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
            out.append(fields[3])
    return out


def port_listening(port: int, host: str | None = HOST, netns: str | None = None) -> bool:
    """True when a TCP listener is bound to ``host:port`` (any address when ``host`` is None)."""
    found = listeners(port, netns)
    return bool(found) if host is None else f"{host}:{port}" in found


def free_port(lo: int = 26000, hi: int = 26999) -> int:
    """A port in ``[lo, hi]`` with no listener and bindable on 127.0.0.1 right now.

    Below the ephemeral range, so that no client's local port takes it between this call and the bind;
    starts at a random offset so that concurrent test runs rarely pick the same one.
    """
    span = hi - lo + 1
    start = int.from_bytes(os.urandom(2), "big") % span
    for i in range(span):
        port = lo + (start + i) % span
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                s.bind((HOST, port))
            except OSError:
                continue
        if not listeners(port):
            return port
    raise RuntimeError(f"no free TCP port in {lo}-{hi} on {HOST}")


def ensure_port_free(port: int) -> None:
    busy = listeners(port)
    if busy:
        raise RuntimeError(f"TCP port {port} is already in use by a listener on {', '.join(busy)}")


def wait_for(predicate: Callable[[], T | None], timeout: float = 30.0, interval: float = 0.2) -> T:
    """Poll until ``predicate`` returns something truthy and return it; transient errors (a server not up
    yet) count as not yet. Raises TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            value: T | None = predicate()
        except (OSError, urllib.error.URLError, ValueError, KeyError):
            value = None
        if value:
            return value
        if time.monotonic() > deadline:
            raise TimeoutError(f"condition not met within {timeout}s")
        time.sleep(interval)


def wait_listening(
    port: int,
    proc: subprocess.Popen[Any],
    what: str,
    *,
    host: str | None = HOST,
    netns: str | None = None,
    timeout: float = LISTEN_DEADLINE_S,
    diag: object = "",
) -> None:
    """Poll ``ss`` until ``proc`` (``what``) listens on ``port``; fail as soon as it exits instead."""
    where = f"{host or '*'}:{port}" + (f" in {netns}" if netns else "")
    see = f"; see {diag}" if diag else ""
    end = time.monotonic() + timeout
    while True:
        if port_listening(port, host, netns):
            return
        rc = proc.poll()
        if rc is not None:
            raise RuntimeError(f"{what} exited with status {rc} before listening on {where}{see}")
        if time.monotonic() >= end:
            raise RuntimeError(f"{what} not listening on {where} after {timeout:.0f} s{see}")
        time.sleep(0.1)


def wait_closed(port: int, timeout: float = 5.0, host: str | None = HOST) -> None:
    """After a stop: give the kernel a bounded moment to drop the listener (best effort, never raises)."""
    end = time.monotonic() + timeout
    while port_listening(port, host) and time.monotonic() < end:
        time.sleep(0.05)


# --------------------------------------------------------------------------- processes


def _proc_stat(pid: int) -> tuple[str, int] | None:
    """(state, pgrp) of a process from /proc, or None when it is gone."""
    try:
        raw = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    rest = raw[raw.rfind(")") + 2 :].split()
    return rest[0], int(rest[2])


def _live_pids_in_group(pgid: int) -> list[int]:
    pids: list[int] = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            st = _proc_stat(int(entry))
            if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
                pids.append(int(entry))
    return pids


def _wait_group_gone(pgid: int, deadline_s: float) -> list[int]:
    end = time.monotonic() + deadline_s
    while True:
        left = _live_pids_in_group(pgid)
        if not left or time.monotonic() >= end:
            return left
        time.sleep(0.05)


def stop(proc: subprocess.Popen[Any], what: str = "process", *, group: bool = False) -> None:
    """SIGTERM, a bounded wait, then SIGKILL. With ``group`` (``proc`` must lead its own process group:
    ``start_new_session`` or its own setsid()) also make sure nothing of that group is left, since a
    daemon's children may outlive it."""
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_DEADLINE_S)
    if not group:
        return
    pgid = proc.pid
    left = _wait_group_gone(pgid, 2.0)
    for sig, deadline in ((signal.SIGTERM, 3.0), (signal.SIGKILL, 5.0)):
        if not left:
            return
        with suppress(ProcessLookupError, PermissionError):
            os.killpg(pgid, sig)
        left = _wait_group_gone(pgid, deadline)
    if left:
        raise RuntimeError(f"{what}: processes {left} of process group {pgid} survived SIGKILL")


def tail(path: Path, limit: int = LOG_TAIL_CHARS) -> str:
    """The end of a log file for a failure message (never raises)."""
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc.strerror}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


# --------------------------------------------------------------------------- the relaywatch command


def run_cli(
    *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    """`relaywatch ARGS` from this worktree, as a user runs it."""
    return subprocess.run(
        [sys.executable, "-m", "relaywatch", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def cli_json(
    *args: str, timeout: float = 60, env: Mapping[str, str] | None = None
) -> tuple[int, list[dict[str, Any]]]:
    proc = run_cli(*args, "--json", timeout=timeout, env=env)
    assert "Traceback" not in proc.stderr, proc.stderr
    results: list[dict[str, Any]] = json.loads(proc.stdout)
    return proc.returncode, results


def probe(target: str, profile: TrustProfile, timeout: float = 5.0) -> list[ProbeResult]:
    """An in-process `relaywatch check` of one target."""
    from relaywatch.pipeline import check
    from relaywatch.probe.options import ProbeOptions

    opts = ProbeOptions(limits=Limits(timeout=timeout, phase_timeout=timeout))
    return check(parse_target(target), profile, opts)


def codes(result: ProbeResult) -> set[str]:
    """The finding codes of a result: what the verdict rests on."""
    return {f.code for f in result.analysis.findings}


def scenario(lab: Lab, name: str) -> str:
    """The target of a lab scenario by its name."""
    return next(s.target for s in lab.scenarios if s.name == name)


def get(url: str, timeout: float = 10, **kw: Any) -> tuple[int, str]:
    """HTTP status and body; an HTTP error status is a result, not an exception."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, **kw), timeout=timeout) as r:
            return int(r.status), r.read().decode()
    except urllib.error.HTTPError as e:
        return e.code, e.read().decode()


# --------------------------------------------------------------------------- the static-hosts seam


def write_hosts(path: Path, mapping: Mapping[str, Iterable[str]]) -> Path:
    """A hosts(5) file for RELAYWATCH_HOSTS_FILE (see relaywatch.probe.resolve): name -> addresses."""
    path.write_text("".join(f"{a} {name}\n" for name, addresses in mapping.items() for a in addresses))
    return path


# what the `static_hosts` fixture (conftest.py) gives a test: mapping -> the hosts file, now in effect
StaticHosts = Callable[[Mapping[str, Iterable[str]]], Path]


def hosts_env(path: Path) -> dict[str, str]:
    """The environment a `relaywatch` subprocess needs to resolve through `path`."""
    return {HOSTS_FILE_ENV: str(path)}


# --------------------------------------------------------------------------- Prometheus text


def families(text: str) -> dict[str, Any]:
    """Family name -> parsed family (prometheus_client's own parser: what a scraper reads)."""
    return {f.name: f for f in text_string_to_metric_families(text)}


def samples(text: str, name: str, **labels: str) -> list[Sample]:
    """Samples named ``name`` (e.g. ``relaywatch_probes_total``) whose labels include ``labels``."""
    return [
        s
        for f in text_string_to_metric_families(text)
        for s in f.samples
        if s.name == name and all(s.labels.get(k) == v for k, v in labels.items())
    ]


def value(text: str, name: str, **labels: str) -> float:
    """The value of the first matching sample; KeyError when there is none."""
    found = samples(text, name, **labels)
    if not found:
        raise KeyError(f"{name}{labels}")
    return float(found[0].value)


def total(text: str, name: str, **labels: str) -> float:
    """The sum over all matching samples (e.g. every verdict of relaywatch_probes_total)."""
    return float(sum(s.value for s in samples(text, name, **labels)))


SeriesKey = tuple[str, tuple[tuple[str, str], ...]]


def series_set(text: str, drop: tuple[str, ...] = ()) -> set[SeriesKey]:
    """The relaywatch series in ``text`` (name and labels, without ``drop``), to compare two outputs."""
    out: set[SeriesKey] = set()
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            if s.name.startswith("relaywatch_") and not s.name.startswith("relaywatch_build"):
                labels = tuple(
                    sorted(
                        (k, str(float(v)) if k == "le" else v)  # 1 and 1.0 are the same bound
                        for k, v in s.labels.items()
                        if k not in drop
                    )
                )
                out.add((s.name, labels))
    return out


def data_lines(text: str) -> list[str]:
    """The sample lines of an exposition (no HELP/TYPE comments, no blank lines)."""
    return [line for line in text.splitlines() if line and not line.startswith("#")]


# --------------------------------------------------------------------------- X.509


def cn_name(cn: str, org: str | None = None) -> x509.Name:
    """A subject with a common name (and an organisation); the CN is cut to X.509's 64 characters."""
    attrs = [x509.NameAttribute(NameOID.ORGANIZATION_NAME, org)] if org else []
    return x509.Name([*attrs, x509.NameAttribute(NameOID.COMMON_NAME, cn[:64])])


def cert_of(item: Issued | x509.Certificate) -> x509.Certificate:
    return item.cert if isinstance(item, Issued) else item


def der_chain(*items: Issued | x509.Certificate) -> tuple[bytes, ...]:
    """DER certificates as a probe captures them, leaf first."""
    return tuple(cert_of(i).public_bytes(Encoding.DER) for i in items)


def write_pem(path: Path, *items: Issued | x509.Certificate) -> Path:
    """A PEM bundle, in the order given (leaf first for a chain)."""
    path.write_bytes(b"".join(cert_of(i).public_bytes(Encoding.PEM) for i in items))
    return path


def write_key_pair(directory: Path, name: str, issued: Issued) -> tuple[Path, Path]:
    """NAME.pem and NAME.key for a server or client that loads a certificate and its key from files."""
    cert, key = directory / f"{name}.pem", directory / f"{name}.key"
    cert.write_bytes(issued.cert_pem())
    key.write_bytes(issued.key_pem())
    return cert, key


def load_pem(path: Path) -> list[x509.Certificate]:
    return x509.load_pem_x509_certificates(path.read_bytes())


def utc(text: str) -> dt.datetime:
    """An aware UTC time from ISO 8601 (``2022-01-01``), as `relaywatch analyze --at` takes it."""
    t = dt.datetime.fromisoformat(text)
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


# --------------------------------------------------------------------------- synthetic evidence

EMPTY_HOST_STORE = HostStore("(test: empty store)", (), None, frozenset())


def host_store_of(*items: Issued | x509.Certificate) -> HostStore:
    """A host trust store holding exactly these CAs, so that no test depends on this machine's bundle."""
    certs = tuple(cert_of(i) for i in items)
    return HostStore(
        "(test store)", certs, Store(list(certs)) if certs else None, frozenset(spki_sha256(c) for c in certs)
    )


def record(
    *chain: Issued | x509.Certificate | bytes,
    target: str = "smtp://smtp.relaywatch.test:25",
    version: str = "TLSv1.3",
    starttls: StartTLS | None = None,
    failure: ProbeFailure | None = None,
    tls: bool = True,
    address: str | None = "127.0.0.1",
    at: dt.datetime | None = None,
) -> ProbeRecord:
    """What a probe would have captured: the chain as presented (raw bytes pass through, for garbage)."""
    t = parse_target(target)
    ders = tuple(c if isinstance(c, bytes) else cert_of(c).public_bytes(Encoding.DER) for c in chain)
    if starttls is None:
        starttls = StartTLS(StartTLSState.OFFERED if t.starttls else StartTLSState.NOT_APPLICABLE)
    session = TLSSession(version, "TLS_AES_256_GCM_SHA384", "x25519", ders) if tls else None
    when = at or dt.datetime.now(dt.UTC)
    return ProbeRecord(t, address, when, {"total": 0.1}, (), starttls, session, failure)


def judged(
    rec: ProbeRecord, profile: TrustProfile, at: dt.datetime | None = None, host: HostStore = EMPTY_HOST_STORE
) -> ProbeResult:
    """The offline analysis of a record, as `relaywatch analyze` and the probe worker run it."""
    return ProbeResult(rec, analyze(rec, profile, at, host))


# --------------------------------------------------------------------------- scripted servers


@contextmanager
def scripted(
    server_sends: bytes, limits: Limits | None = None, *, phase: str = "ehlo", hang_up: bool = True
) -> Iterator[tuple[LineChannel, socket.socket]]:
    """A LineChannel over a real socket pair whose far end has already sent ``server_sends`` (and closed
    its side, unless ``hang_up`` is False: then the server stays silent). Yields the channel and the far
    end, from which `client_sent` reads what the dialogue wrote."""
    near, far = socket.socketpair()
    try:
        far.sendall(server_sends)
        if hang_up:
            far.shutdown(socket.SHUT_WR)
        clock = Clock(limits or Limits(timeout=2.0, phase_timeout=2.0))
        clock.begin(phase)
        yield LineChannel(SocketStream(near, clock), clock, []), far
    finally:
        near.close()
        far.close()


def client_sent(far: socket.socket) -> list[str]:
    """The lines the client wrote so far (the far end of `scripted`)."""
    far.setblocking(False)
    data = b""
    with suppress(BlockingIOError):
        while chunk := far.recv(65536):
            data += chunk
    far.setblocking(True)
    return data.decode().splitlines()


def agent_argv(config: Path, listen: str, *args: str) -> list[str]:
    """`relaywatch run` with this config on this address: the one command line every test agent uses."""
    return [
        sys.executable,
        "-m",
        "relaywatch",
        "run",
        "--config.file",
        str(config),
        "--web.listen-address",
        listen,
        *args,
    ]


def der_tlv(tag: int, body: bytes) -> bytes:
    """One DER tag-length-value, for certificates no builder would write."""
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body
