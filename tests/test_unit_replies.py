"""Reading what a server says, over a real socket pair: SMTP replies, IMAP and POP3 responses, and the
bounds that make a hostile server a verdict instead of a hang or a flood."""

from __future__ import annotations

import time

import pytest
from relaywatch.probe.connect import MAX_TRANSCRIPT_LINES
from relaywatch.probe.imap import IMAP
from relaywatch.probe.limits import Limits, ProbeError
from relaywatch.probe.pop3 import POP3
from relaywatch.probe.smtp import SMTP, Reply, read_reply

from tests.support import client_sent, scripted

SMALL = Limits(timeout=2.0, phase_timeout=2.0, max_line=64, max_reply_lines=5, max_dialogue_bytes=1024)

# --------------------------------------------------------------------------- the line reader


def test_lines_end_at_crlf_or_lf_and_are_kept_in_the_transcript() -> None:
    with scripted(b"220 a\r\n250 b\n") as (chan, _):
        assert (chan.read_line(), chan.read_line()) == ("220 a", "250 b")
    assert [(t.direction, t.text) for t in chan.transcript] == [("S", "220 a"), ("S", "250 b")]


def test_invalid_utf8_is_replaced_not_fatal() -> None:
    with scripted(b"220 \xff\xfe ok\r\n") as (chan, _):
        assert chan.read_line() == "220 \ufffd\ufffd ok"


def test_a_line_longer_than_the_cap_is_a_protocol_error() -> None:
    with scripted(b"220 " + b"A" * 200 + b"\r\n", SMALL) as (chan, _), pytest.raises(ProbeError) as err:
        chan.read_line()
    assert (err.value.phase, err.value.kind) == ("ehlo", "protocol") and "longer than 64" in err.value.message
    assert chan.transcript[-1].text.endswith("...")  # a preview is kept as evidence


def test_a_line_without_end_is_cut_at_the_cap_too() -> None:
    with scripted(b"A" * 200, SMALL, hang_up=False) as (chan, _), pytest.raises(ProbeError) as err:
        chan.read_line()
    assert "longer than 64" in err.value.message


def test_the_whole_dialogue_is_bounded() -> None:
    flood = b"".join(b"250-%d\r\n" % i for i in range(400))
    limits = Limits(timeout=2.0, phase_timeout=2.0, max_dialogue_bytes=1024)
    with scripted(flood, limits) as (chan, _), pytest.raises(ProbeError) as err:
        while True:
            chan.read_line()
    assert "more than 1024 bytes" in err.value.message


def test_the_transcript_is_bounded() -> None:
    with scripted(b"x\n" * (MAX_TRANSCRIPT_LINES + 50)) as (chan, _):
        for _ in range(MAX_TRANSCRIPT_LINES + 50):
            chan.read_line()
    assert len(chan.transcript) == MAX_TRANSCRIPT_LINES + 1
    assert chan.transcript[-1].text == "transcript truncated"
    with scripted(b"y" * 5000 + b"\n") as (chan, _):
        chan.read_line()
    assert len(chan.transcript[0].text) == 1024


def test_hang_up_mid_line_keeps_what_was_sent() -> None:
    with scripted(b"220 half a gre") as (chan, _), pytest.raises(ProbeError) as err:
        chan.read_line()
    assert err.value.kind == "protocol" and "closed" in err.value.message
    assert chan.transcript[-1].text == "220 half a gre"


def test_silence_times_out_within_the_phase_deadline() -> None:
    limits = Limits(timeout=5.0, phase_timeout=0.3)
    start = time.monotonic()
    with (
        scripted(b"", limits, phase="greeting", hang_up=False) as (chan, _),
        pytest.raises(ProbeError) as err,
    ):
        chan.read_line()
    assert (err.value.phase, err.value.kind) == ("greeting", "timeout")
    assert time.monotonic() - start < 2.0


