"""What every benchmark here shares: the lab relays in a process of their own, free ports, an HTTP GET,
quantiles, blackbox_exporter, the agent as a child process, and CPU/PSS of a process tree.

One module so that probe_bench.py, agent_cost.py and the agent_* benchmarks measure the same relays the
same way: the relays' CPU is never counted for the tool under test, and a process's CPU is user+system
(psutil, all threads, dead ones included).
"""

from __future__ import annotations

import contextlib
import datetime as dt
import fcntl
import functools
import hashlib
import http.client
import multiprocessing
import multiprocessing.connection
import os
import platform
import selectors
import shlex
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import tomllib
import unittest.mock
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import psutil

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:  # run as a script from anywhere: the package is the repository's agent/
    sys.path.insert(0, str(ROOT))

HOST = "127.0.0.1"
RESULTS = Path(__file__).resolve().parent / "results"
START_TIMEOUT = 30.0  # relay, exporter or agent coming up
HTTP_TIMEOUT = 30.0
MB = 1024 * 1024
BLACKBOX = "/usr/bin/prometheus-blackbox-exporter"
PROBE_WORKER = "relaywatch.run.worker"  # the agent's long-lived child doing TLS and the analysis
_CACHE = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
AGENT_VENVS = Path(os.environ.get("RELAYWATCH_BENCH_VENVS") or _CACHE / "relaywatch-bench")

# blackbox_exporter's equivalent of a relaywatch STARTTLS probe: the same dialogue, chain verified
BLACKBOX_CONFIG = """\
modules:
  smtp_starttls:
    prober: tcp
    timeout: 5s
    tcp:
      preferred_ip_protocol: ip4
      ip_protocol_fallback: false
      query_response:
        - expect: "^220"
        - send: "EHLO bench"
        - expect: "^250 "
        - send: "STARTTLS"
        - expect: "^220"
        - starttls: true
        - send: "EHLO bench"
        - expect: "^250 "
        - send: "QUIT"
        - expect: "^221"
      tls_config:
        ca_file: "{ca}"
        server_name: localhost
"""


class BenchError(RuntimeError):
    """Something did not run: the benchmark exits non-zero with this message."""


