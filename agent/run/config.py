"""The agent's YAML config. A wrong config is refused with the file, the line and what is wrong."""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.export.metrics import Layout, reserved_label_names
from relaywatch.probe.dnsconfig import DNSConfig, DNSSECMode, parse_resolver
from relaywatch.target import AllowPattern, Target, TargetError, parse_allow_pattern, parse_target
from relaywatch.yamlsafe import SafeLoader, problem

DEFAULT_CONFIG = """\
interval: 60s
timeout: 10s
profile: microsoft365
concurrency: 16
targets:
  - target: smtp.office365.com:587
  - target: outlook.office365.com:993
"""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?\Z")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*\Z")
_TARGET_KEYS = {"target", "profile", "interval", "timeout", "address_family", "ehlo_name", "labels"}


class ConfigError(ValueError):
    pass


@dataclass(frozen=True, slots=True)
class TargetConfig:
    name: str  # as configured: the `target` label
    target: Target
    profile: ProfileRef
    interval: float
    timeout: float
    address_family: AddressFamily
    ehlo_name: str | None
    labels: tuple[tuple[str, str], ...]
    dns: DNSConfig = DNSConfig()  # the top-level `dns` section: resolver and DNSSEC for gateway targets


@dataclass(frozen=True, slots=True)
class PathSettings:
    enabled: bool = True
    every: int = 10  # rounds between traces of an address (and on every verdict change); 0: on change only
    max_hops: int = 16
    timeout: float = 2.0
    concurrency: int = 2  # traces at once (each a tracer process while it has work)


@dataclass(frozen=True, slots=True)
class Config:
    source: str
    targets: tuple[TargetConfig, ...]
    concurrency: int
    probe_allow: tuple[AllowPattern, ...]  # what /probe may run beyond the configured targets
    default_profile: ProfileRef
    timeout: float
    label_names: tuple[str, ...] = field(default=())
    path: PathSettings = field(default_factory=lambda: PathSettings())
    host_interval: float = 300.0  # how often the host's processes and trust stores are inventoried
    listen_address: str | None = None  # web.listen_address; the command-line flag wins
    web_config_file: str | None = None  # web.config_file, relative to the config file
    metrics_detail: bool = False  # metrics.detail: the families no panel or rule needs, too
    dns: DNSConfig = DNSConfig()  # the `dns` section (each target carries it too): ad-hoc /probe targets

    @property
    def layout(self) -> Layout:
        """The shape of every target's series (see export/metrics.py)."""
        return Layout(self.label_names, self.metrics_detail)

    def configured(self, target: Target) -> TargetConfig | None:
        """The configured target that is this one (same scheme, host and port, however it was written)."""
        return next((t for t in self.targets if t.target == target), None)

    def allowed(self, target: Target) -> bool:
        """A parsed target: configured, or matching a probe_allow pattern on scheme, host and port."""
        return self.configured(target) is not None or any(p.matches(target) for p in self.probe_allow)


class _Loader(SafeLoader):
    """Keeps the line of every mapping key, for error messages."""


def _mapping(loader: _Loader, node: yaml.MappingNode) -> dict[str, Any]:
    out = _Lines()
    for key_node, value_node in node.value:
        key = loader.construct_object(key_node, deep=True)
        out[key] = loader.construct_object(value_node, deep=True)
        out.lines[key] = key_node.start_mark.line + 1
    out.line = node.start_mark.line + 1
    return out


class _Lines(dict):  # type: ignore[type-arg]
    def __init__(self) -> None:
        super().__init__()
        self.lines: dict[Any, int] = {}
        self.line = 0


_Loader.add_constructor(yaml.resolver.BaseResolver.DEFAULT_MAPPING_TAG, _mapping)


def duration(value: Any) -> float:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    m = _DURATION.match(str(value).strip())
    if not m:
        raise ValueError(f"{value!r} is not a duration (like 30s, 5m, 1h)")
    return float(m.group(1)) * _UNITS[m.group(2)]


Profiles = Callable[[str], ProfileRef]


def local_profiles(spec: str) -> ProfileRef:
    """Load and check a profile in this process (the agent passes its probe worker's loader instead)."""
    from relaywatch.analysis.profile import profile_ref

    return profile_ref(spec)


def load_config(path: str | None, profiles: Profiles = local_profiles) -> Config:
    if path is None:
        return parse_config(DEFAULT_CONFIG, "(embedded default)", Path.cwd(), profiles)
    try:
        text = Path(path).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: cannot read: {getattr(exc, 'strerror', None) or exc}") from exc
    return parse_config(text, path, Path(path).resolve().parent, profiles)


_TOP_KEYS = frozenset(
    {
        "interval",
        "timeout",
        "profile",
        "concurrency",
        "ehlo_name",
        "probe_allow",
        "targets",
        "web",
        "host",
        "path",
        "address_family",
        "metrics",
        "dns",
    }
)


