"""Membership search work on hostile chains: CPU, visits and signature checks per analysis.

Why: CAs sharing a name and key, signing each other, made the search factorial (N=8: 5 s CPU, N=12 never
finished), stalling the probe worker. The search now has a budget (membership.MAX_VISITS,
MAX_SIGNATURES); this prints what each maze costs, with the whole offline analysis's CPU beside it.

    python3 bench/membership_maze.py [N ...]     # default 4 8 15 (15 CAs + the leaf: the probe's limit)

Two mazes per N: `same-key` (N certificates, one name and one key) and `keys` (N certificates spread
over ceil(sqrt(N)) keys under one name, each certified by the others: the one that runs into the budget).
"""

from __future__ import annotations

import datetime as dt
import math
import sys
import tempfile
import time
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from relaywatch.analysis.membership import _memo, membership
from relaywatch.analysis.profile import load_profile
from relaywatch.cli import analyze_chain
from relaywatch.lab import pki
from relaywatch.target import parse_target

NOW = dt.datetime.now(dt.UTC)


def ca(
    name: x509.Name, key: ec.EllipticCurvePrivateKey, signer: ec.EllipticCurvePrivateKey, n: int
) -> x509.Certificate:
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(n)
        .not_valid_before(NOW - dt.timedelta(days=1))
        .not_valid_after(NOW + dt.timedelta(days=30))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(signer, hashes.SHA256())
    )


def maze(n: int, keys: int) -> list[x509.Certificate]:
    ks = [ec.generate_private_key(ec.SECP256R1()) for _ in range(keys)]
    name = pki._name("Maze CA")
    pairs = [(k, s) for k in ks for s in ks if s is not k] or [(ks[0], ks[0])]
    certs = [ca(name, *pairs[i % len(pairs)], i + 1) for i in range(n)]
    leaf = pki.make_leaf(pki.Issued(certs[0], pairs[0][0]), pki.LAB_NAMES)
    return [leaf.cert, *certs]


def main(sizes: list[int]) -> None:
    profile = load_profile(str(pki.make_lab_pki().write(Path(tempfile.mkdtemp()))))
    target = parse_target("smtp://smtp.relaywatch.test:25")
    print(
        f"{'maze':10s} {'N':>3s} {'visits':>7s} {'sigs':>5s} {'cut':>5s} "
        f"{'search ms':>10s} {'analysis ms':>12s} verdict"
    )
    for n in sizes:
        for label, keys in (("same-key", 1), ("keys", max(2, math.ceil(math.sqrt(n))))):
            chain = maze(n, keys)
            _memo.clear()
            t = time.process_time()
            m = membership(chain, profile.pool)
            search = time.process_time() - t
            _memo.clear()
            t = time.process_time()
            verdict = analyze_chain(chain, target, profile, NOW).analysis.verdict.value
            total = time.process_time() - t
            print(
                f"{label:10s} {n:3d} {m.visits:7d} {m.signatures:5d} {m.cut!s:>5s} "
                f"{search * 1000:10.1f} {total * 1000:12.1f} {verdict}"
            )


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [4, 8, 15])
