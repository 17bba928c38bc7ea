"""Booted systemd lab hosts (trixie and bookworm) and the services on the lab bridge (issue 13).

systemd_lab: sys-01 (trixie) and sys-02 (bookworm), systemd-nspawn --boot, on the session lab's bridge.
"""

from __future__ import annotations

import json
import os
import re
import secrets
import shlex
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kijun.lab import down, exec_in, load, start_host, stop_host, up
from kijun.lab.hosts import load_state
from kijun.lab.services import publish_security_update

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def ssh(host, command: str, timeout: float = 120) -> subprocess.CompletedProcess:
    """As root through the automation account's sudo, over SSH with strict host keys."""
    return subprocess.run(host.ssh_command("kijun") + ["-o", "ConnectTimeout=60", f"sudo -n sh -c {shlex.quote(command)}"],
                          capture_output=True, text=True, timeout=timeout)


def kijun(state_dir: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "KIJUN_LAB_STATE": str(state_dir), "PYINFRA_PROGRESS": "off"}
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env=env, timeout=1200)


def wait_for(fn, timeout: float = 60, step: float = 0.5):
    deadline = time.monotonic() + timeout
    while True:
        value = fn()
        if value or time.monotonic() > deadline:
            return value
        time.sleep(step)


def test_hosts_boot_systemd_with_journald_logind_and_timers(systemd_lab):
    assert [(h.name, h.suite, h.boot) for h in systemd_lab.hosts] == [("sys-01", "trixie", "systemd"),
                                                                    ("sys-02", "bookworm", "systemd")]
    for h in systemd_lab.hosts:
        nonce = secrets.token_hex(8)
        r = ssh(h, f"""
            . /etc/os-release; echo "codename=$VERSION_CODENAME"
            echo "pid1=$(cat /proc/1/comm)"
            echo "state=$(systemctl is-system-running)"
            echo "sshd=$(systemctl is-active ssh)"
            systemctl list-timers --all --no-legend | awk '{{print "timer=" $0}}'
            loginctl list-sessions --no-legend | awk '{{print "session=" $0}}'
            logger -t kijun-journal-test {nonce}
            for i in $(seq 50); do journalctl -q -t kijun-journal-test --no-pager | grep -q {nonce} && break; sleep 0.2; done
            journalctl -q -t kijun-journal-test --no-pager | grep -c {nonce} | sed 's/^/journal=/'
        """)
        assert r.returncode == 0, r.stderr
        out = r.stdout
        assert f"codename={h.suite}" in out
        assert "pid1=systemd" in out
        assert re.search(r"^state=(running|degraded)$", out, re.M), out
        assert "sshd=active" in out
        assert re.search(r"^timer=.*logrotate\.timer", out, re.M), out
        assert re.search(r"^session=", out, re.M), "logind registered no session for this SSH login"
        assert "journal=1" in out, out
        # each host in a cgroup of its own: its systemd manages only its own units
        assert "219/CGROUP" not in exec_in(h.name, "systemctl status --no-pager ssh cron 2>&1",
                                           state_dir=systemd_lab.state_dir).stdout


def test_net_sysctls_are_the_hosts_own_and_kernel_ones_read_only(systemd_lab):
    vm_before = Path("/proc/sys/kernel/kptr_restrict").read_text()
    for h in systemd_lab.hosts:
        r = ssh(h, "sysctl -w net.ipv4.conf.all.accept_redirects=1 && sysctl -w net.ipv4.conf.all.accept_redirects=0"
                   " && sysctl -n net.ipv4.conf.all.accept_redirects")
        assert r.returncode == 0 and r.stdout.strip().endswith("0"), r.stderr  # a baseline can set them
        assert ssh(h, "sysctl -w kernel.kptr_restrict=2").returncode != 0  # would change the VM itself
    assert Path("/proc/sys/kernel/kptr_restrict").read_text() == vm_before


def test_inventory_carries_suite_and_boot(systemd_lab):
    code = ("import json, runpy; ns = runpy.run_path('inventories/lab.py'); "
            "print(json.dumps({h[1]['kijun_name']: [h[1]['kijun_lab_suite'], h[1]['kijun_lab_boot'], h[1].get('kijun_vars', {})]"
            " for h in ns['lab']}))")
    r = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60,
                       env={**os.environ, "KIJUN_LAB_STATE": str(systemd_lab.state_dir)})
    assert r.returncode == 0, r.stderr
    data = json.loads(r.stdout)
    bridge_ip = load_state(systemd_lab.state_dir)["netcfg"]["bridge_addr"].split("/")[0]
    assert {k: v[:2] for k, v in data.items()} == {"sys-01": ["trixie", "systemd"], "sys-02": ["bookworm", "systemd"]}
    # a lab on lab 0's addresses needs no kijun_vars: the baseline's defaults are its bridge (inventories/lab.py)
    defaults = yaml.safe_load((ROOT / "baselines" / "nisc-core.yaml").read_text(encoding="utf-8"))["variables"]
    assert all(v[2].get("log_server", defaults["log_server"]) == bridge_ip
               and v[2].get("ntp_server", defaults["ntp_server"]) == bridge_ip for v in data.values())


