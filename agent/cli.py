"""The `relaywatch` command: check, analyze, run, demo, ct-logs."""

from __future__ import annotations

import argparse
import dataclasses
import datetime as dt
import json
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from relaywatch import __version__, protocols
from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile_ref import ProfileError
from relaywatch.export.report import render, safe
from relaywatch.model import ProbeRecord, ProbeResult, StartTLS, StartTLSState, TLSSession, Verdict
from relaywatch.probe.dnsconfig import DNSConfig, DNSSECMode, parse_resolver
from relaywatch.probe.limits import Limits
from relaywatch.probe.options import ProbeOptions
from relaywatch.run.config import ConfigError
from relaywatch.target import Target, TargetError, normalise_host, parse_target

if TYPE_CHECKING:
    from relaywatch.analysis.profile import TrustProfile
    from relaywatch.path.model import PathResult

# Each command imports what it needs: `relaywatch run` keeps the TLS and X.509 stack out of its process.

EXIT_OK, EXIT_FINDING, EXIT_USAGE, EXIT_INTERNAL = 0, 1, 2, 70


class UsageError(Exception):
    pass


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="relaywatch",
        description="Detect TLS interception, STARTTLS stripping and downgrades on the path to a mail relay.",
    )
    p.add_argument("--version", action="version", version=f"relaywatch {__version__}")
    sub = p.add_subparsers(dest="command", required=True)

    c = sub.add_parser("check", help="probe targets now and print verdicts")
    c.add_argument(
        "targets",
        nargs="+",
        metavar="TARGET",
        help=protocols.help_text(),
    )
    c.add_argument("--profile", default="microsoft365", help="trust profile: built-in name or YAML path")
    c.add_argument("--json", action="store_true", help="print a JSON list of results")
    c.add_argument("--timeout", type=float, default=10.0, help="seconds per probe (default 10)")
    c.add_argument("--ehlo-name", help="name for EHLO (default: this host's FQDN)")
    c.add_argument(
        "--address-family", type=AddressFamily, choices=list(AddressFamily), default=AddressFamily.ANY
    )
    c.add_argument("--first-address", action="store_true", help="probe only the first address of each host")
    c.add_argument("--transcript", action="store_true", help="show the protocol transcript")
    c.add_argument(
        "--dns.resolver",
        dest="dns_resolver",
        help="validating resolver for gateway targets (port 25, mx:), ADDRESS[:PORT]; must be trusted and "
        "local: only its AD bit counts as DNSSEC (default: the system resolver)",
    )
    c.add_argument("--dnssec", metavar="auto|require|off", default="auto", help="default auto")
    c.add_argument(
        "--path",
        action="store_true",
        help="trace the network path to find where the session is cut (needs CAP_NET_RAW)",
    )

    a = sub.add_parser("analyze", help="judge a saved chain (PEM bundle or concatenated DER), offline")
    a.add_argument("file", type=Path)
    a.add_argument("--profile", default="microsoft365")
    a.add_argument("--host", help="the name the certificate must be for (default: the leaf's first name)")
    a.add_argument("--at", help="judge at this time (ISO 8601, default now)")
    a.add_argument("--json", action="store_true")

    r = sub.add_parser("run", help="run the agent: scheduled probes, Prometheus metrics, status page")
    r.add_argument(
        "--config.file", dest="config_file", help="YAML config (default: embedded, probes Microsoft 365)"
    )
    r.add_argument(
        "--web.listen-address",
        dest="listen",
        help="[host]:port (default: web.listen_address of the config, else :10587)",
    )
    r.add_argument(
        "--log.level", dest="log_level", choices=("debug", "info", "warn", "error"), default="info"
    )
    r.add_argument("--log.format", dest="log_format", choices=("logfmt", "json"), default="logfmt")
    r.add_argument(
        "--web.config.file", dest="web_config_file", help="exporter-toolkit web config (TLS, basic auth)"
    )
    r.add_argument("--push.gateway", dest="push_gateway", help="Pushgateway URL to push to after each probe")
    r.add_argument(
        "--textfile",
        help="write textfile-collector output (node_exporter, windows_exporter) to this file, "
        "or to relaywatch.prom in this directory (atomically)",
    )
    r.add_argument(
        "--events.file", dest="events_file", help="evidence log: JSON lines, one per verdict change"
    )
    r.add_argument(
        "--state.dir",
        dest="state_dir",
        help="where the baseline of each path is kept (default: $STATE_DIRECTORY, i.e. /var/lib/relaywatch "
        "under systemd, else $XDG_STATE_HOME/relaywatch)",
    )
    r.add_argument(
        "--dns.resolver",
        dest="dns_resolver",
        help="validating resolver for gateway targets, ADDRESS[:PORT]; overrides the config's dns.resolver",
    )
    r.add_argument(
        "--dnssec", metavar="auto|require|off", help="overrides the config's dns.dnssec (default: the config)"
    )

    ct = sub.add_parser("ct-logs", help="Certificate Transparency log lists")
    ct_sub = ct.add_subparsers(dest="ct_command", required=True)
    cv = ct_sub.add_parser(
        "verify", help="check a downloaded Google v3 log list (all_logs_list.json) against its .sig"
    )
    cv.add_argument("file", type=Path, help="the log list, exactly as downloaded")
    cv.add_argument("signature", type=Path, metavar="SIG", help="its signature (all_logs_list.sig)")
    cv.add_argument("--key", type=Path, help="PEM public key (default: Google's log-list key, shipped)")

    d = sub.add_parser("demo", help="run the loopback lab and show every verdict")
    d.add_argument("--json", action="store_true")
    return p