def test_bytes_after_the_last_line_are_handed_over() -> None:
    """Before a TLS handshake there must be none: the probe notes and discards them."""
    with scripted(b"220 go ahead\r\n\x16\x03\x01") as (chan, _):
        chan.read_line()
        assert chan.take_buffer() == b"\x16\x03\x01" and chan.take_buffer() == b""


# --------------------------------------------------------------------------- SMTP


@pytest.mark.parametrize(
    ("data", "reply"),
    [
        (b"220 mx.contoso.test ESMTP\r\n", Reply(220, ("mx.contoso.test ESMTP",))),
        (b"250-mx\r\n250-PIPELINING\r\n250 STARTTLS\r\n", Reply(250, ("mx", "PIPELINING", "STARTTLS"))),
        (b"250\r\n", Reply(250, ("",))),
        (b"421-4.3.2 busy\r\n421 4.3.2 try later\r\n", Reply(421, ("4.3.2 busy", "4.3.2 try later"))),
    ],
)
def test_smtp_replies(data: bytes, reply: Reply) -> None:
    with scripted(data) as (chan, _):
        assert read_reply(chan) == reply


@pytest.mark.parametrize(
    ("data", "why"),
    [
        (b"250-a\r\n251 b\r\n", "reply code changed"),
        ("²²⁰ looks like digits\r\n".encode(), "not an SMTP reply"),
        (b"220_mx\r\n", "not an SMTP reply"),
        (b"HTTP/1.1 400 Bad Request\r\n", "not an SMTP reply"),
        (b"".join(b"250-x\r\n" for _ in range(6)), "longer than 5 lines"),
    ],
)
def test_malformed_smtp_replies_are_protocol_errors(data: bytes, why: str) -> None:
    with scripted(data, SMALL) as (chan, _), pytest.raises(ProbeError) as err:
        read_reply(chan)
    assert err.value.kind == "protocol" and why in err.value.message


def test_ehlo_returns_the_keywords_and_sends_the_name() -> None:
    with scripted(b"250-mx greets you\r\n250-SIZE 157286400\r\n250-STARTTLS \r\n250 8BITMIME\r\n") as (
        chan,
        far,
    ):
        caps = SMTP("probe.contoso.test").capabilities(chan)
        assert client_sent(far) == ["EHLO probe.contoso.test"]
    assert caps == ("SIZE 157286400", "STARTTLS", "8BITMIME")


def test_ehlo_not_understood_means_no_extensions() -> None:
    with scripted(b"502 5.5.2 command not implemented\r\n") as (chan, _):
        assert SMTP("p").capabilities(chan) == ()


@pytest.mark.parametrize("data", [b"421 4.3.2 Service not available\r\n", b"550 5.7.1 name refused\r\n"])
def test_ehlo_refused_is_an_error_not_an_empty_list(data: bytes) -> None:
    """Throttling is no sign of stripping: it must not read as 'no STARTTLS offered'."""
    with scripted(data) as (chan, _), pytest.raises(ProbeError) as err:
        SMTP("p").capabilities(chan)
    assert "EHLO refused" in err.value.message and data[:3].decode() in err.value.message


def test_greeting_other_than_220_refuses_the_session() -> None:
    data = b"554 5.7.1 no service for you\r\n"
    with scripted(data, phase="greeting") as (chan, _), pytest.raises(ProbeError) as err:
        SMTP("p").greeting(chan)
    assert err.value.phase == "greeting" and "554" in err.value.message


@pytest.mark.parametrize(
    ("data", "upgrade"),
    [(b"220 2.0.0 SMTP server ready\r\n", True), (b"454 4.7.0 TLS not available\r\n", False)],
)
def test_smtp_starttls_answer(data: bytes, upgrade: bool) -> None:
    with scripted(data) as (chan, far):
        assert SMTP("p").starttls(chan) == (upgrade, data.decode().strip())
        assert client_sent(far) == ["STARTTLS"]


# --------------------------------------------------------------------------- IMAP