def quantile(values: Iterable[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def tail(path: Path, chars: int = 800) -> str:
    with contextlib.suppress(OSError):
        return path.read_text(errors="replace")[-chars:].strip()
    return ""


def free_port(ports: range, host: str = HOST, exclude: Sequence[int] = ()) -> int:
    for port in ports:
        if port in exclude:
            continue
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
            try:
                s.bind((host, port))
            except OSError:
                continue
            return port
    raise BenchError(f"no free port in {ports.start}-{ports.stop - 1} on {host}")


def http_get(host: str, port: int, path: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def http_post(host: str, port: int, path: str, timeout: float = HTTP_TIMEOUT) -> tuple[int, bytes]:
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("POST", path, body=b"")
        resp = conn.getresponse()
        return resp.status, resp.read()
    finally:
        conn.close()


def loadavg() -> tuple[float, float, float]:
    return os.getloadavg()


def machine() -> dict[str, Any]:
    return {
        "python": platform.python_version(),
        "cpus": psutil.cpu_count(),
        "machine": platform.machine(),
        "kernel": platform.release(),
    }


# ---------------------------------------------------------------- CPU and memory of process trees


def cpu_s(proc: psutil.Process) -> float:
    """User + system seconds of one process (0 once it is gone)."""
    with contextlib.suppress(psutil.Error):
        t = proc.cpu_times()
        return t.user + t.system
    return 0.0


def tree(pid: int) -> list[psutil.Process]:
    """A process and all its live descendants."""
    with contextlib.suppress(psutil.Error):
        root = psutil.Process(pid)
        return [root, *root.children(recursive=True)]
    return []


def tree_cpu_s(pid: int) -> float:
    """The whole tree's CPU: live processes, plus the children the root has already reaped."""
    total = sum(cpu_s(p) for p in tree(pid))
    with contextlib.suppress(psutil.Error):
        t = psutil.Process(pid).cpu_times()
        total += t.children_user + t.children_system
    return total


def pss_mb(procs: Iterable[psutil.Process]) -> dict[str, float]:
    """PSS (MB) per process, by pid and command's last word, and their sum: PSS adds up, RSS does not."""
    out: dict[str, float] = {}
    total = 0.0
    for p in procs:
        with contextlib.suppress(psutil.Error):
            pss = p.memory_full_info().pss / MB
            name = " ".join(p.cmdline()[1:4])[:60] or p.name()
            out[f"{p.pid} {name}"] = pss
            total += pss
    out["total"] = total
    return out


# ---------------------------------------------------------------- the agent's own interpreter


@functools.cache
def agent_python() -> str:
    """The interpreter the agent runs under here: a venv of its own holding the project's dependencies, as
    packaging/deb installs it, with the checkout's code on PYTHONPATH (`.mypy/relaywatch -> ../agent`).

    Why not this benchmark's interpreter: PSS charges a page that n processes map 1/n to each, and the lab
    relays and this process load the same cryptography, msgspec, yaml... from it, so an agent run from it
    reads about 4 MB low (the relays exist only in the lab). It also runs whatever that interpreter's
    site-packages start with (.pth files: this machine's add 4 MB and 50 ms to every start).

    One venv per dependency list and interpreter, in this user's cache (a benchmark runs as root: a venv in
    a folder another user can write would be theirs to run code in), built under a lock into a temporary
    folder and renamed into place. Built on first use (pip, under a minute), then reused."""
    deps = sorted(tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"])
    key = hashlib.sha256("\n".join([sys.version, sys.executable, *deps]).encode()).hexdigest()[:16]
    home = AGENT_VENVS
    venv = home / f"venv-{key}"
    python = venv / "bin" / "python"
    try:
        home.mkdir(mode=0o700, parents=True, exist_ok=True)
        _private(home)
        with (home / ".lock").open("a") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            if (venv / "packages.txt").is_file():
                _private(venv)
                return str(python)
            print(f"bench: building the agent's venv in {venv} (once)", file=sys.stderr, flush=True)
            tmp = Path(tempfile.mkdtemp(prefix=f".venv-{key}-", dir=home))
            try:
                subprocess.run([sys.executable, "-m", "venv", str(tmp)], check=True, timeout=300)
                pip = [str(tmp / "bin" / "python"), "-m", "pip", "--disable-pip-version-check"]
                subprocess.run([*pip, "install", "-q", *deps], check=True, timeout=900)
                frozen = subprocess.run(
                    [*pip, "list", "--format=freeze"], check=True, timeout=60, capture_output=True, text=True
                ).stdout
                (tmp / "packages.txt").write_text(frozen)
                tmp.rename(venv)
            finally:
                shutil.rmtree(tmp, ignore_errors=True)  # gone already when renamed
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"cannot set up the agent's venv in {home}: {exc}") from exc
    return str(python)


def _private(path: Path) -> None:
    """Ours alone: owned by this user, writable by no one else."""
    st = path.stat()
    if st.st_uid != os.geteuid() or st.st_mode & 0o022:
        raise BenchError(f"{path} is not this user's alone (owner uid {st.st_uid}, mode {st.st_mode:o})")


def agent_venv_info() -> dict[str, Any]:
    """What the agent ran under, for the results: its interpreter and the versions pip installed."""
    python = Path(agent_python())
    return {"python": str(python), "packages": (python.parent.parent / "packages.txt").read_text().split()}


def agent_env() -> dict[str, str]:
    """The agent's environment: the checkout's code (PYTHONPATH as given, else this tree's). The agent starts
    its path workers with its own interpreter, as it does when installed."""
    return {"PYTHONPATH": os.environ.get("PYTHONPATH") or str(ROOT / ".mypy")}


def compile_code(env: Mapping[str, str]) -> None:
    """Give the code on env's PYTHONPATH its bytecode, as an installed agent has it (pip and packaging/deb
    compile it): without it every agent process, exec'd worker and path worker would compile its modules
    at start (about 70 ms of CPU and a larger heap), and PYTHONDONTWRITEBYTECODE, set on some machines,
    keeps Python from caching what it compiled."""
    for entry in env.get("PYTHONPATH", "").split(os.pathsep):
        if entry and (Path(entry) / "relaywatch").is_dir():
            _compile_tree(str(Path(entry).resolve() / "relaywatch"))


@functools.cache
def _compile_tree(package: str) -> None:
    """compileall rewrites only what is stale; once per benchmark process and tree."""
    try:
        subprocess.run([agent_python(), "-m", "compileall", "-q", package], check=True, timeout=300)
    except (OSError, subprocess.SubprocessError) as exc:
        raise BenchError(f"cannot compile {package}: {exc}") from exc


@contextlib.contextmanager
def path_workers_under_agent_python() -> Iterator[None]:
    """Path workers that this process starts (path.client.Tracer) run under the agent's
    interpreter while inside, through the agent's own seam for that, RELAYWATCH_PATH_WORKER; the
    environment is as it was afterwards."""
    scope = {
        "RELAYWATCH_PATH_WORKER": shlex.join([agent_python(), "-m", "relaywatch.path.worker"]),
        **agent_env(),
    }
    compile_code(scope)
    with unittest.mock.patch.dict(os.environ, scope):
        yield


# ---------------------------------------------------------------- lab relays (child process)


def relay_hosts(n: int) -> list[str]:
    """n distinct loopback addresses (127.0.1.1, 127.0.1.2, ...): one relay listener per target."""
    return [f"127.0.{1 + i // 250}.{1 + i % 250}" for i in range(n)]


def _serve_relays(
    directory: str, hosts: list[str], ports: range, nagle: bool, conn: Any, sessions: Any
) -> None:
    """Child: one LabServer(Mail("smtp", ...)) per host, same port, until the parent closes the pipe.

    The servers' sockets are served by one epoll loop (LabServer.server.handle_request when readable)
    instead of LabServer's own threads: 1,000 serve_forever threads polling every 50 ms would burn a
    core of this 2-core host on wake-ups and slow the tool being measured. Connections are handled as
    LabServer handles them (its handler: timeout, TCP_NODELAY, Mail), one thread each. nagle: turn
    TCP_NODELAY off again (small writes then wait for the client's delayed ACK, ~40 ms a probe).
    """
    from relaywatch.lab.pki import Issued
    from relaywatch.lab.servers import LabServer, Mail, server_context

    d = Path(directory)
    mail = Mail("smtp", server_context(Issued.load(d, "relay"), [Issued.load(d, "issuing")]))

    def handle(sock: socket.socket, server: LabServer) -> None:
        if nagle:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 0)
        try:
            mail(sock, server)
        finally:
            with sessions.get_lock():
                sessions.value += 1

    servers = _bind_all(handle, hosts, ports)
    if not servers:
        conn.send(("error", f"no port in {ports.start}-{ports.stop - 1} free on all {len(hosts)} addresses"))
        return
    sel = selectors.DefaultSelector()
    for s in servers:
        s.server.timeout = 1.0  # handle_request never blocks longer, even on a spurious wake-up
        sel.register(s.server, selectors.EVENT_READ, s)
    sel.register(conn, selectors.EVENT_READ, None)
    conn.send(("port", servers[0].port))
    try:
        while True:
            for key, _ in sel.select(timeout=1.0):
                if key.data is None:  # a message or EOF from the parent: stop
                    return
                key.data.server.handle_request()
    finally:
        for s in servers:
            s.server.server_close()


def _bind_all(handle: Any, hosts: list[str], ports: range) -> list[Any]:
    """One LabServer per host on the first port free on all of them; [] if there is none."""
    from relaywatch.lab.servers import LabServer

    for port in ports:
        servers: list[LabServer] = []
        try:
            for host in hosts:
                servers.append(LabServer(handle, host, port))
        except OSError:
            for s in servers:
                s.server.server_close()
            continue
        return servers
    return []


@dataclass
class Relays:
    port: int
    pid: int
    hosts: list[str]
    sessions: Any  # multiprocessing.Value: sessions the relays finished

    def targets(self, n: int) -> list[str]:
        return [f"smtp://{h}:{self.port}" for h in self.hosts[:n]]

    def cpu_s(self) -> float:
        return cpu_s(psutil.Process(self.pid))


@contextlib.contextmanager
def relay_process(directory: Path, n: int, ports: range, nagle: bool = False) -> Iterator[Relays]:
    """The relay child (n loopback addresses, one port); stopped through its pipe, killed if it lingers."""
    ctx = multiprocessing.get_context("spawn")  # no inherited state from the benchmark process
    parent, child = ctx.Pipe()
    sessions = ctx.Value("Q", 0)
    hosts = relay_hosts(n)
    proc = ctx.Process(
        target=_serve_relays, args=(str(directory), hosts, ports, nagle, child, sessions), daemon=True
    )
    proc.start()
    try:
        multiprocessing.connection.wait([parent, proc.sentinel], timeout=START_TIMEOUT)
        if not parent.poll():
            raise BenchError(f"lab relays did not start (waited {START_TIMEOUT:g} s, exit {proc.exitcode})")
        kind, value = parent.recv()
        if kind != "port":
            raise BenchError(f"lab relays: {value}")
        assert proc.pid is not None
        yield Relays(int(value), proc.pid, hosts, sessions)
    finally:
        with contextlib.suppress(OSError):
            parent.send("stop")
        parent.close()
        proc.join(timeout=5)
        if proc.is_alive():
            proc.kill()
            proc.join(timeout=5)


# ---------------------------------------------------------------- blackbox_exporter


@dataclass(frozen=True)
class Blackbox:
    port: int
    pid: int
    version: str

    def probe_path(self, hostport: str) -> str:
        return f"/probe?module=smtp_starttls&target={hostport}"


def blackbox_success(body: bytes) -> bool:
    return any(line.strip() == b"probe_success 1" for line in body.splitlines())


def agent_success(body: bytes) -> bool:
    """The agent's `/probe` answer says the probe completed: its relaywatch_probe_success line is 1 (any
    other series may be 1 whatever the probe did, so the line itself is read)."""
    return any(
        line.startswith(b"relaywatch_probe_success{") and line.rpartition(b" ")[2] in (b"1", b"1.0")
        for line in body.splitlines()
    )


def wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, what: str) -> None:
    """Until `/-/healthy` answers 200 (both tools have it); a process that exits or takes longer than
    START_TIMEOUT is a BenchError with the end of its log."""
    deadline = time.monotonic() + START_TIMEOUT
    while True:
        if proc.poll() is not None:
            raise BenchError(f"{what} exited {proc.returncode}: {tail(log)}")
        with contextlib.suppress(OSError):
            if http_get(HOST, port, "/-/healthy", timeout=2)[0] == 200:
                return
        if time.monotonic() > deadline:
            raise BenchError(f"{what} not healthy within {START_TIMEOUT:g} s: {tail(log)}")
        time.sleep(0.05)


@contextlib.contextmanager
def blackbox_process(directory: Path, ports: range, exclude: Sequence[int] = ()) -> Iterator[Blackbox]:
    """A running exporter with the STARTTLS module (CA: directory/root.pem); killed on the way out."""
    if not Path(BLACKBOX).is_file():
        raise BenchError(f"{BLACKBOX} not found (Debian package prometheus-blackbox-exporter)")
    version = subprocess.run(
        [BLACKBOX, "--version"], capture_output=True, text=True, timeout=10, check=False
    ).stdout.splitlines()
    config = directory / "blackbox.yml"
    config.write_text(BLACKBOX_CONFIG.format(ca=directory / "root.pem"))
    checked = subprocess.run(
        [BLACKBOX, f"--config.file={config}", "--config.check"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    if checked.returncode != 0:
        raise BenchError(f"blackbox config rejected: {checked.stderr.strip()[-500:]}")
    port = free_port(ports, exclude=exclude)
    logfile = directory / "blackbox.log"
    with logfile.open("wb") as log:
        proc = subprocess.Popen(
            [BLACKBOX, f"--config.file={config}", f"--web.listen-address={HOST}:{port}", "--log.level=warn"],
            stdout=log,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        wait_healthy(proc, port, logfile, "blackbox")
        yield Blackbox(port, proc.pid, version[0] if version else "unknown")
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


# ---------------------------------------------------------------- the agent (child processes)


@dataclass
class Agent:
    proc: subprocess.Popen[bytes]
    port: int
    spawned_wall: float  # time.time() just before the process was started
    healthy_after_s: float  # spawn -> /-/healthy answered
    _worker: psutil.Process | None = None

    def get(self, path: str = "/metrics") -> tuple[int, bytes]:
        return http_get(HOST, self.port, path)

    def reload(self) -> None:
        status, body = http_post(HOST, self.port, "/-/reload")
        if status != 200:
            raise BenchError(f"/-/reload answered HTTP {status}: {body[:300]!r}")

    def cpu_s(self) -> float:
        return cpu_s(psutil.Process(self.proc.pid))

    def tree_cpu_s(self) -> float:
        """Main process, probe worker, path processes (live or reaped): the agent's whole CPU."""
        return tree_cpu_s(self.proc.pid)

    def pss_mb(self) -> dict[str, float]:
        return pss_mb(tree(self.proc.pid))

    def worker(self) -> psutil.Process | None:
        """The probe worker (a child whose command line names it)."""
        if self._worker is not None and self._worker.is_running():
            return self._worker
        self._worker = None
        with contextlib.suppress(psutil.Error):
            for child in psutil.Process(self.proc.pid).children():
                if PROBE_WORKER in " ".join(child.cmdline()):
                    self._worker = child
        return self._worker

    def worker_cpu_s(self) -> float:
        w = self.worker()
        return 0.0 if w is None else cpu_s(w)

    def children_cpu_s(self) -> float:
        """CPU of the agent's finished children: its path workers (and a probe worker that died)."""
        t = psutil.Process(self.proc.pid).cpu_times()
        return t.children_user + t.children_system


def write_agent_config(
    path: Path,
    profile: Path,
    targets: Sequence[str],
    interval: str,
    concurrency: int = 16,
    path_traces: bool = True,
    extra: Sequence[str] = (),
) -> Path:
    lines = [f"interval: {interval}", "timeout: 5s", f"profile: {profile}", f"concurrency: {concurrency}"]
    if not path_traces:
        lines.append("path: {enabled: false}")
    lines += [*extra, "targets:"]
    for i, t in enumerate(targets):
        lines += [f"  - target: {t}", f"    labels: {{site: s{i % 10}}}"]
    path.write_text("\n".join(lines) + "\n")
    return path


def write_default_config(path: Path, profile: Path, targets: Sequence[str]) -> Path:
    """The shipped defaults (60 s interval, path traces and host inventory on) with lab targets in place of
    the two Microsoft 365 ones the agent probes with no config (a benchmark stays on loopback)."""
    path.write_text(f"profile: {profile}\ntargets:\n" + "".join(f"  - target: {t}\n" for t in targets))
    return path


def tree_env(tree: Path) -> dict[str, str]:
    """The environment that runs a checkout's agent: its `.mypy` (`.mypy/relaywatch -> ../agent`) first on
    PYTHONPATH; the agent passes it on, so an exec'd worker runs the same tree."""
    return {"PYTHONPATH": str(tree / ".mypy")}


def missing_trees(trees: Sequence[Path]) -> list[str]:
    """The checkouts given with --tree that cannot run (no `.mypy/relaywatch`)."""
    return [str(t) for t in trees if not (t / ".mypy" / "relaywatch").exists()]


def result_header() -> dict[str, Any]:
    """What every results file starts with: when, and on what machine."""
    return {"at": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"), "machine": machine()}


@contextlib.contextmanager
def agent_process(
    config: Path,
    log: Path,
    ports: range,
    env: dict[str, str] | None = None,
    argv_prefix: Sequence[str] | None = None,
) -> Iterator[Agent]:
    """`relaywatch run` on 127.0.0.1 (python -m relaywatch: the console script's code); SIGTERM, then kill.

    argv_prefix replaces `python -m relaywatch` (a traced variant). Its workers are the agent's to stop
    (it stops them on SIGTERM); any still alive after the agent has gone are killed by pid, so nothing
    a benchmark started outlives it."""
    port = free_port(ports)
    run = ["run", "--config.file", str(config), "--web.listen-address", f"{HOST}:{port}"]
    level = os.environ.get("BENCH_AGENT_LOG", "warn")
    run += ["--state.dir", str(log.parent / "state"), "--log.level", level]
    argv = [*(argv_prefix or [agent_python(), "-m", "relaywatch"]), *run]
    agent_environ = {**os.environ, **agent_env(), **(env or {})}
    compile_code(agent_environ)
    with log.open("wb") as err:
        spawned = time.time()
        t0 = time.monotonic()
        proc = subprocess.Popen(
            argv,
            cwd=ROOT,
            env=agent_environ,
            stdout=subprocess.DEVNULL,
            stderr=err,
            stdin=subprocess.DEVNULL,
        )
    children: list[psutil.Process] = []
    try:
        wait_healthy(proc, port, log, "agent")
        yield Agent(proc, port, spawned, time.monotonic() - t0)
    finally:
        if proc.poll() is None:
            with contextlib.suppress(psutil.Error):
                children = psutil.Process(proc.pid).children(recursive=True)
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=5)
        for child in children:  # psutil checks the start time: never another process with the pid
            with contextlib.suppress(psutil.Error):
                child.kill()
