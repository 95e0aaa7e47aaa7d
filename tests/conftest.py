"""Shared fixtures: one lab PKI per session, written with a lab trust profile; the lab of scenarios; the
static-hosts seam. Helpers are in tests/support.py.

The unit lane (`pytest -m "not peers"`) must stay pure: a test without the `peers` mark that starts a lab
server fails at once, naming the mark it lacks."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path

import pytest
from relaywatch.analysis.profile import TrustProfile, load_profile
from relaywatch.lab.demo import Lab, running_lab
from relaywatch.lab.pki import LabPKI, make_lab_pki
from relaywatch.lab.servers import LabServer, Mail, server_context
from relaywatch.probe.resolve import HOSTS_FILE_ENV

from tests.support import StaticHosts, write_hosts


@pytest.fixture(scope="session", autouse=True)
def _private_state_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Every agent a test starts keeps its baseline in this session's own directory, never the user's."""
    mp = pytest.MonkeyPatch()
    mp.setenv("XDG_STATE_HOME", str(tmp_path_factory.mktemp("state")))
    mp.delenv("STATE_DIRECTORY", raising=False)
    yield
    mp.undo()


@pytest.fixture(scope="session")
def pki() -> LabPKI:
    return make_lab_pki()


@pytest.fixture(scope="session")
def lab_dir(pki: LabPKI, tmp_path_factory: pytest.TempPathFactory) -> Path:
    d = tmp_path_factory.mktemp("labpki")
    pki.write(d)
    return d


@pytest.fixture(scope="session")
def lab_profile(lab_dir: Path) -> TrustProfile:
    return load_profile(str(lab_dir / "lab-profile.yml"))


@pytest.fixture
def relay(pki: LabPKI) -> Iterator[LabServer]:
    with LabServer(Mail("smtp", server_context(pki.relay, [pki.issuing]))) as s:
        yield s


@pytest.fixture(scope="module")
def lab() -> Iterator[Lab]:
    """Every demo scenario on loopback, once per module."""
    with running_lab() as lab:
        yield lab


@pytest.fixture
def static_hosts(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> StaticHosts:
    """Point the resolver at a hosts file (RELAYWATCH_HOSTS_FILE) for this test: in-process probes and
    `relaywatch` subprocesses started with os.environ then resolve those names to those addresses."""

    def use(mapping: Mapping[str, Iterable[str]]) -> Path:
        path = write_hosts(tmp_path / "hosts", mapping)
        monkeypatch.setenv(HOSTS_FILE_ENV, str(path))
        return path

    return use


_PEER_FIXTURES = {"relay", "lab", "net"}  # fixtures that start lab servers, processes or namespaces


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """A test that asks for a peer fixture without the `peers` mark is a mistake in the lanes: refuse it
    at collection rather than let it slow the unit lane down."""
    for item in items:
        wanted = _PEER_FIXTURES & set(getattr(item, "fixturenames", ()))
        if wanted and item.get_closest_marker("peers") is None:
            raise pytest.UsageError(f"{item.nodeid} uses {sorted(wanted)} but is not marked peers")


@pytest.fixture(autouse=True)
def _unit_lane_is_pure(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """Unmarked tests run in the unit lane: starting a lab server there is refused."""
    if request.node.get_closest_marker("peers") is not None:
        return

    def refuse(self: LabServer) -> LabServer:
        raise AssertionError(f"{request.node.nodeid} starts a LabServer: mark it @pytest.mark.peers")

    monkeypatch.setattr(LabServer, "__enter__", refuse)