def test_stop_start_reboots_with_same_host_keys(systemd_lab):
    h = systemd_lab.hosts[1]
    marker = secrets.token_hex(6)
    assert ssh(h, f"echo {marker} > /var/tmp/kijun-disk; echo {marker} > /run/kijun-ram").returncode == 0
    stop_host(h.name, systemd_lab.state_dir)
    r = ssh(h, "true", timeout=120)
    assert r.returncode == 255 and "refused" in r.stderr.lower(), r.stderr
    start_host(h.name, systemd_lab.state_dir)
    h2 = next(x for x in load(systemd_lab.state_dir) if x.name == h.name)
    systemd_lab.hosts[1] = h2
    # strict host key checking against the known_hosts written at `up`: the same keys came back
    r = ssh(h2, "cat /var/tmp/kijun-disk; cat /run/kijun-ram 2>/dev/null || echo ram-gone; systemctl is-system-running")
    assert r.returncode == 0, r.stderr
    assert r.stdout.split()[:2] == [marker, "ram-gone"], r.stdout  # disk kept, tmpfs /run rebooted
    assert r.stdout.split()[2] in ("running", "degraded")


def test_mirror_security_update_pending_applied_none(systemd_lab):
    published = publish_security_update(systemd_lab.state_dir, "rsyslog")
    assert set(published) == {"trixie", "bookworm"}
    for h in systemd_lab.hosts:
        r = ssh(h, "apt-get -q update --error-on=any >/dev/null && apt-get -s -o Debug::NoLocking=1 upgrade")
        assert r.returncode == 0, r.stderr
        inst = [ln for ln in r.stdout.splitlines() if ln.startswith("Inst rsyslog ")]
        assert inst and published[h.suite] in inst[0] and "-security" in inst[0], r.stdout

    # kijun's own patch detection and apply against that update: pending -> applied -> none
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if any(i["type"] == "patch_state" for i in c["items"])]
    data["variables"]["patch_unattended_upgrades"] = False
    baseline = systemd_lab.state_dir / "patch-only.yaml"
    baseline.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    [cid] = [c["id"] for c in data["controls"]]

    def statuses():
        r = kijun(systemd_lab.state_dir, "check", "-i", "inventories/lab.py", "-b", str(baseline), "--no-store",
                  "--format", "json", "--connect-timeout", "60")
        assert r.returncode in (0, 1), r.stderr[-2000:]
        return {x["host"]: {y["control_id"]: y["status"] for y in x["results"]} for x in json.loads(r.stdout)["hosts"]}

    assert {n: s[cid] for n, s in statuses().items()} == {"sys-01": "fail", "sys-02": "fail"}
    r = kijun(systemd_lab.state_dir, "apply", "-i", "inventories/lab.py", "-b", str(baseline), "--no-verify")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    for h in systemd_lab.hosts:
        v = ssh(h, "dpkg-query -W -f '${Version}' rsyslog").stdout
        assert v == published[h.suite]
    assert {n: s[cid] for n, s in statuses().items()} == {"sys-01": "pass", "sys-02": "pass"}


def test_log_collector_receives_forwarded_records(systemd_lab):
    svc = load_state(systemd_lab.state_dir)["services"]
    log = Path(svc["dir"]) / "syslog.log"
    for h, proto in zip(systemd_lab.hosts, ("@@", "@")):  # TCP from one host, UDP from the other
        nonce = secrets.token_hex(8)
        r = ssh(h, f"echo '*.* {proto}{svc['bridge_ip']}:514' > /etc/rsyslog.d/90-kijun-test-forward.conf; "
                   f"systemctl restart rsyslog; logger -t kijun-forward-test {nonce}")
        assert r.returncode == 0, r.stderr
        line = wait_for(lambda: [ln for ln in log.read_text(errors="replace").splitlines() if nonce in ln], 60)
        assert line and line[0].split()[1] == h.address and "kijun-forward-test" in line[0], log.read_text()[-2000:]
        ssh(h, "rm -f /etc/rsyslog.d/90-kijun-test-forward.conf; systemctl restart rsyslog")


def test_internet_address_reachable_until_egress_is_blocked(systemd_lab):
    svc = load_state(systemd_lab.state_dir)["services"]
    h = systemd_lab.hosts[0]
    probe = (f"python3 -c \"import socket; s = socket.create_connection(('{svc['internet_ip']}', 80), timeout=5); "
             f"s.sendall(b'GET /{h.name} HTTP/1.0\\r\\n\\r\\n'); print(s.recv(200).decode())\"")
    r = ssh(h, probe)
    assert r.returncode == 0 and "forbidden-internet" in r.stdout, r.stdout + r.stderr
    assert wait_for(lambda: f"{h.address} port 80: GET /{h.name}" in (Path(svc["dir"]) / "internet.log").read_text())
    # a separated host: its firewall drops the way out, and the address really becomes unreachable
    r = ssh(h, f"nft add table inet kijuntest && nft add chain inet kijuntest out '{{ type filter hook output "
               f"priority 0; policy accept; }}' && nft add rule inet kijuntest out ip daddr {svc['internet_ip']} drop; "
               f"{probe}; echo rc=$?; nft delete table inet kijuntest")
    assert "rc=1" in r.stdout and "forbidden-internet" not in r.stdout, r.stdout + r.stderr


