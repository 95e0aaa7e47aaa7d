"""target -> probe -> analysis -> result: the one path every command and the agent take."""

from __future__ import annotations

import concurrent.futures
from collections.abc import Sequence

from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.analysis.profile_ref import ProfileRef
from relaywatch.analysis.verdict import analyze
from relaywatch.model import ProbeResult
from relaywatch.probe.options import ProbeOptions
from relaywatch.probe.session import probe_target
from relaywatch.target import Target


def check(target: Target, profile: TrustProfile, options: ProbeOptions = ProbeOptions()) -> list[ProbeResult]:
    lookup = None
    if options.inspect_local_peer:
        from relaywatch.host.processes import local_peer  # host inspection: only when asked

        lookup = local_peer
    return [ProbeResult(record, analyze(record, profile)) for record in probe_target(target, options, lookup)]


def check_all(
    targets: Sequence[tuple[Target, TrustProfile]], options: ProbeOptions = ProbeOptions(), workers: int = 8
) -> list[ProbeResult]:
    """Targets in parallel (each bounded by its own timeout); results in the order given."""
    if len(targets) == 1:
        return check(targets[0][0], targets[0][1], options)
    with concurrent.futures.ThreadPoolExecutor(max_workers=min(workers, len(targets))) as pool:
        futures = [pool.submit(check, t, p, options) for t, p in targets]
        return [r for f in futures for r in f.result()]


def check_ref(
    target: Target, profile: ProfileRef, options: ProbeOptions = ProbeOptions()
) -> list[ProbeResult]:
    """The agent's probe function run in this process (tests; the agent itself uses its probe worker)."""
    return check(target, load_profile(profile.source), options)
