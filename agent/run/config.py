"""The agent's YAML config. A wrong config is refused with the file, the line and what is wrong."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml
from relaywatch.addresses import AddressFamily
from relaywatch.analysis.profile_ref import ProfileError, ProfileRef
from relaywatch.target import AllowPattern, Target, TargetError, parse_allow_pattern, parse_target

DEFAULT_CONFIG = """\
interval: 60s
timeout: 10s
profile: microsoft365
concurrency: 16
targets:
  - target: smtp.office365.com:587
  - target: outlook.office365.com:993
"""
_DURATION = re.compile(r"^(\d+(?:\.\d+)?)(ms|s|m|h)?$")
_UNITS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_LABEL = re.compile(r"^[a-zA-Z_][a-zA-Z0-9_]*$")
_RESERVED = {"target", "address", "verdict", "state", "instance", "job", "phase", "position"}
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


@dataclass(frozen=True, slots=True)
class PathSettings:
    enabled: bool = True
    every: int = 10  # rounds between traces of an address (and on every verdict change); 0: on change only
    max_hops: int = 16
    timeout: float = 2.0


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

    def configured(self, target: Target) -> TargetConfig | None:
        """The configured target that is this one (same scheme, host and port, however it was written)."""
        return next((t for t in self.targets if t.target == target), None)

    def allowed(self, target: Target) -> bool:
        """A parsed target: configured, or matching a probe_allow pattern on scheme, host and port."""
        return self.configured(target) is not None or any(p.matches(target) for p in self.probe_allow)


class _Loader(yaml.SafeLoader):
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


def parse_config(text: str, source: str, base: Path, profiles: Profiles = local_profiles) -> Config:
    try:
        doc = yaml.load(text, Loader=_Loader)  # _Loader is a SafeLoader
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"{source}:{mark.line + 1}" if mark else source
        raise ConfigError(f"{where}: invalid YAML: {getattr(exc, 'problem', None) or exc}") from exc
    if not isinstance(doc, _Lines):
        raise ConfigError(f"{source}: expected a mapping with 'targets'")

    def fail(node: _Lines, key: str | None, message: str) -> ConfigError:
        line = node.lines.get(key, node.line) if key is not None else node.line
        return ConfigError(f"{source}:{line}: {message}")

    def get_duration(node: _Lines, key: str, default: float) -> float:
        if key not in node:
            return default
        try:
            value = duration(node[key])
        except ValueError as exc:
            raise fail(node, key, f"{key}: {exc}") from None
        if not 0 < value <= 86400:
            raise fail(node, key, f"{key}: must be more than 0 and at most 24h")
        return value

    def get_profile(node: _Lines, default: ProfileRef | None) -> ProfileRef:
        if "profile" not in node:
            assert default is not None
            return default
        spec = str(node["profile"])
        candidate = base / spec
        try:
            return profiles(str(candidate) if candidate.is_file() else spec)
        except ProfileError as exc:
            raise fail(node, "profile", str(exc)) from None

    interval = get_duration(doc, "interval", 60.0)
    timeout = get_duration(doc, "timeout", 10.0)
    profile = get_profile(doc, profiles("microsoft365") if "profile" not in doc else None)
    concurrency = doc.get("concurrency", 16)
    if not isinstance(concurrency, int) or isinstance(concurrency, bool) or not 1 <= concurrency <= 1024:
        raise fail(doc, "concurrency", "concurrency: must be a whole number from 1 to 1024")
    ehlo = doc.get("ehlo_name")
    allow = doc.get("probe_allow") or []
    if not isinstance(allow, list) or not all(isinstance(a, str) for a in allow):
        raise fail(doc, "probe_allow", "probe_allow: must be a list of target patterns")
    try:
        patterns = tuple(parse_allow_pattern(a) for a in allow)
    except TargetError as exc:
        raise fail(doc, "probe_allow", f"probe_allow: {exc}") from None
    unknown = set(doc) - {
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
    }
    if unknown:
        key = sorted(unknown, key=str)[0]
        raise fail(doc, key, f"unknown key {key!r}")
    web = doc.get("web") or _Lines()
    if not isinstance(web, _Lines) or set(web) - {"listen_address", "config_file"}:
        raise fail(doc, "web", "web: a mapping with listen_address and config_file")
    web_config = str(base / str(web["config_file"])) if web.get("config_file") else None
    path_doc = doc.get("path") or _Lines()
    if not isinstance(path_doc, _Lines) or set(path_doc) - {"enabled", "every", "max_hops", "timeout"}:
        raise fail(doc, "path", "path: a mapping with enabled, every, max_hops, timeout")
    every, hops = path_doc.get("every", 10), path_doc.get("max_hops", 16)
    if not isinstance(every, int) or every < 0 or not isinstance(hops, int) or not 1 <= hops <= 32:
        raise fail(path_doc, None, "path: every is a whole number of rounds >= 0, max_hops 1 to 32")
    path = PathSettings(
        bool(path_doc.get("enabled", True)), every, hops, get_duration(path_doc, "timeout", 2.0)
    )
    host_doc = doc.get("host") or _Lines()
    if not isinstance(host_doc, _Lines) or set(host_doc) - {"interval"}:
        raise fail(doc, "host", "host: a mapping with interval")
    host_interval = get_duration(host_doc, "interval", 300.0)
    entries = doc.get("targets")
    if not isinstance(entries, list) or not entries:
        raise fail(doc, "targets" if "targets" in doc else None, "targets: must be a non-empty list")
    targets: list[TargetConfig] = []
    label_names: set[str] = set()
    for entry in entries:
        if isinstance(entry, str):
            node = _Lines()
            node["target"], node.line = entry, doc.lines.get("targets", 0)
            entry = node
        if not isinstance(entry, _Lines) or "target" not in entry:
            raise fail(doc, "targets", "each target needs a 'target' key")
        for key in entry:
            if key not in _TARGET_KEYS:
                raise fail(
                    entry, key, f"unknown target key {key!r} (one of {', '.join(sorted(_TARGET_KEYS))})"
                )
        try:
            target = parse_target(str(entry["target"]))
        except TargetError as exc:
            raise fail(entry, "target", str(exc)) from None
        labels = entry.get("labels") or {}
        if not isinstance(labels, dict):
            raise fail(entry, "labels", "labels: must be a mapping of name: value")
        for name in labels:
            if (
                not isinstance(name, str)
                or not _LABEL.match(name)
                or name in _RESERVED
                or name.startswith("__")
            ):
                raise fail(entry, "labels", f"label name {name!r} is invalid or reserved")
        family_text = str(entry.get("address_family", doc.get("address_family", "any")))
        try:
            family = AddressFamily(family_text)
        except ValueError:
            raise fail(
                entry, "address_family", f"address_family: one of {', '.join(AddressFamily)}"
            ) from None
        name = str(entry["target"])
        if any(t.name == name for t in targets):
            raise fail(entry, "target", f"target {name!r} is configured twice")
        label_names.update(labels)
        targets.append(
            TargetConfig(
                name=name,
                target=target,
                profile=get_profile(entry, profile),
                interval=get_duration(entry, "interval", interval),
                timeout=get_duration(entry, "timeout", timeout),
                address_family=family,
                ehlo_name=str(entry.get("ehlo_name") or ehlo or "") or None,
                labels=tuple(sorted((str(k), str(v)) for k, v in labels.items())),
            )
        )
    listen = str(web["listen_address"]) if web.get("listen_address") else None
    return Config(
        source,
        tuple(targets),
        concurrency,
        patterns,
        profile,
        timeout,
        tuple(sorted(label_names)),
        path,
        host_interval,
        listen,
        web_config,
    )
