"""The lab itself: real sshd hosts, strict host keys, isolation, stop/start, clean teardown."""

from __future__ import annotations

import os
import re
import socket
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import lab_leftovers
from kijun.lab import exec_in, load, start_host, status, stop_host
from kijun.lab.hosts import BRIDGE, NET, load_state, net_config

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[2]


def ssh(host, command: str, user: str | None = None, known_hosts: str | None = None, timeout: float = 60):
    """Run a command over SSH; by default as root through the kijun account's sudo, because a baseline
    applied earlier in the session turns root SSH logins off (as it should)."""
    if user is None:
        user, command = "kijun", f"sudo -n sh -c {shlex.quote(command)}"
    cmd = host.ssh_command(user)
    if known_hosts:
        cmd = [c if not c.startswith("UserKnownHostsFile=") else f"UserKnownHostsFile={known_hosts}" for c in cmd]
    return subprocess.run(cmd + ["-o", "ConnectTimeout=5", command], capture_output=True, text=True,
                          timeout=timeout)


def test_ssh_strict_host_keys_and_hostnames(lab):
    names = []
    for h in lab.hosts:
        r = ssh(h, "hostname; id -u")
        assert r.returncode == 0, r.stderr
        hostname, uid = r.stdout.split()
        assert (hostname, uid) == (h.name, "0")
        names.append(hostname)
    assert len(set(names)) == len(lab.hosts)


def test_host_keys_are_per_host(lab):
    keys = [line.split()[2] for line in Path(lab.hosts[0].known_hosts).read_text().splitlines()]
    assert len(keys) == 2 * len(lab.hosts)  # ed25519 + ecdsa per host
    assert len(set(keys)) == len(keys)


def test_wrong_or_missing_known_hosts_entry_is_rejected(lab, tmp_path):
    a, b = lab.hosts[0], lab.hosts[1]
    lines = Path(a.known_hosts).read_text().splitlines()
    # A's address carrying B's keys: a man in the middle as far as ssh can tell.
    forged = [f"{a.address} {ln.split()[1]} {ln.split()[2]}" for ln in lines if ln.startswith(b.address + ",")]
    (tmp_path / "forged").write_text("\n".join(forged) + "\n")
    r = ssh(a, "true", known_hosts=str(tmp_path / "forged"))
    assert r.returncode == 255
    assert "REMOTE HOST IDENTIFICATION HAS CHANGED" in r.stderr or "verification failed" in r.stderr
    (tmp_path / "empty").write_text("")
    r = ssh(a, "true", known_hosts=str(tmp_path / "empty"))
    assert r.returncode == 255 and "Host key verification failed" in r.stderr  # no trust on first use


def test_kijun_user_has_nopasswd_sudo(lab):
    r = ssh(lab.hosts[0], "id -un; sudo -n id -u", user="kijun")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["kijun", "0"]


def test_processes_and_network_are_isolated(lab):
    a, b = lab.hosts[0], lab.hosts[1]
    marker = "sleep 4711"
    r = ssh(b, f"setsid nohup {marker} >/dev/null 2>&1 </dev/null & echo started")
    assert r.returncode == 0, r.stderr
    try:
        seen_b = ssh(b, "ps -eo args").stdout
        seen_a = ssh(a, "ps -eo pid=,args=").stdout
        assert marker in seen_b
        assert marker not in seen_a
        assert seen_a.split("\n")[0].split()[0] == "1" and "tini" in seen_a.split("\n")[0]  # own pid namespace
        assert len(seen_a.strip().splitlines()) < 15  # none of the VM's processes
        addrs = ssh(a, "ip -o -4 addr show").stdout
        assert a.address in addrs and b.address not in addrs
        routes = ssh(a, "ip route").stdout
        assert "default" not in routes
    finally:
        exec_in(b.name, ["pkill", "-f", marker], state_dir=lab.state_dir)


