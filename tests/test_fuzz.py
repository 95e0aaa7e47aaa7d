"""The fuzz suite of the test run: whatever bytes a server or a file holds, the parsers end in their own
clean error or a verdict, never an unexpected exception. Examples are few and the seed fixed in the
normal run; `RELAYWATCH_FUZZ_EXAMPLES=5000 pytest tests/test_fuzz.py` goes deeper. (Target parsing,
YAML scalars, SCT lists, forged names and worker frames have their own properties in test_target.py,
test_unit_yaml_values.py, test_ct.py, test_unit_forged_names.py and test_roundtrip.py.)"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path

from cryptography.hazmat.primitives.serialization import Encoding
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from relaywatch.analysis.profile import TrustProfile
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.lab.pki import LabPKI
from relaywatch.model import Verdict
from relaywatch.probe.dialogue import Dialogue, classify
from relaywatch.probe.imap import IMAP
from relaywatch.probe.limits import Limits, ProbeError
from relaywatch.probe.pop3 import POP3
from relaywatch.probe.smtp import SMTP
from relaywatch.run.config import ConfigError, parse_config
from relaywatch.run.webconfig import load_web_config

from tests.support import judged, record, scripted

FUZZ = settings(
    max_examples=int(os.environ.get("RELAYWATCH_FUZZ_EXAMPLES", "150")),
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
LIMITS = Limits(timeout=1.0, phase_timeout=1.0, max_line=512, max_reply_lines=16, max_dialogue_bytes=4096)
_REPLY_BITS = st.sampled_from(
    [b"220 ", b"250-", b"250 ", b"STARTTLS", b"XXXXXXXA", b"* OK ", b"* CAPABILITY ", b"rw1 OK ", b"+OK",
     b".", b"\r\n", b"\n", b"\x00", b"\xff", b"AUTH LOGIN", b"421 ", b"\xc2\xb2"]
)  # fmt: skip
_REPLIES = st.lists(_REPLY_BITS | st.binary(max_size=40), max_size=40).map(b"".join)


@FUZZ
@given(_REPLIES, st.sampled_from(["smtp", "imap", "pop3"]))
def test_a_server_reply_ends_in_capabilities_or_a_probe_error(data: bytes, protocol: str) -> None:
    dialogues: dict[str, Dialogue] = {"smtp": SMTP("probe.test"), "imap": IMAP(), "pop3": POP3()}
    dialogue = dialogues[protocol]
    with scripted(data, LIMITS) as (chan, _):
        try:
            dialogue.greeting(chan)
            caps = dialogue.capabilities(chan)
        except ProbeError:
            return
        classify(caps, dialogue.starttls_keyword)  # any capabilities classify
        assert all(isinstance(c, str) and len(c) <= LIMITS.max_line for c in caps)


_YAML_BITS = st.sampled_from(
    ["targets:", " - ", "target: ", "smtp://a.test:25", "interval: ", "1s", "-1s", "profile: ", "x.yml",
     "labels: {", "}", "product: y", "probe_allow: [", "]", "'*.x:25'", "metrics: {detail: ", "true", "&a ",
     "*a", "[[[[", "\n", "  ", ": ", "dns: {resolver: ", "127.0.0.1:53", "path: {every: ", "99999999999"]
)  # fmt: skip
_YAML = st.lists(_YAML_BITS | st.text(max_size=12), max_size=30).map("".join)


@FUZZ
@given(_YAML)
def test_a_config_file_parses_or_is_one_clean_error(text: str) -> None:
    try:
        parse_config(text, "fuzz.yml", Path("/nonexistent"), profiles=_no_profiles)
    except ConfigError as exc:
        assert str(exc).startswith("fuzz.yml") and "\n" not in str(exc).strip()


def _no_profiles(spec: str) -> ProfileRef:
    if spec == "microsoft365":
        return ProfileRef("microsoft365", "1", "/builtin", ())
    raise ProfileError(f"profile {spec[:40]!r}: not in this test")


_WEB_BITS = st.sampled_from(
    ["tls_server_config:", "\n  ", "cert_file: ", "key_file: ", "client_auth_type: ",
     "RequireAndVerifyClientCert",
     "basic_auth_users:", "\n  u: ", "$2b$10$abcdefghijklmnopqrstuv", "1", "[", "]", "{", "}", "\n", ": "]
)  # fmt: skip


@FUZZ
@given(st.lists(_WEB_BITS | st.text(max_size=10), max_size=25).map("".join) | st.binary(max_size=80))
def test_a_web_config_loads_or_is_one_clean_error(content: str | bytes) -> None:
    with tempfile.NamedTemporaryFile("wb", suffix=".yml") as f:
        f.write(content.encode("utf-8", "surrogatepass") if isinstance(content, str) else content)
        f.flush()
        try:
            load_web_config(f.name)
        except ConfigError as exc:
            assert "\n" not in str(exc).strip()


@FUZZ
@given(st.data())
def test_a_mutated_certificate_is_never_the_operators(
    pki: LabPKI, lab_profile: TrustProfile, data: st.DataObject
) -> None:
    """Any byte of the relay's genuine leaf changed: the signature no longer holds, so whatever the
    parser makes of it, it is not the operator's chain (intercepted), and the analysis never raises."""
    genuine = pki.relay.cert.public_bytes(Encoding.DER)
    position = data.draw(st.integers(0, len(genuine) - 1))
    value = data.draw(st.integers(0, 255).filter(lambda v: v != genuine[position]))
    mutated = genuine[:position] + bytes([value]) + genuine[position + 1 :]
    r = judged(record(mutated, pki.issuing), lab_profile)
    assert r.verdict is Verdict.INTERCEPTED, [f.code for f in r.analysis.findings]
