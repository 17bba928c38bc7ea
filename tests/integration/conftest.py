"""Integration fixtures: a session-wide lab of real SSH hosts (see docs/lab.md).

Every test under tests/integration is marked `integration`. The lab needs root and mmdebstrap;
without them the tests are skipped with the reason. KIJUN_LAB_HOSTS changes the number of hosts
(default 3), KIJUN_LAB_TEST_STATE the state directory (default /var/lib/kijun/lab-test).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from kijun.lab import LabHost, down, up
from kijun.lab.hosts import BRIDGE, VETH_PREFIX


class Lab(NamedTuple):
    hosts: list[LabHost]  # refreshed in place if a test restarts the lab
    state_dir: Path


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def lab_pids(hosts: list[LabHost]) -> list[int]:
    return [rec[0] for h in hosts for rec in h.pids.values()]


def lab_leftovers(state_dir: Path, pids: list[int] = ()) -> list[str]:
    """Mounts, network namespaces, links and processes of a lab that should be gone after down()."""
    left = []
    for pid in pids:  # a zombie awaiting the VM's init is gone for our purpose
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in "ZX":
            left.append(f"pid {pid}")
    mounts = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True).stdout.split()
    left += [f"mount {m}" for m in mounts if m.startswith(str(state_dir) + "/")]
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True).stdout.split("\n")
    left += [f"netns {n.split()[0]}" for n in netns if n.startswith("kijun-")]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n")
    left += [f"link {ln.split(':')[1].strip()}" for ln in links
             if ln.count(":") > 1 and ln.split(":")[1].strip().split("@")[0].startswith((VETH_PREFIX, BRIDGE))]
    # the init of each host's pid namespace: the kernel kills everything inside when it dies
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.split("\n")
    left += [f"process {p.strip()}" for p in ps if f"/bin/sh {state_dir}/init.sh" in p]
    return left


def _cannot_run(reason: str):
    """Skip on a developer machine; in CI (CI=true) a lab that cannot start is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the lab integration tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session")
def lab():
    if os.geteuid() != 0:
        _cannot_run("lab integration tests need root (network namespaces, overlay mounts)")
    if not shutil.which("mmdebstrap"):
        _cannot_run("lab integration tests need mmdebstrap (apt-get install mmdebstrap)")
    if Path(f"/sys/class/net/{BRIDGE}").exists():
        _cannot_run(f"a lab is already running (bridge {BRIDGE} exists): run `kijun lab down` first")
    n = int(os.environ.get("KIJUN_LAB_HOSTS", "3"))
    state_dir = Path(os.environ.get("KIJUN_LAB_TEST_STATE", "/var/lib/kijun/lab-test"))
    old_env = os.environ.get("KIJUN_LAB_STATE")
    os.environ["KIJUN_LAB_STATE"] = str(state_dir)  # for inventories/lab.py run by subprocesses
    hosts: list[LabHost] = []
    try:
        hosts.extend(up(n, state_dir=state_dir))
        yield Lab(hosts, state_dir)
    finally:
        pids = lab_pids(hosts)
        down(state_dir)
        if old_env is None:
            os.environ.pop("KIJUN_LAB_STATE", None)
        else:
            os.environ["KIJUN_LAB_STATE"] = old_env
    left = lab_leftovers(state_dir, pids)
    assert not left, f"lab down left behind: {left}"


@pytest.fixture
def leftovers():
    """lab_leftovers(state_dir, pids) -> list of what a lab left behind, for tests of down()."""
    return lab_leftovers
