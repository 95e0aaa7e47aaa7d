"""The probe worker: `python -m relaywatch.run.worker CONCURRENCY`, started and fed by the agent (client.py).

TLS, the parsing of attacker-controlled certificates and the chain analysis run here, in a process of
their own: the agent's main process stays small (no X.509 or TLS stack loaded) and a crash on hostile
input costs one worker restart, not the agent. Frames on stdin/stdout: 4-byte length, then JSON
(messages.py): what this process sends back is data, decoded against fixed types, never code."""

from __future__ import annotations

import importlib.util
import sys

# Left out of this process: a None entry makes the import fail as "not installed", which is what the
# importing libraries expect and handle. Measured on one import of the worker's modules (PSS):
# - bcrypt (0.36 MB): cryptography imports it, when installed, only to read encrypted OpenSSH keys. The
#   agent depends on it for basic auth, in its main process.
# - _hashlib (3.4 MB): hashlib's OpenSSL backend loads the system's libcrypto beside the OpenSSL that
#   cryptography carries. hashlib then uses CPython's builtin code, which cryptography (a subject key
#   identifier from a key) and dnspython (DS, NSEC3 and TSIG digests, gateway targets) hash with; this
#   worker's own hashing is analysis/digest.py. Only where that builtin code exists: some builds (FIPS
#   ones) leave it out, and there hashlib needs OpenSSL.
_SHA2 = ("_sha2",) if sys.version_info >= (3, 12) else ("_sha256", "_sha512")  # 3.12 merged the two
_BUILTIN_HASHES = ("_md5", "_sha1", "_blake2", "_sha3", *_SHA2)  # what hashlib falls back to
sys.modules.setdefault("bcrypt", None)  # type: ignore[arg-type]
if all(importlib.util.find_spec(name) is not None for name in _BUILTIN_HASHES):
    sys.modules.setdefault("_hashlib", None)  # type: ignore[arg-type]

import concurrent.futures  # noqa: E402
import os  # noqa: E402
import threading  # noqa: E402
from typing import IO  # noqa: E402

from relaywatch.analysis.profile import TrustProfile, load_profile  # noqa: E402
from relaywatch.analysis.profile_ref import ProfileError  # noqa: E402
from relaywatch.codec import decode, encode  # noqa: E402
from relaywatch.pipeline import check  # noqa: E402
from relaywatch.run.frames import read_frame, write_frame  # noqa: E402
from relaywatch.run.malloc import Trimmer, fewer_malloc_arenas  # noqa: E402
from relaywatch.run.messages import Reply, Request  # noqa: E402

# Profiles as checked when the agent (re)loaded its config, by digest: an edit on disk takes effect at
# the next reload, which checks it first, never behind the agent's back.
_checked: dict[str, TrustProfile] = {}


def _remember(profile: TrustProfile) -> None:
    if len(_checked) >= 64:  # many reloads of edited profiles: start over, the current ones come back
        _checked.clear()
    _checked[profile.digest] = profile


def handle(request: Request) -> Reply:
    kind, rid = request.kind, request.rid
    if kind == "probe" and request.probe is not None:
        target, ref, options = request.probe.target, request.probe.profile, request.probe.options
        profile = _checked.get(ref.digest)
        if profile is None:  # a new worker (the last one died): the file must still be what was checked
            profile = load_profile(ref.source)
            if profile.digest != ref.digest:
                raise ProfileError(
                    f"{ref.source} changed on disk since the config was loaded: reload to use it"
                )
            _remember(profile)
        return Reply(rid, True, results=tuple(check(target, profile, options)))
    if kind == "profile" and request.spec is not None:
        profile = load_profile(request.spec)
        _remember(profile)
        return Reply(rid, True, profile=profile.ref())
    if kind == "host":
        from relaywatch.host.inventory import inventory

        return Reply(rid, True, host=inventory())
    raise ValueError(f"unknown request {kind!r}")


def main(argv: list[str] | None = None) -> int:
    """Exec'd by the agent (or by hand): frames on stdin and stdout."""
    args = argv if argv is not None else sys.argv[1:]
    concurrency = int(args[0]) if args else 16
    return serve(sys.stdin.buffer, os.fdopen(os.dup(sys.stdout.fileno()), "wb"), concurrency)


def serve(inp: IO[bytes], out: IO[bytes], concurrency: int) -> int:
    """Requests from `inp`, replies to `out`, until `inp` ends (the agent went away or replaces this
    worker). Also the entry point of a worker forked by the agent's fork server (forkserver.py)."""
    # measured: with glibc's default arenas this worker grew 51.6 -> 59.5 MB over 65,000 probes; with one
    # arena it stays flat at about 52 MB (its own Python allocations never grew)
    fewer_malloc_arenas(1)
    # the protocol owns `out`: anything printed by accident goes to stderr instead
    sys.stdout = sys.stderr
    lock = threading.Lock()
    trimmer = Trimmer()
    pool = concurrent.futures.ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="probe")

    def run(request: Request) -> None:
        try:
            reply = handle(request)
        except ProfileError as exc:
            reply = Reply(request.rid, False, "profile", str(exc))
        except Exception as exc:  # reported to the agent, which logs it; the worker goes on
            reply = Reply(request.rid, False, "error", f"{type(exc).__name__}: {exc}")
        body = encode(reply)
        with lock:
            write_frame(out, body)
        trimmer.maybe()

    while (frame := read_frame(inp)) is not None:
        pool.submit(run, decode(frame, Request))
    pool.shutdown(wait=False, cancel_futures=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