def test_sysctls_net_per_host_kernel_read_only(lab):
    a, b = lab.hosts[0], lab.hosts[1]
    before_vm = Path("/proc/sys/kernel/kptr_restrict").read_text()
    r = ssh(a, "sysctl -w net.ipv4.conf.all.accept_redirects=0 && sysctl -n net.ipv4.conf.all.accept_redirects")
    assert r.returncode == 0 and r.stdout.strip().endswith("0"), r.stderr
    ssh(b, "sysctl -w net.ipv4.conf.all.accept_redirects=1")
    assert ssh(a, "sysctl -n net.ipv4.conf.all.accept_redirects").stdout.strip() == "0"
    r = ssh(a, "sysctl -w kernel.kptr_restrict=2")
    assert r.returncode != 0  # would change the VM: read-only in lab hosts
    assert Path("/proc/sys/kernel/kptr_restrict").read_text() == before_vm


def test_offline_repository_installs_packages(lab):
    h = lab.hosts[-1]
    r = ssh(h, "grep -rhv '^#' /etc/apt/sources.list /etc/apt/sources.list.d/ 2>/dev/null | grep .")
    # the offline repository, and the lab's own update mirror on its bridge: no other source, nothing outside
    mirror = load_state(lab.state_dir)["services"]["mirror"]
    assert sorted(r.stdout.split("\n")[:-1]) == sorted(["deb [trusted=yes] file:/srv/kijun-repo ./",
                                                        f"deb [trusted=yes] {mirror}/debian-security {h.suite}-security main"])
    assert mirror.startswith(f"http://{load_state(lab.state_dir)['netcfg']['subnet']}.0.1:")
    r = ssh(h, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q tcpdump >/dev/null && dpkg-query -W tcpdump"
               " && apt-get purge -y -q tcpdump >/dev/null", timeout=180)
    assert r.returncode == 0, r.stderr
    assert r.stdout.startswith("tcpdump\t")


def test_exec_in_runs_inside_host(lab):
    h = lab.hosts[0]
    r = exec_in(h.name, ["hostname"], state_dir=lab.state_dir, check=True)
    assert r.stdout.strip() == h.name
    exec_in(h.name, "echo planted > /etc/kijun-drift", state_dir=lab.state_dir, check=True)
    assert ssh(h, "cat /etc/kijun-drift; rm /etc/kijun-drift").stdout.strip() == "planted"


def test_stop_host_makes_it_unreachable_and_start_host_brings_it_back(lab):
    h = lab.hosts[-1]
    stop_host(h.name, lab.state_dir)
    try:
        assert [s["running"] for s in status(lab.state_dir) if s["name"] == h.name] == [False]
        with pytest.raises(OSError):
            socket.create_connection((h.address, 22), timeout=3).close()
        r = ssh(h, "true")
        assert r.returncode == 255
        others = [x for x in lab.hosts if x.name != h.name]
        assert ssh(others[0], "true").returncode == 0  # the others are untouched
    finally:
        start_host(h.name, lab.state_dir)
    r = ssh(h, "hostname")  # same host keys: strict checking still passes
    assert r.returncode == 0 and r.stdout.strip() == h.name, r.stderr


def test_reset_puts_a_host_back_as_up_made_it(lab):
    """`kijun lab reset NAME`: disk, processes and network namespace (firewall, net sysctls) as provisioned;
    same host keys and address (strict checking passes); the other hosts are not touched."""
    h, other = lab.hosts[0], lab.hosts[1]
    sd = lab.state_dir
    exec_in(h.name, "echo changed > /etc/kijun-reset-marker && useradd kijun-eve && nft add table inet kijun_reset_t "
            "&& sysctl -qw net.ipv4.ip_forward=1 && (setsid sleep 900 </dev/null >/dev/null 2>&1 &)",
            state_dir=sd, check=True)
    exec_in(other.name, "echo kept > /etc/kijun-reset-marker", state_dir=sd, check=True)
    try:
        r = subprocess.run([sys.executable, "-m", "kijun.cli", "lab", "reset", h.name, "--state", str(sd)],
                           capture_output=True, text=True, timeout=300, cwd=REPO)
        assert r.returncode == 0 and f"{h.name}: reset" in r.stderr, r.stderr
        lab.hosts[:] = load(sd)  # new pids for the session's teardown check
        state = ssh(h, "cat /etc/kijun-reset-marker 2>&1; id kijun-eve 2>&1; nft list tables; "
                       "sysctl -n net.ipv4.ip_forward; pgrep -x sleep || echo no-sleep; hostname")
        assert state.returncode == 0, state.stderr
        out = state.stdout
        assert "No such file" in out and "no such user" in out and "kijun_reset_t" not in out, out
        assert out.split()[-2:] == ["no-sleep", h.name] and "\n0\n" in out, out
        assert ssh(other, "cat /etc/kijun-reset-marker").stdout.strip() == "kept"
        assert [s["running"] for s in status(sd)] == [True] * len(lab.hosts)
    finally:
        exec_in(other.name, "rm -f /etc/kijun-reset-marker", state_dir=sd)


