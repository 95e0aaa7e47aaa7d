"""Typed evidence: JSON is derived from the models and reads back to the same value, for every verdict
the lab produces (plus path and host evidence, and hostile chains); the worker's frames decode only
into those types."""

from __future__ import annotations

import dataclasses
import json
import os
import socket
import struct
import sys
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.codec import CodecError, decode, encode
from relaywatch.host.model import HostReport, LocalProcess, StoreCA
from relaywatch.lab.demo import running_lab
from relaywatch.lab.hostile import hostile
from relaywatch.model import ProbeResult, Verdict
from relaywatch.path.judge import judge
from relaywatch.path.model import Hop, PathTrace, SentSyn
from relaywatch.pipeline import check_all
from relaywatch.probe.limits import Limits
from relaywatch.probe.options import ProbeOptions
from relaywatch.run.messages import Reply
from relaywatch.target import parse_target

from tests.support import modules_without_site

FUZZ = int(os.environ.get("RELAYWATCH_FUZZ_EXAMPLES", "300"))

TRACE = PathTrace(
    "192.0.2.10",
    25,
    (
        Hop(1, "198.51.100.1", 0.2, "time_exceeded", ("mss_rewritten:1460->1200",)),
        Hop(2, "192.0.2.10", 0.4, "syn_ack"),
    ),
    (Hop(1, "198.51.100.1", 0.2, "time_exceeded"), Hop(2, "192.0.2.10", 0.5, "echo_reply")),
    62,
    62,
    SentSyn(1460, 64240, 7),
)
HOST = HostReport(
    (LocalProcess(42, "AvastSvc", "/opt/avast/AvastSvc", "Avast"),),
    (
        StoreCA(
            "CN=Avast Web/Mail Shield Root",
            "Avast Web/Mail Shield Root",
            "ab" * 32,
            "/etc/ssl",
            "Avast",
            False,
        ),
    ),
    (),
    ("/etc/ssl/certs",),
)


@pytest.fixture(scope="module")
def lab_results() -> list[ProbeResult]:
    closed = socket.socket()
    closed.bind(("127.0.0.1", 0))
    port = closed.getsockname()[1]
    closed.close()  # nothing listens there: unreachable
    with running_lab() as lab, hostile("garbage") as bad:
        targets = [s.target for s in lab.scenarios] + [
            f"smtp://127.0.0.1:{port}",
            f"smtp://127.0.0.1:{bad.port}",
        ]
        pairs = [(parse_target(t), lab.profile) for t in targets]
        results = check_all(pairs, ProbeOptions(limits=Limits().with_timeout(5), first_address=True))
    assert {r.verdict for r in results} == set(Verdict)  # every verdict the lab can produce
    return [
        dataclasses.replace(r, path=judge(TRACE), host=HOST) if i == 0 else r for i, r in enumerate(results)
    ]


@pytest.mark.peers
def test_public_json_reads_back_to_the_same_result(lab_results: list[ProbeResult]) -> None:
    for r in lab_results:
        text = json.dumps(r.to_dict())
        back = ProbeResult.from_dict(json.loads(text))
        assert back == r, r.verdict
        assert back.to_dict() == r.to_dict()


@pytest.mark.peers
def test_worker_frames_read_back_to_the_same_results(lab_results: list[ProbeResult]) -> None:
    reply = Reply(7, True, results=tuple(lab_results))
    assert decode(encode(reply), Reply) == reply


@pytest.mark.peers
def test_unreadable_certificates_travel_as_presented_pem(lab_results: list[ProbeResult]) -> None:
    r = lab_results[1]
    assert r.record.tls is not None
    broken = dataclasses.replace(r.record.tls, chain_der=(*r.record.tls.chain_der, b"\x30\x03\x02\x01\x00"))
    mangled = dataclasses.replace(r, record=dataclasses.replace(r.record, tls=broken))
    d = mangled.to_dict()
    assert len(d["presented_pem"]) == len(broken.chain_der)
    assert ProbeResult.from_dict(d) == mangled


