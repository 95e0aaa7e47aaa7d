import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from relaywatch.target import TargetError, parse_allow_pattern, parse_target


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port"),
    [
        ("smtp.office365.com", "smtp", "smtp.office365.com", 587),
        ("contoso.mail.protection.outlook.com:25", "smtp", "contoso.mail.protection.outlook.com", 25),
        ("relay:2525", "smtp", "relay", 2525),
        ("relay:465", "smtps", "relay", 465),
        ("outlook.office365.com:143", "imap", "outlook.office365.com", 143),
        ("outlook.office365.com:993", "imaps", "outlook.office365.com", 993),
        ("h:110", "pop3", "h", 110),
        ("h:995", "pop3s", "h", 995),
        ("h:443", "tls", "h", 443),
        ("h:8443", "tls", "h", 8443),
        ("imap://h", "imap", "h", 143),
        ("pop3s://h", "pop3s", "h", 995),
        ("tls://h:25", "tls", "h", 25),
        ("smtps://[::1]:10465", "smtps", "::1", 10465),
        ("[::1]:25", "smtp", "::1", 25),
        ("SMTP.Office365.COM.", "smtp", "smtp.office365.com", 587),
    ],
)
def test_forms_and_port_defaults(text: str, scheme: str, host: str, port: int) -> None:
    t = parse_target(text)
    assert (t.scheme, t.host, t.port) == (scheme, host, port)


def test_protocol_and_starttls_follow_scheme() -> None:
    assert parse_target("imap://h").starttls and parse_target("imap://h").protocol == "imap"
    assert not parse_target("imaps://h").starttls
    assert parse_target("tls://h").protocol == "tls"


@pytest.mark.parametrize("text", ["", "ftp://h", "h:x", "h:0", "h:70000", "bad host", "smtp://h/p", "a..b"])
def test_bad_targets_are_refused(text: str) -> None:
    with pytest.raises(TargetError):
        parse_target(text)


# --- the /probe allow-list decides on the parsed target (issue 10, item 1) ---------------------------

ALLOW = parse_allow_pattern("*.mail.protection.outlook.com:2525")


@pytest.mark.parametrize(
    "text",
    [
        "smtp://[::1].mail.protection.outlook.com:2525",
        "smtp://[::ffff:127.0.0.1].mail.protection.outlook.com:2525",
        "smtp://[::1]x.mail.protection.outlook.com:2525",
        "tls://[::1].mail.protection.outlook.com:2525",
        "smtp://user@x.mail.protection.outlook.com:2525",
        "smtp://x.mail.protection.outlook.com:2525@127.0.0.1",
        "smtp://x.mail.protection.outlook.com:2525/path",
        "smtp://x.mail.protection.outlook.com:2525?q",
        "smtp://x.mail.protection.outlook.com%2f:2525",
        "smtp://x.mail.protection.outlook.com..:2525",
        "[x",
        "[]",
        "[",
        "h:²5",
        "h:+25",
        "smtp://::1:25",
        "smtp://[fe80::1%eth0]:25",
        "127.1:25",
        "0x7f.1:25",
        "a\tb:25",
        "x" * 400,
    ],
)
def test_hostile_targets_are_refused_with_a_message(text: str) -> None:
    with pytest.raises(TargetError) as info:
        parse_target(text)
    assert "\n" not in str(info.value) and len(str(info.value)) < 300


def test_patterns_match_normalised_hosts_only() -> None:
    assert ALLOW.matches(parse_target("smtp://Contoso.MAIL.protection.outlook.com.:2525"))
    assert not ALLOW.matches(parse_target("smtp://mail.protection.outlook.com:2525"))  # the suffix itself
    assert not ALLOW.matches(parse_target("smtp://evilmail.protection.outlook.com:2525"))  # a look-alike
    assert not ALLOW.matches(parse_target("smtp://x.mail.protection.outlook.com:25"))
    assert not ALLOW.matches(parse_target("smtp://[::1]:2525"))  # IP literals only where a pattern names them
    ips = parse_allow_pattern("smtps://127.0.0.*:*")
    assert ips.matches(parse_target("smtps://127.0.0.9:10465"))
    assert ips.matches(parse_target("smtps://[::ffff:127.0.0.9]:10465"))  # the address it reaches
    assert not ips.matches(parse_target("smtp://127.0.0.9:10465"))
    assert not ips.matches(parse_target("smtps://127.0.0.9.nip.io:10465"))
    assert parse_allow_pattern("relay.example:25").matches(parse_target("relay.example:25"))
    default = parse_allow_pattern("smtp://relay.example")
    assert default.matches(parse_target("relay.example")) and not default.matches(
        parse_target("relay.example:25")
    )


def test_idna_names_are_normalised() -> None:
    assert parse_target("smtp://bücher.example:25").host == "xn--bcher-kva.example"


@pytest.mark.parametrize("text", ["ftp://x", "*.:25", "300.1.1.1", "127.0.0.*.*", "[::1"])
def test_bad_patterns_are_refused(text: str) -> None:
    with pytest.raises(TargetError):
        parse_allow_pattern(text)


_CHARS = st.sampled_from([*"abcx.-:[]@/%*_09", "::1", "::ffff:", "127.0.0.1", ".mail.protection.outlook.com"])


@settings(
    max_examples=int(os.environ.get("RELAYWATCH_FUZZ_EXAMPLES", "400")), derandomize=True, deadline=None
)
@given(
    prefix=st.sampled_from(["", "smtp://", "tls://", "smtps://", "SMTP://"]),
    body=st.lists(_CHARS, max_size=12),
)
def test_whatever_parses_and_matches_has_its_host_inside_the_pattern(prefix: str, body: list[str]) -> None:
    text = prefix + "".join(body) + ".mail.protection.outlook.com:2525"
    try:
        t = parse_target(text)
    except TargetError:
        return
    if ALLOW.matches(t):
        assert t.host.endswith(".mail.protection.outlook.com") and t.port == 2525
        assert ipaddress_or_none(t.host) is None
        assert all(c.isalnum() or c in "-._" for c in t.host)


@settings(
    max_examples=int(os.environ.get("RELAYWATCH_FUZZ_EXAMPLES", "400")), derandomize=True, deadline=None
)
@given(st.text(max_size=80))
def test_any_text_parses_or_fails_cleanly(text: str) -> None:
    try:
        t = parse_target(text)
    except TargetError as exc:
        assert "\n" not in str(exc)
    else:
        assert 0 < t.port < 65536 and t.host == t.host.lower() and t.host


def ipaddress_or_none(host: str) -> object:
    import ipaddress

    try:
        return ipaddress.ip_address(host)
    except ValueError:
        return None


@pytest.mark.parametrize(
    ("text", "gateway"),
    [
        ("mx:contoso.com", True),
        ("contoso-com.mail.protection.outlook.com:25", True),
        ("smtp://relay.example:25", True),
        ("smtp.office365.com:587", False),
        ("outlook.office365.com:993", False),
        ("127.0.0.1:25", False),  # an address: no names to look up, no DANE
        ("relay.localhost:25", False),  # RFC 6761 names never go to DNS
        ("tls://relay.example:25", False),  # implicit TLS: not the SMTP relay port's STARTTLS
    ],
)
def test_gateway_targets_are_the_ones_dns_evidence_applies_to(text: str, gateway: bool) -> None:
    assert parse_target(text).gateway is gateway