@dataclass(frozen=True, slots=True)
class _Defaults:
    """What the top level sets for every target that does not say otherwise."""

    interval: float
    timeout: float
    profile: ProfileRef
    ehlo_name: object
    address_family: object


class _Parser:
    """One method per section; every error names the file and the line of the key it is about."""

    def __init__(self, source: str, base: Path, profiles: Profiles) -> None:
        self.source, self.base, self.profiles = source, base, profiles

    def fail(self, node: _Lines, key: str | None, message: str) -> ConfigError:
        line = node.lines.get(key, node.line) if key is not None else node.line
        return ConfigError(f"{self.source}:{line}: {message}")

    def duration(self, node: _Lines, key: str, default: float) -> float:
        if key not in node:
            return default
        try:
            value = duration(node[key])
        except ValueError as exc:
            raise self.fail(node, key, f"{key}: {exc}") from None
        if not 0 < value <= 86400:
            raise self.fail(node, key, f"{key}: must be more than 0 and at most 24h")
        return value

    def profile(self, node: _Lines, default: ProfileRef | None) -> ProfileRef:
        if "profile" not in node:
            assert default is not None
            return default
        spec = str(node["profile"])
        if "\0" in spec or len(spec) > 4096 or any(len(part) > 255 for part in Path(spec).parts):
            raise self.fail(node, "profile", "profile: not a profile name or a file name (too long)")
        try:
            return self.profiles(str(self.base / spec) if _is_file(self.base / spec) else spec)
        except ProfileError as exc:
            raise self.fail(node, "profile", str(exc)) from None

    def section(self, doc: _Lines, key: str, allowed: frozenset[str], what: str) -> _Lines:
        node = doc.get(key) or _Lines()
        if not isinstance(node, _Lines) or set(node) - allowed:
            raise self.fail(doc, key, f"{key}: a mapping with {what}")
        return node

    def top(self, doc: _Lines) -> tuple[_Defaults, int, tuple[AllowPattern, ...]]:
        unknown = set(doc) - _TOP_KEYS
        if unknown:
            key = sorted(unknown, key=str)[0]
            raise self.fail(doc, key, f"unknown key {key!r}")
        defaults = _Defaults(
            self.duration(doc, "interval", 60.0),
            self.duration(doc, "timeout", 10.0),
            self.profile(doc, None) if "profile" in doc else self.profiles("microsoft365"),
            doc.get("ehlo_name"),
            doc.get("address_family", "any"),
        )
        concurrency = doc.get("concurrency", 16)
        if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 1024:
            raise self.fail(doc, "concurrency", "concurrency: must be a whole number from 1 to 1024")
        allow = doc.get("probe_allow") or []
        if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
            raise self.fail(doc, "probe_allow", "probe_allow: must be a list of target patterns")
        try:
            patterns = tuple(parse_allow_pattern(a) for a in allow)
        except TargetError as exc:
            raise self.fail(doc, "probe_allow", f"probe_allow: {exc}") from None
        return defaults, concurrency, patterns

    def web(self, doc: _Lines) -> tuple[str | None, str | None]:
        web = self.section(
            doc, "web", frozenset({"listen_address", "config_file"}), "listen_address and config_file"
        )
        listen = str(web["listen_address"]) if web.get("listen_address") else None
        config_file = str(self.base / str(web["config_file"])) if web.get("config_file") else None
        return listen, config_file

    def path(self, doc: _Lines) -> PathSettings:
        node = self.section(
            doc,
            "path",
            frozenset({"enabled", "every", "max_hops", "timeout", "concurrency"}),
            "enabled, every, max_hops, timeout, concurrency",
        )
        every, hops = node.get("every", 10), node.get("max_hops", 16)
        if not isinstance(every, int) or every < 0 or not isinstance(hops, int) or not 1 <= hops <= 32:
            raise self.fail(node, None, "path: every is a whole number of rounds >= 0, max_hops 1 to 32")
        at_once = node.get("concurrency", 2)
        if not isinstance(at_once, int) or isinstance(at_once, bool) or not 1 <= at_once <= 8:
            raise self.fail(node, "concurrency", "path: concurrency is 1 to 8 traces at once")
        timeout = self.duration(node, "timeout", 2.0)
        return PathSettings(bool(node.get("enabled", True)), every, hops, timeout, at_once)

    def metrics(self, doc: _Lines) -> bool:
        node = self.section(doc, "metrics", frozenset({"detail"}), "detail")
        detail = node.get("detail", False)
        if not isinstance(detail, bool):
            raise self.fail(node, "detail", "metrics.detail: true or false")
        return detail

    def dns(self, doc: _Lines) -> DNSConfig:
        node = self.section(doc, "dns", frozenset({"resolver", "dnssec"}), "resolver and dnssec")
        resolver = node.get("resolver")
        if resolver is not None:
            try:
                parse_resolver(str(resolver))
            except ValueError as exc:
                raise self.fail(node, "resolver", f"dns.resolver: {exc}") from None
        try:
            mode = DNSSECMode(str(node.get("dnssec", "auto")))
        except ValueError:
            raise self.fail(node, "dnssec", "dns.dnssec: one of auto, require, off") from None
        return DNSConfig(str(resolver) if resolver is not None else None, mode)

    def host(self, doc: _Lines) -> float:
        return self.duration(
            self.section(doc, "host", frozenset({"interval"}), "interval"), "interval", 300.0
        )

    def targets(self, doc: _Lines, defaults: _Defaults) -> tuple[TargetConfig, ...]:
        entries = doc.get("targets")
        if not isinstance(entries, list) or not entries:
            raise self.fail(doc, "targets" if "targets" in doc else None, "targets: must be a non-empty list")
        targets: dict[str, TargetConfig] = {}
        for entry in entries:
            if isinstance(entry, str):
                node = _Lines()
                node["target"], node.line = entry, doc.lines.get("targets", 0)
                entry = node
            if not isinstance(entry, _Lines) or "target" not in entry:
                raise self.fail(doc, "targets", "each target needs a 'target' key")
            tc = self.target(entry, defaults)
            if tc.name in targets:
                raise self.fail(entry, "target", f"target {tc.name!r} is configured twice")
            targets[tc.name] = tc
        return tuple(targets.values())

    def target(self, entry: _Lines, defaults: _Defaults) -> TargetConfig:
        for key in entry:
            if key not in _TARGET_KEYS:
                raise self.fail(
                    entry, key, f"unknown target key {key!r} (one of {', '.join(sorted(_TARGET_KEYS))})"
                )
        try:
            target = parse_target(str(entry["target"]))
        except TargetError as exc:
            raise self.fail(entry, "target", str(exc)) from None
        try:
            family = AddressFamily(str(entry.get("address_family", defaults.address_family)))
        except ValueError:
            raise self.fail(
                entry, "address_family", f"address_family: one of {', '.join(AddressFamily)}"
            ) from None
        return TargetConfig(
            name=str(entry["target"]),
            target=target,
            profile=self.profile(entry, defaults.profile),
            interval=self.duration(entry, "interval", defaults.interval),
            timeout=self.duration(entry, "timeout", defaults.timeout),
            address_family=family,
            ehlo_name=str(entry.get("ehlo_name") or defaults.ehlo_name or "") or None,
            labels=self.labels(entry),
        )

    def labels(self, entry: _Lines) -> tuple[tuple[str, str], ...]:
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise self.fail(entry, "labels", "labels: must be a mapping of name: value")
        for name in labels:
            if not isinstance(name, str) or not _LABEL.match(name) or name.startswith("__"):
                raise self.fail(entry, "labels", f"label name {name!r} is invalid")
            if name in reserved_label_names():
                raise self.fail(entry, "labels", f"label name {name!r} is reserved: a metric uses it")
        return tuple(sorted((str(k), str(v)) for k, v in labels.items()))


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except (OSError, ValueError):  # a name too long for the file system, or with a NUL: not a file
        return False