@pytest.mark.parametrize("greeting", [b"* OK IMAP4rev1 ready\r\n", b"* PREAUTH logged in\r\n", b"* ok x\r\n"])
def test_imap_greetings(greeting: bytes) -> None:
    with scripted(greeting) as (chan, _):
        IMAP().greeting(chan)


def test_imap_greeting_of_another_protocol_is_refused() -> None:
    with scripted(b"+OK POP3 ready\r\n") as (chan, _), pytest.raises(ProbeError) as err:
        IMAP().greeting(chan)
    assert "not an IMAP greeting" in err.value.message


def test_imap_capabilities_from_untagged_and_status_text_without_repeats() -> None:
    data = b"* CAPABILITY IMAP4rev1 STARTTLS LOGINDISABLED\r\nrw1 OK [CAPABILITY IMAP4rev1 IDLE] done\r\n"
    with scripted(data) as (chan, far):
        caps = IMAP().capabilities(chan)
        assert client_sent(far) == ["rw1 CAPABILITY"]
    assert caps == ("IMAP4rev1", "STARTTLS", "LOGINDISABLED", "IDLE")


def test_imap_tags_advance_per_command() -> None:
    imap = IMAP()
    with scripted(b"rw1 OK done\r\nrw2 OK Begin TLS negotiation now\r\n") as (chan, far):
        imap.capabilities(chan)
        assert imap.starttls(chan) == (True, "OK Begin TLS negotiation now")
        assert client_sent(far) == ["rw1 CAPABILITY", "rw2 STARTTLS"]


def test_imap_starttls_refused() -> None:
    with scripted(b"rw1 BAD STARTTLS not permitted\r\n") as (chan, _):
        assert IMAP().starttls(chan) == (False, "BAD STARTTLS not permitted")


def test_imap_garbage_and_endless_untagged_responses_are_errors() -> None:
    with scripted(b"hello there\r\n") as (chan, _), pytest.raises(ProbeError) as err:
        IMAP().capabilities(chan)
    assert "not an IMAP response" in err.value.message
    with scripted(b"* x\r\n" * 10, SMALL) as (chan, _), pytest.raises(ProbeError) as err:
        IMAP().capabilities(chan)
    assert "line cap" in err.value.message


# --------------------------------------------------------------------------- POP3


def test_pop3_greeting() -> None:
    with scripted(b"+OK POP3 ready\r\n") as (chan, _):
        POP3().greeting(chan)
    with scripted(b"-ERR go away\r\n") as (chan, _), pytest.raises(ProbeError) as err:
        POP3().greeting(chan)
    assert "not a POP3 greeting" in err.value.message


def test_pop3_capa_list_ends_at_the_dot() -> None:
    with scripted(b"+OK Capability list follows\r\nTOP\r\nSTLS\r\nSASL PLAIN\r\n.\r\n+OK\r\n") as (chan, far):
        assert POP3().capabilities(chan) == ("TOP", "STLS", "SASL PLAIN")
        assert client_sent(far) == ["CAPA"]
        assert chan.take_buffer() == b"+OK\r\n"  # nothing read past the list


def test_pop3_without_capa_has_no_capabilities() -> None:
    with scripted(b"-ERR unknown command\r\n") as (chan, _):
        assert POP3().capabilities(chan) == ()


def test_pop3_capa_without_end_is_bounded() -> None:
    with scripted(b"+OK\r\n" + b"X\r\n" * 10, SMALL) as (chan, _), pytest.raises(ProbeError) as err:
        POP3().capabilities(chan)
    assert "longer than the line cap" in err.value.message


@pytest.mark.parametrize(("data", "upgrade"), [(b"+OK Begin TLS\r\n", True), (b"-ERR not now\r\n", False)])
def test_pop3_stls_answer(data: bytes, upgrade: bool) -> None:
    with scripted(data) as (chan, far):
        assert POP3().starttls(chan) == (upgrade, data.decode().strip())
        assert client_sent(far) == ["STLS"]
