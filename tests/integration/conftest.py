"""Integration fixtures: a session-wide lab of real SSH hosts (see docs/lab.md).

Every test under tests/integration is marked `integration`. The lab needs root and mmdebstrap;
without them the tests are skipped with the reason. KIJUN_LAB_HOSTS changes the number of hosts
(default 3), KIJUN_LAB_TEST_STATE the state directory (default /var/lib/kijun/lab-test),
KIJUN_LAB_TEST_BOOT / KIJUN_LAB_TEST_SUITE the boot flavour and suite of those hosts (default none,
bookworm: the whole suite can run on booted systemd hosts). `systemd_lab` adds two booted systemd
hosts (trixie, bookworm) sharing the lab's bridge and services (state dir STATE-systemd).
"""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path
from typing import NamedTuple

import pytest

from kijun.lab import LabHost, down, up
from kijun.lab.hosts import BRIDGE, NETNS_PREFIX, VETH_PREFIX, load_state


class Lab(NamedTuple):
    hosts: list[LabHost]  # refreshed in place if a test restarts the lab
    state_dir: Path


def lab_service_pids(state_dir: Path) -> list[int]:
    rec = (load_state(state_dir).get("services") or {}).get("pid")
    return [rec[0]] if rec else []


def pytest_collection_modifyitems(config, items):
    here = Path(__file__).parent
    for item in items:
        if here in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


def lab_pids(hosts: list[LabHost]) -> list[int]:
    return [rec[0] for h in hosts for rec in h.pids.values()]


def _cgroups_left(hosts: list[LabHost]) -> list[str]:
    return [f"cgroup {root}/{h.cgroup}" for h in hosts if h.cgroup
            for root in ("/sys/fs/cgroup/unified", "/sys/fs/cgroup/systemd", "/sys/fs/cgroup")
            if Path(root, h.cgroup).is_dir()]


def lab_leftovers(state_dir: Path, pids: list[int] = (), hosts: list[LabHost] = (), netcfg: dict | None = None) -> list[str]:
    """Mounts, network namespaces, links, cgroups and processes of a lab that should be gone after down()
    (netcfg: names of another lab number than this process's)."""
    netns_prefix, veth_prefix, bridge = ((netcfg["netns_prefix"], netcfg["veth_prefix"], netcfg["bridge"]) if netcfg
                                         else (NETNS_PREFIX, VETH_PREFIX, BRIDGE))
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
    left += [f"netns {n.split()[0]}" for n in netns if n.startswith(netns_prefix)]
    links = subprocess.run(["ip", "-o", "link"], capture_output=True, text=True).stdout.split("\n")
    left += [f"link {ln.split(':')[1].strip()}" for ln in links
             if ln.count(":") > 1 and ln.split(":")[1].strip().split("@")[0].startswith((veth_prefix, bridge))]
    # the init of each host's pid namespace: the kernel kills everything inside when it dies
    ps = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True).stdout.split("\n")
    left += [f"process {p.strip()}" for p in ps if f"/bin/sh {state_dir}/init.sh" in p
             or f"--directory={state_dir}/" in p or f"{state_dir}/services/config.json" in p]
    return left + _cgroups_left(hosts)


def lab_flavour() -> dict:
    """Boot flavour and suite of the session lab's hosts (up() keyword arguments)."""
    return {"boot": os.environ.get("KIJUN_LAB_TEST_BOOT", "none"),
            "suite": os.environ.get("KIJUN_LAB_TEST_SUITE", "bookworm")}