def parse_config(text: str, source: str, base: Path, profiles: Profiles = local_profiles) -> Config:
    doc = _document(text, source)
    parser = _Parser(source, base, profiles)
    defaults, concurrency, allow = parser.top(doc)
    listen, web_config = parser.web(doc)
    path, host_interval = parser.path(doc), parser.host(doc)
    dns = parser.dns(doc)
    targets = tuple(dataclasses.replace(t, dns=dns) for t in parser.targets(doc, defaults))
    label_names = sorted({name for t in targets for name, _ in t.labels})
    return Config(
        source,
        targets,
        concurrency,
        allow,
        defaults.profile,
        defaults.timeout,
        tuple(label_names),
        path,
        host_interval,
        listen,
        web_config,
        parser.metrics(doc),
        dns,
    )


def with_dns(config: Config, resolver: str | None, dnssec: DNSSECMode | None) -> Config:
    """`relaywatch run --dns.resolver/--dnssec`: the command line wins over the `dns` section, on every
    load (SIGHUP too), for the configured targets and the ad-hoc /probe ones alike."""
    if resolver is None and dnssec is None:
        return config
    dns = DNSConfig(resolver or config.dns.resolver, dnssec or config.dns.dnssec)
    targets = tuple(dataclasses.replace(t, dns=dns) for t in config.targets)
    return dataclasses.replace(config, dns=dns, targets=targets)


def _document(text: str, source: str) -> _Lines:
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader without aliases or deep nesting
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {problem(exc)}") from exc
    if not isinstance(doc, _Lines):
        raise ConfigError(f"{source}: expected a mapping with 'targets'")
    return doc
