"""Soak: `relaywatch run` against 50 loopback lab targets of mixed behaviour (relays, re-signing and
stripping proxies, TLS 1.0-only, expired, implicit-TLS IMAP, and hostile servers) at a 2 s interval.
Memory (RSS and PSS) of every agent process, threads, file descriptors and worker restarts at 1 minute
and at the end; a table on stdout. Not a test: run it by hand. (Path tracing is off: no raw sockets needed.)

Measured with --minutes 3 (2 cores shared): agent 33.0 -> 33.6 MB RSS (24.2 -> 25.1 PSS), 17 threads, 10 fds;
worker 46.6 -> 47.7 MB RSS (32.7 -> 33.7 PSS), 7 threads, 4 fds; 0 worker restarts.

    PYTHONPATH=$PWD/.mypy python3 bench/soak.py --minutes 10"""

from __future__ import annotations

import argparse
import contextlib
import re
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

import psutil
from relaywatch.lab.hostile import hostile
from relaywatch.lab.pki import make_lab_pki
from relaywatch.lab.proxies import Resigner, Stripper
from relaywatch.lab.servers import LabServer, Mail, server_context

TARGETS = 50


def _port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _sample(agent: psutil.Process, url: str) -> list[tuple[str, float, float, int, int]]:
    rows = []
    for p in [agent, *agent.children(recursive=True)]:
        with contextlib.suppress(psutil.Error):
            mem = p.memory_full_info()
            cmd = " ".join(p.cmdline())
            name = "worker" if "run.worker" in cmd else "path worker" if "path" in cmd else "agent"
            rows.append((name, mem.rss / 2**20, mem.pss / 2**20, p.num_threads(), p.num_fds()))
    return rows


def _restarts(url: str) -> int:
    with urllib.request.urlopen(url + "/metrics", timeout=10) as r:
        text = r.read().decode()
    m = re.search(r"^relaywatch_probe_worker_restarts_total (\S+)$", text, re.M)
    return int(float(m.group(1))) if m else -1


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10.0)
    args = ap.parse_args()
    pki = make_lab_pki()
    with tempfile.TemporaryDirectory(prefix="relaywatch-soak-") as tmp, contextlib.ExitStack() as stack:
        d = Path(tmp)
        profile = pki.write(d)
        ctx = server_context(pki.relay, [pki.issuing])

        def serve(handler: object) -> int:
            return stack.enter_context(LabServer(handler, "127.0.0.1")).port  # type: ignore[arg-type]

        old_ctx = server_context(pki.relay, [pki.issuing], tls_max="1.0")
        relay = serve(Mail("smtp", ctx))
        up = ("127.0.0.1", relay)
        makers = [
            lambda: f"smtp://127.0.0.1:{serve(Mail('smtp', ctx))}",
            lambda: f"smtp://127.0.0.1:{serve(Resigner(up, pki.interception_ca))}",
            lambda: f"smtp://127.0.0.1:{serve(Resigner(up, pki.unknown_ca))}",
            lambda: f"smtp://127.0.0.1:{serve(Stripper(up, 'masked'))}",
            lambda: f"smtp://127.0.0.1:{serve(Mail('smtp', old_ctx))}",
            lambda: f"imaps://127.0.0.1:{serve(Mail('imap', ctx, implicit_tls=True))}",
            lambda: (
                f"smtp://127.0.0.1:{serve(Mail('smtp', server_context(pki.expired_relay, [pki.issuing])))}"
            ),
            lambda: f"smtp://127.0.0.1:{stack.enter_context(hostile('close_after_greeting')).port}",
            lambda: f"smtp://127.0.0.1:{stack.enter_context(hostile('long_chain')).port}",
            lambda: f"smtp://127.0.0.1:{stack.enter_context(hostile('banner')).port}",
        ]
        targets = [makers[i % len(makers)]() for i in range(TARGETS)]
        cfg = d / "relaywatch.yml"
        cfg.write_text(
            f"interval: 2s\ntimeout: 5s\nprofile: {profile}\npath: {{enabled: false}}\ntargets:\n"
            + "".join(f"  - {t}\n" for t in targets)
        )
        port = _port()
        url = f"http://127.0.0.1:{port}"
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "relaywatch", "run", "--config.file", str(cfg)),
                *("--web.listen-address", f"127.0.0.1:{port}", "--events.file", str(d / "events.jsonl")),
                *("--state.dir", str(d / "state")),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        try:
            agent = psutil.Process(proc.pid)
            marks = sorted({1.0, args.minutes})
            start = time.monotonic()
            table = []
            for minute in marks:
                while time.monotonic() - start < minute * 60:
                    if proc.poll() is not None:
                        raise SystemExit(f"the agent exited with {proc.returncode}")
                    time.sleep(1)
                for row in _sample(agent, url):
                    table.append((minute, *row))
                table.append((minute, "restarts", _restarts(url), 0.0, 0, 0))
        finally:
            proc.terminate()
            proc.wait(20)
    print(f"{TARGETS} lab targets, interval 2s, {args.minutes:g} minutes")
    print(f"{'minute':>6} {'process':12} {'RSS MB':>7} {'PSS MB':>7} {'threads':>7} {'fds':>5}")
    for minute, name, rss, pss, threads, fds in table:
        if name == "restarts":
            print(f"{minute:6g} {'worker restarts':12} {rss:>7}")
        else:
            print(f"{minute:6g} {name:12} {rss:7.1f} {pss:7.1f} {threads:7d} {fds:5d}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
