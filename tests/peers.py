"""Throwaway network peers for integration tests, all on 127.0.0.1.

* :func:`postfix_relay` runs a private Postfix instance (its own config, queue and data
  directories) whose smtpd offers STARTTLS with a given certificate chain.
* :func:`sslsplit_autossl` runs a fresh ``sslsplit`` in ``autossl`` mode in front of an
  upstream port; it re-signs the TLS session that follows STARTTLS with a given CA.

Both wait for their listener with ``ss -ltnH`` (never with a probing connect), bound every
wait and every subprocess call, and on exit make sure no process of theirs is left.
Neither touches the system's own Postfix instance nor sends traffic off the loopback.
"""

from __future__ import annotations

import os
import pwd
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager, suppress
from dataclasses import dataclass
from pathlib import Path

__all__ = [
    "LISTEN_DEADLINE_S",
    "SslsplitHandle",
    "free_port",
    "port_listening",
    "postfix_relay",
    "sslsplit_autossl",
]

HOST = "127.0.0.1"
LISTEN_DEADLINE_S = 15.0
STOP_DEADLINE_S = 10.0
CMD_TIMEOUT_S = 60.0
_SBIN_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"
_LOG_TAIL_CHARS = 6000


# --------------------------------------------------------------------------- helpers


def _which(cmd: str) -> str | None:
    return shutil.which(cmd, path=os.environ.get("PATH", "") + os.pathsep + _SBIN_PATH)


def _listeners(port: int) -> list[str]:
    """Local addresses (``addr:port``) of TCP listeners on ``port``, as ``ss`` reports them."""
    ss = _which("ss")
    if ss is None:
        raise RuntimeError("`ss` (iproute2) is not installed; it is needed to wait for listeners")
    res = subprocess.run(
        [ss, "-ltnH", f"sport = :{port}"], capture_output=True, text=True, timeout=10, check=False
    )
    if res.returncode != 0:
        raise RuntimeError(f"ss failed ({res.returncode}): {res.stderr.strip()}")
    out: list[str] = []
    for line in res.stdout.splitlines():
        fields = line.split()
        # State Recv-Q Send-Q Local:Port Peer:Port [Process]
        if len(fields) >= 4 and fields[3].rsplit(":", 1)[-1] == str(port):
            out.append(fields[3])
    return out


def port_listening(port: int, host: str = HOST) -> bool:
    """True when a TCP listener is bound to ``host:port`` (checked with ``ss``, no connect)."""
    return f"{host}:{port}" in _listeners(port)