def test_proxy_and_time_host_answer_on_the_bridge(systemd_lab):
    svc = load_state(systemd_lab.state_dir)["services"]
    h = systemd_lab.hosts[1]
    code = (
        "import socket, struct, time\n"
        f"s = socket.create_connection(('{svc['bridge_ip']}', 3128), timeout=10)\n"
        "s.sendall(b'CONNECT deb.debian.org:443 HTTP/1.1\\r\\n\\r\\n'); print(s.recv(100).split(b'\\r\\n')[0].decode())\n"
        "u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.settimeout(10)\n"
        f"u.sendto(b'\\x23' + bytes(47), ('{svc['bridge_ip']}', 123)); d = u.recv(100)\n"
        "print('mode', d[0] & 7, 'stratum', d[1], 'offset', abs(struct.unpack('!I', d[40:44])[0] - 2208988800 - time.time()) < 60)\n")
    r = ssh(h, f"python3 -c {shlex.quote(code)}")
    assert r.returncode == 0, r.stderr
    assert "HTTP/1.0 403" in r.stdout and "mode 4 stratum 2 offset True" in r.stdout, r.stdout
    assert f"{h.address} port 3128: CONNECT deb.debian.org:443" in (Path(svc["dir"]) / "proxy.log").read_text()


def test_lab_cli_exec_ssh_and_status(systemd_lab):
    env = {**os.environ, "KIJUN_LAB_STATE": str(systemd_lab.state_dir)}
    cli = [sys.executable, "-m", "kijun.cli", "lab"]
    r = subprocess.run(cli + ["exec", "sys-01", "--", "sh", "-c", "hostname; systemctl is-active ssh; exit 3"],
                       capture_output=True, text=True, env=env, cwd=ROOT, timeout=120)
    assert (r.returncode, r.stdout.split()) == (3, ["sys-01", "active"]), r.stderr
    r = subprocess.run(cli + ["ssh", "sys-01"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    assert r.stdout.strip().endswith(f"kijun@{systemd_lab.hosts[0].address}"), r.stdout
    r = subprocess.run(shlex.split(r.stdout) + ["sudo -n id -u"], capture_output=True, text=True, timeout=120)
    assert r.stdout.strip() == "0", r.stderr
    r = subprocess.run(cli + ["status"], capture_output=True, text=True, env=env, cwd=ROOT, timeout=60)
    rows = [ln.split("\t") for ln in r.stdout.splitlines()]
    assert [(x[0], x[6], x[7], x[8]) for x in rows] == [("sys-01", "trixie", "systemd", "running"),
                                                      ("sys-02", "bookworm", "systemd", "running")]


def test_down_takes_the_bridge_from_the_recorded_state(lab, tmp_path):
    """`down` of a directory holding no lab must not touch the running lab's bridge, whatever the env says."""
    bridge = load_state(lab.state_dir)["netcfg"]["bridge"]
    empty = tmp_path / "no-lab"
    empty.mkdir()
    env = {k: v for k, v in os.environ.items() if k != "KIJUN_LAB_NET"}
    for e in (env, {**env, "KIJUN_LAB_NET": bridge.removeprefix("kijunbr")}):
        r = subprocess.run([sys.executable, "-m", "kijun.cli", "lab", "down", "--state", str(empty)],
                           capture_output=True, text=True, env=e, cwd=ROOT, timeout=120)
        assert r.returncode == 0, r.stderr
        assert Path(f"/sys/class/net/{bridge}").exists(), "down of an empty state dir removed a lab's bridge"


def test_joined_systemd_lab_down_leaves_nothing(lab, systemd_lab, tmp_path, leftovers):
    state = tmp_path / "extra"
    hosts = up(1, state_dir=state, boot="systemd", suite="trixie", join=lab.state_dir, name_prefix="tmp")
    pids = [rec[0] for h in hosts for rec in h.pids.values()]
    assert all(Path(f"/proc/{p}").exists() for p in pids)
    down(state)
    [h] = hosts
    names = (h.netns, h.veth, h.cgroup, str(state), *(f"pid {p}" for p in pids))
    assert [x for x in leftovers(state, pids, hosts) if any(n in x for n in names)] == []
    assert not Path(f"/run/netns/{h.netns}").exists() and not Path(f"/sys/class/net/{h.veth}").exists()
    # the lab it joined and the other joined lab are untouched
    bridge = load_state(lab.state_dir)["netcfg"]["bridge"]
    assert Path(f"/sys/class/net/{bridge}").exists()
    assert ssh(systemd_lab.hosts[0], "true").returncode == 0
    assert int(Path("/proc/sys/fs/inotify/max_user_instances").read_text()) >= 8192  # systemd_lab still runs
