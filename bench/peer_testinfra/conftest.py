"""Peer for the benchmark: plain pytest-testinfra, one remote command per probe, same assertions as kijun.

    python3 -m pytest bench/peer_testinfra -q -p no:cacheprovider --sudo \
        --hosts=paramiko://kijun@10.78.0.2,paramiko://kijun@10.78.0.3 --ssh-identity-file=STATE/id_ed25519 \
        [--peer-map hosts.json] [--peer-out DIR] [-n 8]

Each host's controls come from the same baseline (baselines/nisc-core.yaml) and its importance class
(the lab's class for that address, from --peer-map or KIJUN_LAB_STATE/hosts.json). Every control is one
test; it calls host.run() once per probe command of each of its items (kijun.controls.REGISTRY[type]
.probes(params)) and judges the outputs with kijun's own evaluate. Nothing is batched, deduplicated or
cached: the only difference from `kijun check` is the transport pattern.

Counting is done where commands leave the process (bench/benchhooks.py wraps the testinfra backends'
run()); each process (the controller, or each xdist worker) writes PEER_OUT/peer-<role>-<pid>.json at
the end, and appends one line per finished test to PEER_OUT/progress-<pid>.tsv as it goes.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[1]
ROOT = BENCH.parent
sys.path.insert(0, str(BENCH))

import benchhooks  # noqa: E402

from kijun import baseline  # noqa: E402
from kijun.model import HostTarget  # noqa: E402
from kijun.plan import plan_host  # noqa: E402


def pytest_addoption(parser):
    group = parser.getgroup("kijun-bench-peer")
    group.addoption("--peer-baseline", default=str(ROOT / "baselines/nisc-core.yaml"))
    group.addoption("--peer-map", default=os.environ.get("KIJUN_PEER_MAP"),
                    help='JSON {"HOST:PORT": {"name": ..., "class": ...}} (default: the lab state hosts.json)')
    group.addoption("--peer-out", default=os.environ.get("KIJUN_PEER_OUT"), help="directory for counts and progress")


def load_host_map(path: str | None) -> dict[str, dict]:
    if path:
        return json.loads(Path(path).read_text())
    state = Path(os.environ.get("KIJUN_LAB_STATE", "/var/lib/kijun/lab")) / "hosts.json"
    hosts = json.loads(state.read_text())["hosts"]
    return {f"{h['address']}:{h['port']}": {"name": h["name"], "class": h["class"]} for h in hosts}


def _role(config) -> str:
    wi = getattr(config, "workerinput", None)
    return wi["workerid"] if wi else "controller"


def pytest_configure(config):
    benchhooks.count_testinfra()
    config._peer_progress = None
    out = config.getoption("peer_out")
    if out:
        Path(out).mkdir(parents=True, exist_ok=True)
        config._peer_progress = open(Path(out) / f"progress-{os.getpid()}.tsv", "a", buffering=1)


def pytest_unconfigure(config):
    out = config.getoption("peer_out")
    if out:
        benchhooks.dump(str(Path(out) / f"peer-{_role(config)}-{os.getpid()}.json"), _role(config))
    if config._peer_progress:
        config._peer_progress.close()


def pytest_generate_tests(metafunc):
    if "control_id" in metafunc.fixturenames:
        base = baseline.load(metafunc.config.getoption("peer_baseline"))
        metafunc.parametrize("control_id", [c.id for c in base.controls])


@pytest.fixture(scope="session")
def peer_baseline(request):
    return baseline.load(request.config.getoption("peer_baseline"))


@pytest.fixture(scope="session")
def peer_host_map(request):
    return load_host_map(request.config.getoption("peer_map"))


@pytest.fixture(scope="session")
def _peer_plans():
    return {}


def host_key(host) -> str:
    return f"{host.backend.host.name}:{host.backend.host.port or 22}"


@pytest.fixture
def peer_plan(host, peer_baseline, peer_host_map, _peer_plans):
    """{control id: PlannedControl} for this host's class (planning is local and per class, like kijun's)."""
    info = peer_host_map.get(host_key(host))
    if info is None:
        pytest.fail(f"{host_key(host)} is not in the peer host map: cannot tell its importance class")
    cls = info["class"]
    if cls not in _peer_plans:
        target = HostTarget(name=info["name"], importance_class=cls)
        _peer_plans[cls] = {pc.control.id: pc for pc in plan_host(peer_baseline, target)}
    return _peer_plans[cls]


@pytest.fixture
def peer_record(request, host, peer_host_map):
    """Call with (control_id, status, commands): one progress line per finished test."""
    fh = request.config._peer_progress

    def record(control_id: str, status: str, commands: int) -> None:
        if fh:
            name = peer_host_map.get(host_key(host), {}).get("name", host_key(host))
            fh.write(f"{name}\t{host_key(host)}\t{control_id}\t{status}\t{commands}\n")

    return record