def free_port(lo: int = 26000, hi: int = 26999) -> int:
    """A port in ``[lo, hi]`` with no listener and bindable on 127.0.0.1 right now.

    Starts at a random offset so that concurrent test runs rarely pick the same one.
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
        if not _listeners(port):
            return port
    raise RuntimeError(f"no free TCP port in {lo}-{hi} on {HOST}")


def _ensure_port_free(port: int) -> None:
    busy = _listeners(port)
    if busy:
        raise RuntimeError(f"TCP port {port} is already in use by a listener on {', '.join(busy)}")


def _tail(path: Path, limit: int = _LOG_TAIL_CHARS) -> str:
    try:
        text = path.read_text(errors="replace")
    except OSError as exc:
        return f"<{path}: {exc.strerror}>"
    return text if len(text) <= limit else "...\n" + text[-limit:]


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
        if not entry.isdigit():
            continue
        st = _proc_stat(int(entry))
        if st is not None and st[1] == pgid and st[0] not in ("Z", "X"):
            pids.append(int(entry))
    return pids


def _kill_group(pgid: int, sig: signal.Signals) -> None:
    with suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _wait_group_gone(pgid: int, deadline_s: float) -> list[int]:
    end = time.monotonic() + deadline_s
    while True:
        left = _live_pids_in_group(pgid)
        if not left or time.monotonic() >= end:
            return left
        time.sleep(0.05)


def _stop_process(proc: subprocess.Popen[bytes], what: str) -> None:
    """SIGTERM the leader (it stops its own children), bounded wait, SIGKILL; then make sure
    nothing of its process group is left (SIGTERM, then SIGKILL, each with a bounded wait).

    ``proc`` must lead its own process group (``start_new_session`` or its own setsid()).
    """
    pgid = proc.pid
    if proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(timeout=STOP_DEADLINE_S)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_DEADLINE_S)
    left = _wait_group_gone(pgid, 2.0)
    if left:
        _kill_group(pgid, signal.SIGTERM)
        left = _wait_group_gone(pgid, 3.0)
    if left:
        _kill_group(pgid, signal.SIGKILL)
        left = _wait_group_gone(pgid, 5.0)
    if left:
        raise RuntimeError(f"{what}: processes {left} of process group {pgid} survived SIGKILL")


def _wait_listening(
    port: int, proc: subprocess.Popen[bytes], what: str, diag: Path, deadline_s: float = LISTEN_DEADLINE_S
) -> None:
    """Poll ``ss`` until ``what`` listens on 127.0.0.1:``port``; fail early if it exits."""
    end = time.monotonic() + deadline_s
    while True:
        if port_listening(port):
            return
        rc = proc.poll()
        if rc is not None:
            raise RuntimeError(
                f"{what} exited with status {rc} before listening on {HOST}:{port}; see {diag}"
            )
        if time.monotonic() >= end:
            raise RuntimeError(f"{what} not listening on {HOST}:{port} after {deadline_s:.0f} s; see {diag}")
        time.sleep(0.1)


def _traversable_by(path: Path, uid: int, gid: int) -> bool:
    """Whether a process running as uid/gid (no extra groups) can reach ``path``."""
    for p in [path, *path.parents]:
        st = p.stat()
        if st.st_uid == uid:
            ok = bool(st.st_mode & stat.S_IXUSR)
        elif st.st_gid == gid:
            ok = bool(st.st_mode & stat.S_IXGRP)
        else:
            ok = bool(st.st_mode & stat.S_IXOTH)
        if not ok:
            return False
    return True


# --------------------------------------------------------------------------- postfix

# Only the services a receiving relay needs; no chroot anywhere (column 5 = n).
_MASTER_CF = """\
# service type  private unpriv  chroot  wakeup  maxproc command
{host}:{port} inet n - n - - smtpd
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
tlsmgr    unix  -       -       n       1000?   1       tlsmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
smtp      unix  -       -       n       -       -       smtp
relay     unix  -       -       n       -       -       smtp
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
local     unix  -       n       n       -       -       local
virtual   unix  -       n       n       -       -       virtual
lmtp      unix  -       -       n       -       -       lmtp
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
"""


def _main_cf(*, queue: Path, data: Path, maillog: Path, chain: Path, key: Path, myhostname: str) -> str:
    return f"""\