@pytest.mark.peers
def test_the_agent_process_writes_evidence_without_hashlib(
    lab_results: list[ProbeResult], tmp_path: Path
) -> None:
    """The main process decodes the worker's results and writes them to the evidence log (to_dict, which
    tells a presented chain from the analysed one): all without hashlib, so without the system's
    libcrypto (model._chain_is_presented compares certificate bytes)."""
    frame = tmp_path / "reply.json"
    frame.write_bytes(encode(Reply(7, True, results=tuple(lab_results))))
    mods = modules_without_site(
        "import json, relaywatch.run.agent\n"
        "from relaywatch.codec import decode\n"
        "from relaywatch.run.messages import Reply\n"
        f"reply = decode(open({str(frame)!r}, 'rb').read(), Reply)\n"
        "assert reply.results and all('presented_pem' not in r.to_dict() for r in reply.results)\n"
        "json.dumps([r.to_dict() for r in reply.results])\n"
    )
    assert not {"hashlib", "_hashlib", "ssl"} & mods


def test_from_dict_refuses_what_is_not_a_result() -> None:
    for doc in ({}, {"target": 1}, {"verdict": "intercepted"}):
        with pytest.raises(ValueError):
            ProbeResult.from_dict(doc)


_VALID = encode(Reply(1, False, "error", "boom"))


@settings(max_examples=FUZZ, derandomize=True, deadline=None)
@given(
    st.binary(max_size=300)
    | st.builds(
        lambda i, b: _VALID[:i] + b + _VALID[i + 1 :], st.integers(0, len(_VALID)), st.binary(max_size=8)
    )
)
def test_the_reply_decoder_raises_only_codec_errors(data: bytes) -> None:
    try:
        reply = decode(data, Reply)
    except CodecError:
        return
    assert isinstance(reply, Reply) and isinstance(reply.rid, int) and isinstance(reply.ok, bool)


@settings(max_examples=FUZZ, derandomize=True, deadline=None)
@given(
    st.recursive(
        st.none() | st.booleans() | st.integers() | st.text(max_size=20),
        lambda c: (
            st.lists(c, max_size=4)
            | st.dictionaries(
                st.sampled_from(["rid", "ok", "results", "host", "profile", "error", "x"]), c, max_size=5
            )
        ),
        max_leaves=20,
    )
)
def test_json_of_any_shape_is_refused_or_typed(doc: object) -> None:
    try:
        reply = decode(json.dumps(doc).encode(), Reply)
    except CodecError:
        return
    assert isinstance(reply, Reply)


def encode_frame(doc: object) -> bytes:
    body = json.dumps(doc).encode()
    return struct.pack(">I", len(body)) + body


# A stand-in for a compromised worker: it answers the first request with FRAME.
def _bad_worker(frame: bytes) -> list[str]:
    code = (
        "import struct, sys\n"
        "head = sys.stdin.buffer.read(4)\n"
        "sys.stdin.buffer.read(struct.unpack('>I', head)[0])\n"
        f"sys.stdout.buffer.write({frame!r}); sys.stdout.buffer.flush()\n"
        "sys.stdin.buffer.read()\n"
    )
    return [sys.executable, "-c", code]


@pytest.mark.peers
@pytest.mark.parametrize(
    "frame",
    [
        struct.pack(">I", 2) + b"{]",  # not JSON
        struct.pack(">I", 30) + b'{"rid": 1, "ok": "yes", "x": 1}',  # JSON of another shape
        struct.pack(">I", 1 << 30),  # a frame of 1 GiB announced
        encode_frame({"rid": 1, "ok": True, "results": [{"record": "__import__('os')"}]}),
    ],
)
def test_a_worker_that_breaks_the_protocol_is_replaced(
    frame: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    from relaywatch.analysis.profile_ref import ProfileRef
    from relaywatch.run.client import Worker, WorkerError

    worker = Worker(1, command=_bad_worker(frame))
    ref = ProfileRef("lab", "1", "/nonexistent", ())
    try:
        with pytest.raises(WorkerError):
            worker.probe(
                parse_target("smtp://127.0.0.1:9"), ref, ProbeOptions(limits=Limits().with_timeout(2))
            )
        assert worker.protocol_errors == 1
        assert "malformed frame" in caplog.text
        first = worker._proc
        with pytest.raises(WorkerError):  # the next request starts a new worker
            worker.probe(
                parse_target("smtp://127.0.0.1:9"), ref, ProbeOptions(limits=Limits().with_timeout(2))
            )
        assert worker._proc is not first and worker.restarts == 1
    finally:
        worker.stop()