def test_sshd_restart_by_init_script_keeps_host_alive(lab):
    # A baseline that hardens sshd restarts it; without systemd that goes through /etc/init.d/ssh.
    h = lab.hosts[0]
    r = ssh(h, "service ssh restart")
    assert r.returncode == 0, r.stderr
    for _ in range(50):
        r = ssh(h, "hostname")
        if r.returncode == 0:
            break
        time.sleep(0.2)
    assert r.stdout.strip() == h.name, r.stderr
    assert [s["running"] for s in status(lab.state_dir) if s["name"] == h.name] == [True]


def test_pyinfra_inventory_strict_host_keys(lab):
    env = dict(os.environ, KIJUN_LAB_STATE=str(lab.state_dir), PYINFRA_PROGRESS="off")
    pyinfra = [sys.executable, "-m", "pyinfra"]
    r = subprocess.run(pyinfra + ["-y", "inventories/lab.py", "exec", "--", "hostname"], cwd=REPO, env=env,
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stdout + r.stderr
    out = re.findall(r"^\[([\d.]+)\]\s+(lab-\d+)\s*$", r.stdout + r.stderr, re.M)
    assert sorted(out) == sorted((h.address, h.name) for h in lab.hosts)


def test_down_leaves_nothing_and_up_again(lab, tmp_path):
    # A lab of its own (another lab number, driven through the CLI as a user would): downing the session
    # lab here would pull the bridge from under the booted hosts joined to it (systemd_lab) and every later test.
    net = next(n for n in range(9, 0, -1) if n != NET and not Path(f"/sys/class/net/kijunbr{n}").exists())
    cfg = net_config(net)
    state = tmp_path / "own-lab"
    env = dict(os.environ, KIJUN_LAB_NET=str(net), KIJUN_LAB_STATE=str(state))
    kijun = [sys.executable, "-m", "kijun.cli", "lab"]

    def run(*args):
        r = subprocess.run(kijun + list(args), cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        assert r.returncode == 0, r.stdout + r.stderr

    try:
        run("up", "2", "--no-services", "--state", str(state))
        hosts = load(state)
        assert len(hosts) == 2 and all(h.address.startswith(cfg["subnet"] + ".") for h in hosts)
        pids = [rec[0] for h in hosts for rec in h.pids.values()]
        assert pids and all(Path(f"/proc/{p}").exists() for p in pids)
        t0 = time.monotonic()
        run("down", "--state", str(state))
        run("down", "--state", str(state))  # idempotent
        assert time.monotonic() - t0 < 120  # generous: a loaded 2-core machine
        assert lab_leftovers(state, pids, hosts, cfg) == []
        assert not (state / "hosts").exists()
        assert Path(f"/sys/class/net/{BRIDGE}").exists(), "the session lab's bridge must be untouched"
        run("up", "1", "--no-services", "--state", str(state))
        again = load(state)
        assert ssh(again[0], "hostname").stdout.strip() == again[0].name
    finally:
        subprocess.run(kijun + ["down", "--state", str(state)], cwd=REPO, env=env, capture_output=True, timeout=600)
