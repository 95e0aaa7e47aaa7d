import pytest
from relaywatch.target import TargetError, parse_target


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