def _cannot_run(reason: str):
    """Skip on a developer machine; in CI (CI=true) a lab that cannot start is a failure, not a skip."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"CI must run the lab integration tests: {reason}")
    pytest.skip(reason)


@pytest.fixture(scope="session", autouse=True)
def run_records(tmp_path_factory):
    """apply stores and signs its runs like check (issue 16): runs without --store/--key go to a session
    store with a session key, never to the operator's own."""
    from kijun import signing

    if os.environ.get("KIJUN_SIGNING_KEY") or os.environ.get("KIJUN_STORE"):
        yield
        return
    d = tmp_path_factory.mktemp("run-records")
    os.environ["KIJUN_SIGNING_KEY"] = str(signing.generate_key(d / "ed25519.pem"))
    os.environ["KIJUN_STORE"] = str(d / "runs.db")
    try:
        yield
    finally:
        os.environ.pop("KIJUN_SIGNING_KEY", None)
        os.environ.pop("KIJUN_STORE", None)


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
    if lab_flavour()["boot"] != "none":
        _need_nspawn()
    try:
        hosts.extend(up(n, state_dir=state_dir, **lab_flavour()))
        yield Lab(hosts, state_dir)
    finally:
        pids = lab_pids(hosts) + lab_service_pids(state_dir)
        down(state_dir)
        if old_env is None:
            os.environ.pop("KIJUN_LAB_STATE", None)
        else:
            os.environ["KIJUN_LAB_STATE"] = old_env
    left = lab_leftovers(state_dir, pids, hosts)
    assert not left, f"lab down left behind: {left}"


_LAB_USED_BY: list[str] = []  # modules that had the session lab, in order


@pytest.fixture(scope="module", autouse=True)
def fresh_lab_hosts(request):
    """Each module that uses the session lab starts from its hosts as `lab up` made them: what an earlier
    module did to them (a hardened sshd, a firewall, a daemon left running, packages) is not this module's
    starting point (three CI runs failed on such leftovers). Joined systemd labs are not touched."""
    from kijun.lab import load, reset_hosts

    mine = [i for i in request.session.items if getattr(i, "module", None) is request.module]
    if not any("lab" in getattr(i, "fixturenames", ()) for i in mine):
        yield
        return
    lab = request.getfixturevalue("lab")
    if _LAB_USED_BY:
        reset_hosts(state_dir=lab.state_dir, timeout=120)
        lab.hosts[:] = load(lab.state_dir)  # new pids (the session's teardown checks them)
    _LAB_USED_BY.append(request.module.__name__)
    yield


def _need_nspawn():
    if not shutil.which("systemd-nspawn"):
        _cannot_run("systemd lab hosts need systemd-nspawn (apt-get install systemd-container)")


def joined_systemd_lab(lab: Lab, suffix: str, classes: str, name_prefix: str):
    """Two booted systemd hosts (PREFIX-01 trixie, PREFIX-02 bookworm) joined to the session lab's bridge and
    services, state dir STATE-SUFFIX; a generator for fixtures: yields the Lab, then downs it and checks that
    nothing of its own was left (the lab it joined is still up)."""
    _need_nspawn()
    state_dir = Path(f"{lab.state_dir}-{suffix}")
    hosts: list[LabHost] = []
    try:
        hosts.extend(up(2, state_dir=state_dir, boot="systemd", suite="trixie,bookworm", classes=classes,
                        join=lab.state_dir, name_prefix=name_prefix))
        yield Lab(hosts, state_dir)
    finally:
        pids = lab_pids(hosts)
        down(state_dir)
    own = {str(p) for p in pids} | {x for h in hosts for x in (h.netns, h.veth)}
    left = [x for x in lab_leftovers(state_dir, pids, hosts)
            if x.startswith(("cgroup", "mount", "process")) or x.split()[1].split("@")[0] in own]
    assert not left, f"{name_prefix} lab down left behind: {left}"


@pytest.fixture(scope="session")
def systemd_lab(lab):
    """Two booted systemd hosts (sys-01 trixie, sys-02 bookworm) on the lab's bridge, with its services.
    Their inventory is their own state dir (KIJUN_LAB_STATE=systemd_lab.state_dir)."""
    yield from joined_systemd_lab(lab, "systemd", classes="I,II", name_prefix="sys")


@pytest.fixture
def leftovers():
    """lab_leftovers(state_dir, pids) -> list of what a lab left behind, for tests of down()."""
    return lab_leftovers