# Private relaywatch test instance; generated by tests/peers.py.
compatibility_level = 3.6
queue_directory = {queue}
data_directory = {data}
maillog_file = {maillog}
maillog_file_prefixes = {maillog.parent}
multi_instance_directories =
multi_instance_enable = no
myhostname = {myhostname}
mydomain = relaywatch.lab
myorigin = $myhostname
mydestination =
inet_interfaces = {HOST}
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
smtpd_banner = $myhostname ESMTP relaywatch-lab
smtpd_peername_lookup = no
smtpd_relay_restrictions = permit_mynetworks, reject_unauth_destination
# Whatever is accepted is thrown away: nothing ever leaves this host.
default_transport = discard:relaywatch lab sink
relay_transport = discard:relaywatch lab sink
local_transport = discard:relaywatch lab sink
smtp_dns_support_level = disabled
alias_maps =
alias_database =
local_recipient_maps =
biff = no
smtpd_tls_security_level = may
smtpd_tls_chain_files = {key}, {chain}
smtpd_tls_loglevel = 1
smtpd_tls_received_header = yes
"""


def _postfix_tools() -> tuple[str, Path]:
    postfix = _which("postfix")
    postconf = _which("postconf")
    if postfix is None or postconf is None:
        raise RuntimeError(
            "Postfix is not installed (no `postfix`/`postconf` in PATH or /usr/sbin); "
            "run scripts/setup.sh or `apt-get install postfix`"
        )
    res = subprocess.run(
        [postconf, "-d", "-h", "daemon_directory"], capture_output=True, text=True, timeout=30, check=False
    )
    master = Path(res.stdout.strip() or "/usr/lib/postfix/sbin") / "master"
    if res.returncode != 0 or not master.is_file():
        raise RuntimeError(f"Postfix master daemon not found ({master}): {res.stderr.strip()}")
    return postfix, master


@contextmanager
def postfix_relay(
    workdir: Path,
    port: int,
    cert_chain_pem: Path,
    key_pem: Path,
    *,
    myhostname: str = "mx.relaywatch.lab",
    main_cf_extra: str = "",
) -> Iterator[int]:
    """Run a private Postfix smtpd on 127.0.0.1:``port`` offering STARTTLS; yields the port.

    ``cert_chain_pem`` holds the leaf first, then any intermediates. Everything lives in a
    fresh directory under ``workdir`` (``postfix-PORT-*``: ``conf/``, ``queue/``, ``maillog``);
    the data directory is there too unless the ``postfix`` user cannot traverse ``workdir``
    (pytest's ``tmp_path`` is under a 0700 directory), in which case it is a private
    temporary directory, removed on exit. Accepted mail is discarded. ``main_cf_extra`` is appended
    to main.cf (later settings win), e.g. to cap the TLS versions.
    """
    if os.geteuid() != 0:
        raise RuntimeError("postfix_relay needs root (Postfix's master runs as root)")
    postfix, master = _postfix_tools()
    try:
        pf_user = pwd.getpwnam("postfix")
    except KeyError:
        raise RuntimeError("Postfix is installed but the `postfix` user does not exist") from None
    for pem in (cert_chain_pem, key_pem):
        if not Path(pem).is_file():
            raise RuntimeError(f"postfix_relay: {pem} is not a file")
    _ensure_port_free(port)

    workdir.mkdir(parents=True, exist_ok=True)
    base = Path(tempfile.mkdtemp(prefix=f"postfix-{port}-", dir=workdir)).resolve()
    conf, queue = base / "conf", base / "queue"
    conf.mkdir()
    queue.mkdir()
    own_data_tmp: Path | None = None
    if _traversable_by(base, pf_user.pw_uid, pf_user.pw_gid):
        data = base / "data"
        data.mkdir()
    else:
        # master opens data_directory/master.lock after dropping to the postfix user.
        own_data_tmp = Path(tempfile.mkdtemp(prefix=f"relaywatch-postfix-{port}-data-", dir="/tmp"))
        data = own_data_tmp
        (base / "data").symlink_to(data)
    os.chown(data, pf_user.pw_uid, pf_user.pw_gid)
    maillog = base / "maillog"
    (conf / "main.cf").write_text(
        _main_cf(
            queue=queue,
            data=data,
            maillog=maillog,
            chain=Path(cert_chain_pem).resolve(),
            key=Path(key_pem).resolve(),
            myhostname=myhostname,
        )
        + main_cf_extra
    )
    (conf / "master.cf").write_text(_MASTER_CF.format(host=HOST, port=port))
    # Postfix re-reads main.cf until its mtime is older than ~1 s (a guard against reading a
    # file that is still being written), which delays every start by 1.5 s: backdate both.
    past = time.time() - 60
    for cf in ("main.cf", "master.cf"):
        os.utime(conf / cf, (past, past))

    proc: subprocess.Popen[bytes] | None = None
    try:
        # `check` creates the queue directories with their owners (post-install create-missing)
        # and validates the configuration. As root, -c needs no alternate_config_directories.
        chk = subprocess.run(
            [postfix, "-c", str(conf), "check"],
            capture_output=True,
            text=True,
            timeout=CMD_TIMEOUT_S,
            check=False,
        )
        (base / "check.out").write_text(chk.stdout + chk.stderr)
        if chk.returncode != 0:
            raise RuntimeError(
                f"`postfix -c {conf} check` failed ({chk.returncode}):\n{chk.stdout}{chk.stderr}\n"
                f"maillog:\n{_tail(maillog)}"
            )
        # master in the foreground (-s: no daemon fork, stdout kept); it calls setsid() itself,
        # so its pid is the process group of every Postfix daemon of this instance (and were
        # it not, no group with that id would exist: killpg on it could not hit anyone else).
        with (base / "master.out").open("wb") as out:
            proc = subprocess.Popen(
                [str(master), "-c", str(conf), "-s"],
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                cwd=base,
                env={"PATH": _SBIN_PATH, "MAIL_CONFIG": str(conf), "LANG": "C"},
            )
        try:
            _wait_listening(port, proc, "postfix master", maillog)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\nmaillog:\n{_tail(maillog)}") from None
        yield port
    finally:
        try:
            if proc is not None:
                _stop_process(proc, "postfix master")
                end = time.monotonic() + 5.0
                while port_listening(port) and time.monotonic() < end:
                    time.sleep(0.05)
        finally:
            if own_data_tmp is not None:
                shutil.rmtree(own_data_tmp, ignore_errors=True)


# --------------------------------------------------------------------------- sslsplit


@dataclass
class SslsplitHandle:
    """A running ``sslsplit autossl``; ``log_text()`` gathers everything it wrote."""

    port: int
    upstream_port: int
    proc: subprocess.Popen[bytes]
    logdir: Path

    @property
    def output_file(self) -> Path:
        return self.logdir / "sslsplit.out"

    @property
    def connect_log(self) -> Path:
        return self.logdir / "connect.log"

    @property
    def content_dir(self) -> Path:
        return self.logdir / "content"

    @property
    def cert_dir(self) -> Path:
        return self.logdir / "certs"

    def alive(self) -> bool:
        """The process is still running and its listener is still there."""
        return self.proc.poll() is None and port_listening(self.port)

    def log_text(self, limit: int = _LOG_TAIL_CHARS) -> str:
        """stdout/stderr, the connect log and the content logs (each cut to ``limit`` chars)."""
        rc = self.proc.poll()
        parts = [f"sslsplit pid {self.proc.pid} {'running' if rc is None else f'exited {rc}'}"]
        parts.append(f"== {self.output_file.name}\n{_tail(self.output_file, limit)}")
        parts.append(f"== {self.connect_log.name}\n{_tail(self.connect_log, limit)}")
        if self.content_dir.is_dir():
            for f in sorted(self.content_dir.iterdir())[-5:]:
                parts.append(f"== content/{f.name}\n{_tail(f, limit)}")
        return "\n".join(parts)


@contextmanager
def sslsplit_autossl(
    workdir: Path,
    listen_port: int,
    upstream_port: int,
    ca_cert_pem: Path,
    ca_key_pem: Path,
    *,
    extra_args: Sequence[str] = (),
) -> Iterator[SslsplitHandle]:
    """Run a fresh ``sslsplit autossl 127.0.0.1 listen_port 127.0.0.1 upstream_port``.

    The TLS session a client starts after STARTTLS is terminated by sslsplit with a leaf
    forged from the upstream's (subject and SANs copied) and signed by the given CA.
    Logs go to a fresh ``sslsplit-PORT-*`` directory under ``workdir``.
    """
    sslsplit = _which("sslsplit")
    if sslsplit is None:
        raise RuntimeError("sslsplit is not installed; run scripts/setup.sh or `apt-get install sslsplit`")
    _ensure_port_free(listen_port)
    workdir.mkdir(parents=True, exist_ok=True)
    logdir = Path(tempfile.mkdtemp(prefix=f"sslsplit-{listen_port}-", dir=workdir)).resolve()
    content, certs = logdir / "content", logdir / "certs"
    content.mkdir()
    certs.mkdir()
    cmd = [
        sslsplit,
        "-k", str(Path(ca_key_pem).resolve()),
        "-c", str(Path(ca_cert_pem).resolve()),
        "-l", str(logdir / "connect.log"),
        "-S", str(content),
        "-w", str(certs),
    ]  # fmt: skip
    if os.geteuid() == 0:
        cmd += ["-u", "nobody", "-m", "nogroup"]
    cmd += [*extra_args, "autossl", HOST, str(listen_port), HOST, str(upstream_port)]
    (logdir / "cmdline").write_text(" ".join(cmd) + "\n")

    with (logdir / "sslsplit.out").open("wb") as out:
        # Foreground (no -d); own session so that its privsep child can be found and killed.
        proc = subprocess.Popen(
            cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, cwd=logdir,
            start_new_session=True,
        )  # fmt: skip
    handle = SslsplitHandle(port=listen_port, upstream_port=upstream_port, proc=proc, logdir=logdir)
    try:
        try:
            _wait_listening(listen_port, proc, "sslsplit", logdir)
        except RuntimeError as exc:
            raise RuntimeError(f"{exc}\n{handle.log_text()}") from None
        yield handle
    finally:
        _stop_process(proc, "sslsplit")
        end = time.monotonic() + 5.0
        while port_listening(listen_port) and time.monotonic() < end:
            time.sleep(0.05)
