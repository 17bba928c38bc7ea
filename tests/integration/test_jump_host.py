"""Branch networks behind a jump host: a host the controller cannot reach directly is checked (OpenSSH,
via testinfra) and planned (paramiko, via pyinfra) through ProxyJump from an ssh_config, with host keys
verified on both hops."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kijun.lab import exec_in
from kijun.lab.hosts import BRIDGE_ADDR

ROOT = Path(__file__).resolve().parents[2]
JUMP_PORT = 2222  # a second sshd on the jump host: the baseline turns TCP forwarding off on port 22
CONTROLLER = BRIDGE_ADDR.split("/")[0]


def kijun(*args):
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYINFRA_PROGRESS": "off"}, timeout=600)


@pytest.fixture
def branch(lab):
    """lab-01 becomes the branch's jump host; the controller's direct path to lab-02 is dropped."""
    jump, hidden = lab.hosts[0], lab.hosts[1]
    # Earlier tests may have applied a baseline whose host and egress firewalls keep port 2222 closed and
    # the jump host from opening connections: the branch's jump host is set up for the job, so put it aside.
    exec_in(jump.name, "nft list ruleset > /run/jumptest-saved.nft && nft flush ruleset",
            state_dir=lab.state_dir, check=True)
    exec_in(jump.name, f"/usr/sbin/sshd -p {JUMP_PORT} -o AllowTcpForwarding=yes -o PidFile=/run/sshd-jump.pid",
            state_dir=lab.state_dir, check=True)
    exec_in(hidden.name, "nft add table inet kijun_jumptest && "
            "nft add chain inet kijun_jumptest input '{ type filter hook input priority -10; }' && "
            f"nft add rule inet kijun_jumptest input ip saddr {CONTROLLER} tcp dport 22 drop",
            state_dir=lab.state_dir, check=True)
    try:
        yield jump, hidden
    finally:
        exec_in(hidden.name, "nft delete table inet kijun_jumptest", state_dir=lab.state_dir)
        exec_in(jump.name, "kill $(cat /run/sshd-jump.pid)", state_dir=lab.state_dir)
        exec_in(jump.name, "nft -f /run/jumptest-saved.nft", state_dir=lab.state_dir)


def write_branch_files(tmp_path, jump, hidden, via_jump: bool) -> Path:
    known = tmp_path / "known_hosts"
    lines = Path(jump.known_hosts).read_text().splitlines()
    # OpenSSH and paramiko look a non-22 port up as [address]:port
    extra = [f"[{jump.address}]:{JUMP_PORT} {ln.split(None, 1)[1]}" for ln in lines
             if ln.strip() and jump.address in ln.split(None, 1)[0].split(",")]
    known.write_text("\n".join(lines + extra) + "\n")
    config = tmp_path / "ssh_config"
    config.write_text(
        f"Host branch-jump\n  HostName {jump.address}\n  Port {JUMP_PORT}\n  User kijun\n"
        f"  IdentityFile {jump.ssh_key}\n  IdentitiesOnly yes\n  UserKnownHostsFile {known}\n"
        f"  StrictHostKeyChecking yes\n  BatchMode yes\n  ConnectTimeout 60\n\n"
        + (f"Host {hidden.address}\n  ProxyJump branch-jump\n" if via_jump else ""))
    data = {"ssh_user": "kijun", "_sudo": True, "ssh_key": hidden.ssh_key, "ssh_known_hosts_file": str(known),
            "ssh_strict_host_key_checking": "yes", "ssh_config_file": str(config),
            "kijun_class": "III", "kijun_org": "lab-ministry", "kijun_branch": "branch-office", "kijun_name": "hidden"}
    inv = tmp_path / "inventory.py"
    inv.write_text(f"hosts = [({hidden.address!r}, {data!r})]\n")
    return inv


def test_direct_path_is_blocked_so_the_host_is_unreachable(lab, branch, tmp_path):
    inv = write_branch_files(tmp_path, *branch, via_jump=False)
    r = kijun("check", "-i", str(inv), "--no-store", "--format", "json", "--connect-timeout", "3")
    assert r.returncode == 1, r.stderr
    [host] = json.loads(r.stdout)["hosts"]
    assert not host["reachable"] and "pass" not in {x["status"] for x in host["results"]}


def test_check_and_dry_apply_through_the_jump_host(lab, branch, tmp_path):
    jump, hidden = branch
    inv = write_branch_files(tmp_path, jump, hidden, via_jump=True)
    r = kijun("check", "-i", str(inv), "--no-store", "--format", "json", "--connect-timeout", "60")
    assert r.returncode in (0, 1), r.stderr
    [host] = json.loads(r.stdout)["hosts"]
    assert host["reachable"], host["error"]
    assert host["facts"]["hostname"] == hidden.name  # it really is the hidden host that answered
    assert host["commands"] == 1
    assert any(x["status"] == "pass" for x in host["results"])

    r = kijun("apply", "-i", str(inv), "--dry", "--format", "json")
    assert r.returncode in (0, 1), r.stderr
    [out] = json.loads(r.stdout)["hosts"]  # the dry run's report
    assert out["host"] == "hidden" and not out.get("error"), out


def test_jump_host_key_is_verified(lab, branch, tmp_path):
    jump, hidden = branch
    inv = write_branch_files(tmp_path, jump, hidden, via_jump=True)
    known = tmp_path / "known_hosts"
    lines = known.read_text().splitlines()
    hidden_keys = {ln.split()[1]: ln.split()[2] for ln in lines if ln.split()[0].startswith(hidden.address + ",")}
    # the jump host's names with lab-02's keys: a man in the middle on the first hop
    known.write_text("".join(
        (f"{ln.split()[0]} {ln.split()[1]} {hidden_keys[ln.split()[1]]}" if jump.address in ln.split()[0] else ln) + "\n"
        for ln in lines))
    r = kijun("check", "-i", str(inv), "--no-store", "--format", "json", "--connect-timeout", "60")
    [host] = json.loads(r.stdout)["hosts"]
    assert not host["reachable"], "a jump host with an unexpected key must not be trusted"
    assert "host key" in host["error"].lower() or "proxy" in host["error"].lower(), host["error"]
    assert "pass" not in {x["status"] for x in host["results"]}
