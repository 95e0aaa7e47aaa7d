"""scapy without the tables the tracer never reads. Imported by path/trace.py before any scapy import: the
import is the whole effect (in the tracer's own process, see path/worker.py). Figures: scapy 2.8.0, a fresh
`import relaywatch.path.trace`, /proc/self/smaps_rollup; in all 37.4 -> 19.3 MB Pss_Anon, RSS 54.7 -> 30.3.

`import scapy.layers.inet` has scapy/data.py build the manufacturer (OUI) table: from Wireshark's `manuf`
file when the host has one, else from `scapy.libs.manuf` (about 12.5 MiB of Python objects), and the
Bluetooth company ids (`scapy.libs.bluetoothids`). The tracer names no MAC vendor, so this module gives
those two modules empty DATA: 37.4 -> 21.8 MB Pss_Anon (RSS 54.7 -> 39.2). A host with Wireshark's manuf
file (e.g. /usr/share/wireshark/manuf) still pays for that file: scapy reads it instead (not measured).

scapy also keeps those tables as pickles in $XDG_CACHE_HOME/scapy (~/.cache/scapy): with the empty stubs it
would write an empty manufdb.pickle there, for every scapy program of this user, and it would unpickle a
full one (12 MB again, and a pickle load in a root process). So scapy's cache is off here: scapy.main
computes its cache folder once, at import, and has none (SCAPY_CACHE_FOLDER = None, nothing read or
written) when XDG_CACHE_HOME cannot be created; it is pointed under /dev/null for that import only, then
restored (children such as tcpdump see the environment unchanged). The stubs go in only when the cache
is off, and only when scapy has not yet loaded its data: in a process that imported scapy before, nothing
changes.

scapy.config probes the optional cryptography package (conf.crypto_valid, an X25519 key generated) when it
is first imported; the tracer uses no scapy layer that needs it (TLS, IPsec, Kerberos...), so cryptography
is made unimportable for that one import (a None entry in sys.modules, the import system's documented
"not available"), then importable again: 21.8 -> 19.3 MB Pss_Anon, RSS 39.2 -> 30.3 (most of it the mapped
cryptography/OpenSSL library). scapy then has conf.crypto_valid False, as on a host without cryptography.

scapy also reads both routing tables (IPv4 and IPv6) when its route modules are imported, through rtnetlink
messages dissected by its own packet classes: about 45 and 65 ms of CPU on this machine. They are not read
at import here; path/trace.py reads the table of the family it traces, once per process.
Not thread-safe: import this module before starting threads that import cryptography."""

from __future__ import annotations

import contextlib
import os
import sys
import types
from collections.abc import Iterator

UNCREATABLE = "/dev/null/relaywatch-no-scapy-cache"  # under a file: mkdir fails, so scapy caches nothing
EMPTY_TABLES: dict[str, object] = {"scapy.libs.manuf": "", "scapy.libs.bluetoothids": {}}


@contextlib.contextmanager
def _environ(name: str, value: str) -> Iterator[None]:
    old = os.environ.get(name)
    os.environ[name] = value
    try:
        yield
    finally:
        if old is None:
            os.environ.pop(name, None)
        else:
            os.environ[name] = old


@contextlib.contextmanager
def _unimportable(name: str) -> Iterator[None]:
    if name in sys.modules:  # already loaded: nothing to save
        yield
        return
    sys.modules[name] = None  # type: ignore[assignment]  # import system: "import name" raises ImportError
    try:
        yield
    finally:
        if name in sys.modules and sys.modules[name] is None:
            del sys.modules[name]


def _prepare() -> None:
    with _environ("XDG_CACHE_HOME", UNCREATABLE):
        import scapy.main  # its cache folder is computed now (or was, by an earlier import: then kept)

    if scapy.main.SCAPY_CACHE_FOLDER is None and "scapy.data" not in sys.modules:
        for name, data in EMPTY_TABLES.items():
            if name not in sys.modules:
                stub = types.ModuleType(name, "Empty in the path tracer: see relaywatch.path.scapy_lite.")
                stub.DATA = data  # type: ignore[attr-defined]
                sys.modules[name] = stub
    with _unimportable("cryptography"):
        import scapy.config  # conf probes cryptography when its class is built: now
    # read when scapy.route and scapy.route6 are imported, unless turned off first: trace.py reads the one
    # table of the family it traces, when it traces
    scapy.config.conf.route_autoload = scapy.config.conf.route6_autoload = False


_prepare()