def main(argv: Sequence[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        commands = {"check": _check, "analyze": _analyze, "demo": _demo, "run": _run, "ct-logs": _ct_logs}
        return commands[args.command](args)
    except (UsageError, ProfileError, TargetError, ConfigError) as exc:
        print(f"relaywatch: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:  # `relaywatch check ... | head`
        sys.stderr.close()
        return EXIT_OK
    except Exception as exc:  # a bug: one line, the traceback only on request
        if os.environ.get("RELAYWATCH_DEBUG"):
            raise
        print(
            f"relaywatch: internal error: {type(exc).__name__}: {exc} (RELAYWATCH_DEBUG=1 shows more)",
            file=sys.stderr,
        )
        return EXIT_INTERNAL


def _emit(results: list[ProbeResult], as_json: bool, transcript: bool = False) -> int:
    if as_json:
        json.dump([r.to_dict() for r in results], sys.stdout, indent=2)
        sys.stdout.write("\n")
    else:
        sys.stdout.write(render(results, transcript))
    return EXIT_OK if results and all(r.verdict is Verdict.OK for r in results) else EXIT_FINDING


def _check(args: argparse.Namespace) -> int:
    from relaywatch.analysis.profile import load_profile
    from relaywatch.pipeline import check_all

    if not 0 < args.timeout <= 300:
        raise UsageError("--timeout must be between 0 and 300 seconds")
    profile = load_profile(args.profile)
    targets = [parse_target(t) for t in args.targets]
    limits = Limits().with_timeout(args.timeout)
    options = ProbeOptions(
        limits=limits,
        ehlo_name=args.ehlo_name,
        address_family=args.address_family,
        first_address=args.first_address,
        inspect_local_peer=True,
        dns=_dns_config(args),
    )
    if args.ehlo_name and not all(ch.isalnum() or ch in "-.[]:" for ch in args.ehlo_name):
        raise UsageError(f"--ehlo-name {args.ehlo_name!r} is not a host name or address literal")
    results = check_all([(t, profile) for t in targets], options)
    return _emit(with_evidence(results, path=args.path), args.json, args.transcript)


def _dns_config(args: argparse.Namespace) -> DNSConfig:
    return DNSConfig(_resolver(args.dns_resolver), _dnssec(args.dnssec) or DNSSECMode.AUTO)


def _resolver(text: str | None) -> str | None:
    """--dns.resolver, checked here so that a bad one is one line and exit 2 (check and run alike)."""
    if text is not None:
        try:
            parse_resolver(text)
        except ValueError as exc:
            raise UsageError(f"--dns.resolver: {exc}") from None
    return text


def _dnssec(text: str | None) -> DNSSECMode | None:
    if text is None:
        return None
    try:
        return DNSSECMode(text)
    except ValueError:
        modes = ", ".join(str(m) for m in DNSSECMode)
        raise UsageError(f"--dnssec {text[:40]!r}: one of {modes}") from None


def with_evidence(results: list[ProbeResult], path: bool) -> list[ProbeResult]:
    """Where the session is cut (path trace, in its worker process) and what on this host does it."""
    from relaywatch.host.inventory import inventory
    from relaywatch.path.client import Tracer
    from relaywatch.path.judge import unavailable

    host = inventory()
    if not path:
        return [dataclasses.replace(r, path=None, host=host) for r in results]

    def trace(r: ProbeResult) -> PathResult:
        if r.record.address is None:
            return unavailable("no address to trace")
        target = r.record.target
        return tracer.trace(r.record.address, target.port, implicit_tls=not target.starttls)

    tracer = Tracer()  # one worker process for all the addresses
    try:
        return [dataclasses.replace(r, path=trace(r), host=host) for r in results]
    finally:
        tracer.close()


def _analyze(args: argparse.Namespace) -> int:
    from relaywatch.analysis.certs import dns_names, load_certificates
    from relaywatch.analysis.profile import load_profile

    profile = load_profile(args.profile)
    try:
        data = args.file.read_bytes()
    except OSError as exc:
        raise UsageError(f"{args.file}: {exc.strerror}") from exc
    try:
        chain = load_certificates(data)
    except ValueError as exc:
        raise UsageError(f"{args.file}: not a PEM bundle or DER certificates ({exc})") from exc
    at = _parse_time(args.at) if args.at else dt.datetime.now(dt.UTC)
    if args.host:
        try:
            literal = args.host[1:-1] if args.host.startswith("[") and args.host.endswith("]") else args.host
            host = normalise_host(literal)
        except TargetError as exc:
            raise UsageError(f"--host: {exc}") from None
    else:  # the leaf's first name a probe could have asked for (a wildcard stands for one label)
        host = next((h for h in map(_usable_name, dns_names(chain[0])) if h), "unknown.invalid")
    target = Target(raw=args.host or host, scheme="tls", host=host, port=443)
    result = analyze_chain(chain, target, profile, at)
    return _emit([result], args.json)


def analyze_chain(chain: list, target: Target, profile: TrustProfile, at: dt.datetime) -> ProbeResult:  # type: ignore[type-arg]
    from cryptography.hazmat.primitives.serialization import Encoding
    from relaywatch.analysis.verdict import analyze

    tls = TLSSession("", "", None, tuple(c.public_bytes(Encoding.DER) for c in chain))
    record = ProbeRecord(target, None, at, {}, (), StartTLS(StartTLSState.NOT_APPLICABLE), tls, None)
    return ProbeResult(record, analyze(record, profile, at))


def _usable_name(name: str) -> str | None:
    try:
        return normalise_host(name.replace("*", "wildcard", 1) if name.startswith("*.") else name)
    except TargetError:
        return None


def _ct_logs(args: argparse.Namespace) -> int:
    """Exit 0: the signature verifies; 1: it does not (do not use the file); 2: unreadable input."""
    from relaywatch.analysis.ct import CTError, packaged_list_key_path, verify_list_signature

    key_path = args.key or packaged_list_key_path()
    blobs = []
    for path in (args.file, args.signature, key_path):
        try:
            blobs.append(path.read_bytes())
        except OSError as exc:
            raise UsageError(f"{path}: {exc.strerror}") from exc
    try:
        result = verify_list_signature(*blobs)
    except CTError as exc:
        raise UsageError(f"{key_path}: {exc}") from exc
    key = f"key SPKI SHA-256 {result.key_spki_sha256[:16]}..."
    if not result.valid:
        print(f"{args.file}: signature does NOT verify ({key}): do not use this list")
        return EXIT_FINDING
    what = f", version {result.version}, {result.timestamp}" if result.version else ""
    print(f"{args.file}: signature OK ({key}{what})")
    return EXIT_OK


def _parse_time(text: str) -> dt.datetime:
    try:
        t = dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise UsageError(f"--at {text!r} is not an ISO 8601 date or time") from exc
    return t if t.tzinfo else t.replace(tzinfo=dt.UTC)


def _run(args: argparse.Namespace) -> int:
    from relaywatch.run.agent import Settings, serve

    level = "warning" if args.log_level == "warn" else args.log_level
    # A probe still in flight at SIGTERM is abandoned, not awaited: shutdown stays quick. serve() has
    # already flushed every output by then.
    code = serve(
        Settings(
            args.config_file,
            args.listen,
            level,
            args.log_format,
            args.web_config_file,
            args.push_gateway,
            args.textfile,
            args.events_file,
            args.state_dir,
            _resolver(args.dns_resolver),
            _dnssec(args.dnssec),
        )
    )
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _demo(args: argparse.Namespace) -> int:
    from relaywatch.lab.demo import running_lab
    from relaywatch.pipeline import check_all

    with running_lab() as lab:
        pairs = [(parse_target(s.target), lab.profile) for s in lab.scenarios]
        results = check_all(pairs, ProbeOptions(limits=Limits().with_timeout(5), first_address=True))
        if args.json:
            json.dump(
                [{"scenario": s.name, **r.to_dict()} for s, r in zip(lab.scenarios, results, strict=True)],
                sys.stdout,
                indent=2,
            )
            sys.stdout.write("\n")
        else:
            print(f"relaywatch demo: a lab on loopback, probed with the lab profile ({lab.directory})\n")
            print(f"{'scenario':16} {'verdict':20} {'starttls':14} {'tls':8} {'interceptor':28} what")
            for s, r in zip(lab.scenarios, results, strict=True):
                i = r.analysis.interceptor
                who = safe(i.product, 28) if i else "-"
                tls = r.record.tls.version if r.record.tls else "-"
                flag = "" if r.verdict is s.expected else f"   (expected {s.expected})"
                print(
                    f"{s.name:16} {r.verdict:20} {r.record.starttls.state:14} {tls:8} {who:28} {s.what}{flag}"
                )
            print("\nWhat each verdict means:")
            for v in dict.fromkeys(r.verdict for r in results):
                print(f"  {v}: {v.meaning}")
            print("\nFull evidence for one probe: relaywatch check --profile PROFILE --transcript TARGET")
        ok = all(r.verdict is s.expected for s, r in zip(lab.scenarios, results, strict=True))
        return EXIT_OK if ok else EXIT_FINDING
