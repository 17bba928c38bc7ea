"""Verdicts an auditor can sign (issue 14), on real chroot lab hosts: break a measure behind kijun's
back, see the control fail with its reason, `kijun apply` fixes it, a second apply changes nothing.

Chroot lab hosts have no systemd, share the VM's kernel (/proc/sys read-only) and cannot reach the
audit interface: those parts must come out not-applicable with the reason, never pass.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun


def subset(tmp_path: Path, ids: set[str], item_params: dict | None = None, **variables) -> str:
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] in ids]
    for c in data["controls"]:
        for i in c["items"]:
            i.update((item_params or {}).get(i["type"], {}))
    data["variables"].update(variables)
    path = tmp_path / "subset.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def result(baseline: str, host, control_id: str) -> dict:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--limit", host.address, "--no-store", "--format", "json")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    hosts = json.loads(r.stdout)["hosts"]
    return next(res for h in hosts for res in h["results"] if res["control_id"] == control_id)


def apply(baseline: str, host) -> list[dict]:
    r = kijun("apply", "-i", INVENTORY, "-b", baseline, "--limit", host.address, "--no-store", "--no-verify",
              "--format", "json")
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return [op for o in json.loads(r.stdout)["hosts"] for op in o["changes"]]


def item(res: dict, status_word: str) -> dict:
    return next(i for i in res["items"] if status_word in (i.get("expected", "") + i.get("reason", "")))


def test_firewall_judged_on_the_loaded_ruleset(lab, tmp_path):
    host = lab.hosts[0]
    b = subset(tmp_path, {"NISC-NET-002"})
    apply(b, host)
    res = result(b, host, "NISC-NET-002")
    fw = item(res, "input chain")
    assert fw["status"] == "pass", fw
    assert "chain inet kijun_input input: hook input prio 0 policy drop" in fw["evidence"]
    # boot loading (nftables.service) cannot be seen without systemd: the control is not a pass
    assert res["status"] == "not-applicable" and "systemd is not PID 1" in res["reason"], res

    exec_in(host.name, "nft flush ruleset", state_dir=lab.state_dir, check=True)  # files untouched
    res = result(b, host, "NISC-NET-002")
    assert res["status"] == "fail" and "no input chain restricts IPv4 and IPv6" in res["reason"], res

    changed = [op for op in apply(b, host) if op["status"] == "changed"]
    assert changed, "apply did not reload the ruleset"
    assert item(result(b, host, "NISC-NET-002"), "input chain")["status"] == "pass"
    assert not [op for op in apply(b, host) if op["status"] == "changed"], "second apply changed something"

    # an operator's extra opening in another drop-policy table does not matter, one in kijun's chain does
    exec_in(host.name, "nft add rule inet kijun_input input tcp dport 8080 accept", state_dir=lab.state_dir, check=True)
    res = result(b, host, "NISC-NET-002")
    assert res["status"] == "fail" and "accept beyond the allow list" in res["reason"]
    assert "tcp dport 8080 accept" in res["evidence"]
    apply(b, host)
    assert item(result(b, host, "NISC-NET-002"), "input chain")["status"] == "pass"
    exec_in(host.name, "nft flush ruleset", state_dir=lab.state_dir, check=True)  # later tests expect an open host


def test_kernel_bound_items_are_not_applicable_with_what_was_seen(lab, tmp_path):
    host = lab.hosts[0]
    b = subset(tmp_path, {"NISC-HARDEN-001", "NISC-USB-001", "NISC-AUDIT-001"})
    res = result(b, host, "NISC-HARDEN-001")
    assert res["status"] == "not-applicable"
    assert all(i["reason"].startswith("host is a container (/proc/sys mounted read-only)") for i in res["items"]), res
    ops = apply(b, host)  # nothing for the kernel's sysctls: apply cannot change them here
    assert not [op for op in ops if op["control_id"] == "NISC-HARDEN-001" and op["status"] != "unchanged"], ops
    usb = result(b, host, "NISC-USB-001")
    assert usb["status"] == "not-applicable" and "loaded modules cannot be observed" in usb["reason"], usb
    exec_in(host.name, "rm -f /etc/modprobe.d/kijun-usb-storage.conf", state_dir=lab.state_dir, check=True)
    usb = result(b, host, "NISC-USB-001")
    assert usb["status"] == "fail" and "not banned" in usb["reason"]  # the on-disk ban apply can fix
    apply(b, host)
    assert result(b, host, "NISC-USB-001")["status"] == "not-applicable"
    # an installed auditd beside a service nobody can observe: never "pass — installed: auditd"
    aud = result(b, host, "NISC-AUDIT-001")
    assert aud["status"] == "not-applicable" and "systemd is not PID 1" in aud["reason"], aud


def test_audit_rules_on_disk_judged_loaded_part_not_applicable(lab, tmp_path):
    host = lab.hosts[0]  # class I: immutable wanted
    b = subset(tmp_path, {"NISC-AUDIT-003"})
    apply(b, host)
    res = result(b, host, "NISC-AUDIT-003")
    assert res["status"] == "not-applicable", res
    assert "Operation not permitted" in res["reason"] and "audit rules are the host kernel's" in res["reason"], res
    exec_in(host.name, "sed -i '/shadow/d' /etc/audit/rules.d/60-kijun-identity.rules; rm -f /etc/audit/rules.d/99-kijun-finalize.rules",
            state_dir=lab.state_dir, check=True)
    res = result(b, host, "NISC-AUDIT-003")
    assert res["status"] == "fail" and "/etc/shadow" in res["reason"] and "no -e 2" in res["reason"], res
    apply(b, host)
    assert result(b, host, "NISC-AUDIT-003")["status"] == "not-applicable"
    text = exec_in(host.name, "cat /etc/audit/rules.d/99-kijun-finalize.rules", state_dir=lab.state_dir).stdout
    assert "-e 2" in text.splitlines()


@pytest.fixture
def ntp_server(lab):
    """chronyd on the second lab host serving its own clock (local stratum 8) to the lab bridge only."""
    srv = lab.hosts[1]
    # an earlier module may have left an input firewall there that drops NTP: the server is not under test
    exec_in(srv.name, "nft flush ruleset", state_dir=lab.state_dir, check=True)
    exec_in(srv.name, "DEBIAN_FRONTEND=noninteractive apt-get install -y -q chrony >/dev/null 2>&1 && "
            "printf 'local stratum 8\\nallow all\\n' > /etc/chrony/kijun-test-server.conf && "
            "chronyd -x -f /etc/chrony/kijun-test-server.conf", state_dir=lab.state_dir, check=True, timeout=300)
    yield srv
    exec_in(srv.name, "kill $(cat /run/chrony/chronyd.pid)", state_dir=lab.state_dir)


def test_time_sync_judged_on_chronyd_tracking(lab, tmp_path, ntp_server):
    import time

    host = lab.hosts[0]
    # the starting point is a host with no time daemon running and no firewall (earlier tests, here and in
    # other modules, may have left a chronyd or a drop-policy ruleset that the NTP replies would meet)
    exec_in(host.name, "pkill -x chronyd; nft flush ruleset; true", state_dir=lab.state_dir)
    # the lab's offline repo has chrony, not systemd-timesyncd (the baseline's first choice)
    b = subset(tmp_path, {"NISC-TIME-001"}, {"time_sync": {"any_of": ["chrony"]}}, ntp_server=ntp_server.address)
    apply(b, host)  # installs chrony and writes the source; no systemd to start it here
    res = result(b, host, "NISC-TIME-001")
    assert res["status"] == "not-applicable" and "no time daemon answers" in res["reason"], res
    # an admin starts chronyd (-x: the clock is the VM's); it follows the lab server
    exec_in(host.name, "chronyd -x", state_dir=lab.state_dir, check=True)
    try:
        for _ in range(30):
            res = result(b, host, "NISC-TIME-001")
            if res["status"] == "pass":
                break
            time.sleep(2)
        assert res["status"] == "pass", res
        assert f"chrony synchronised to" in res["observed"] and ntp_server.address in res["observed"]
        # the source file removed behind kijun's back: fail, apply writes it again
        exec_in(host.name, "rm /etc/chrony/sources.d/kijun.sources", state_dir=lab.state_dir, check=True)
        res = result(b, host, "NISC-TIME-001")
        assert res["status"] == "fail" and "servers not configured" in res["reason"], res
        apply(b, host)
        assert result(b, host, "NISC-TIME-001")["status"] == "pass"
        assert not [op for op in apply(b, host) if op["status"] == "changed"]
    finally:
        exec_in(host.name, "kill $(cat /run/chrony/chronyd.pid)", state_dir=lab.state_dir)


def test_fim_database_schedule_and_recent_run(lab, tmp_path):
    host = lab.hosts[1]
    b = subset(tmp_path, {"NISC-FIM-001"})
    apply(b, host)  # installs AIDE, initialises the database, runs one check (logged)
    res = result(b, host, "NISC-FIM-001")
    # the check ran (AIDE's log says when); whether cron runs it cannot be seen without systemd
    assert res["status"] == "not-applicable", res
    assert "systemd is not PID 1: whether cron runs /etc/cron.daily/" in res["reason"]
    assert "Start timestamp:" in res["evidence"]
    print(exec_in(host.name, "ls -l /etc/cron.daily", state_dir=lab.state_dir).stdout)
    exec_in(host.name, "rm -f /var/lib/aide/aide.db /var/log/aide/aide.log*", state_dir=lab.state_dir, check=True)
    res = result(b, host, "NISC-FIM-001")
    assert res["status"] == "fail" and "database /var/lib/aide/aide.db missing or empty" in res["reason"]
    assert "no AIDE check ran" in res["reason"], res
    apply(b, host)
    assert result(b, host, "NISC-FIM-001")["status"] == "not-applicable"
    assert not [op for op in apply(b, host) if op["status"] == "changed"], "second apply changed something"


def test_locked_account_with_a_key_is_not_disabled(lab, tmp_path):
    host = lab.hosts[1]
    b = subset(tmp_path, {"NISC-ACCT-001"})
    sd = lab.state_dir
    exec_in(host.name, "useradd -m -s /bin/bash erin && usermod -p '$6$salt$hash' erin && "
            "chage -d $(( $(date +%s) / 86400 - 400 )) erin && usermod -L erin && mkdir -p /home/erin/.ssh && "
            "echo 'ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIBw6DQCk7gE3FQXlWvT4mrqY9b4qNqO6G0x0QbNvG1Qm erin@laptop' "
            "> /home/erin/.ssh/authorized_keys", state_dir=sd, check=True)
    res = result(b, host, "NISC-ACCT-001")
    assert res["status"] == "fail" and "erin (SSH key in /home/erin/.ssh/authorized_keys; shell /bin/bash)" in res["reason"], res
    apply(b, host)
    res = result(b, host, "NISC-ACCT-001")
    assert res["status"] == "pass", res
    assert exec_in(host.name, "getent shadow erin | cut -d: -f8", state_dir=sd).stdout.strip() == "1"  # expired
    assert not [op for op in apply(b, host) if op["status"] == "changed"], "second apply changed something"
    # an admin re-enables the account behind kijun's back (password still locked, key still there)
    exec_in(host.name, "chage -E -1 erin", state_dir=sd, check=True)
    res = result(b, host, "NISC-ACCT-001")
    assert res["status"] == "fail" and "SSH key in /home/erin/.ssh/authorized_keys" in res["reason"], res
    apply(b, host)
    assert result(b, host, "NISC-ACCT-001")["status"] == "pass"


@pytest.fixture
def collector(lab):
    """A TCP syslog collector on the lab bridge address (the controller's side of the lab)."""
    import socket
    import threading

    bridge = lab.hosts[0].address.rsplit(".", 1)[0] + ".1"
    srv = socket.create_server((bridge, 0))
    srv.settimeout(1)
    received: list[bytes] = []
    stop = threading.Event()

    def serve():
        conns = []
        while not stop.is_set():
            try:
                c, _ = srv.accept()
                c.settimeout(0.5)
                conns.append(c)
            except OSError:
                pass
            for c in conns:
                try:
                    data = c.recv(65536)
                    if data:
                        received.append(data)
                except OSError:
                    pass
        for c in conns:
            c.close()

    t = threading.Thread(target=serve, daemon=True)
    t.start()
    yield bridge, srv.getsockname()[1], received
    stop.set()
    t.join(timeout=5)
    srv.close()


def test_auth_logs_arrive_at_the_collector(lab, tmp_path, collector):
    import secrets
    import time

    host = lab.hosts[0]
    address, port, received = collector
    b = subset(tmp_path, {"NISC-LOG-005"}, log_server=address, log_server_port=port)
    res = result(b, host, "NISC-LOG-005")
    assert res["status"] == "fail" and "not forwarded" in res["reason"], res
    apply(b, host)  # writes the drop-in and starts rsyslogd (no systemd here)
    res = result(b, host, "NISC-LOG-005")
    assert res["status"] == "pass", res
    nonce = secrets.token_hex(8)
    exec_in(host.name, f"logger -p authpriv.notice kijun-nonce-{nonce}", state_dir=lab.state_dir, check=True)
    for _ in range(60):
        if any(nonce.encode() in r for r in received):
            break
        time.sleep(0.5)
    assert any(nonce.encode() in r for r in received), received[-3:]
    assert not [op for op in apply(b, host) if op["status"] == "changed"], "second apply changed something"
    # forwarding removed behind kijun's back and rsyslogd stopped
    exec_in(host.name, f"rm {lf_dropin()}; kill $(cat /run/rsyslogd.pid)", state_dir=lab.state_dir, check=True)
    time.sleep(1)
    res = result(b, host, "NISC-LOG-005")
    assert res["status"] == "fail" and "not forwarded" in res["reason"] and "rsyslogd is not running" in res["reason"]
    apply(b, host)
    assert result(b, host, "NISC-LOG-005")["status"] == "pass"
    exec_in(host.name, "kill $(cat /run/rsyslogd.pid)", state_dir=lab.state_dir)


def lf_dropin() -> str:
    from kijun.controls.log_forwarding import DROPIN
    return DROPIN


LISTEN = ("setsid python3 -c 'import socket,time; s=socket.create_server((\"0.0.0.0\", {port})); time.sleep(600)' "
          ">/dev/null 2>&1 & echo $! > /tmp/kijun-listen.pid")


def test_egress_behaviour_probe_on_lab_addresses(lab, tmp_path):
    """Only lab addresses are targets: a listener on one lab host is the allowed 'proxy', one on another must
    be unreachable. The controller (admin network) stays allowed: see the report on sessions the table cuts."""
    host, proxy_host, other_host = lab.hosts[2], lab.hosts[0], lab.hosts[1]
    controller = host.address.rsplit(".", 1)[0] + ".1"
    sd = lab.state_dir
    for h in (proxy_host, other_host):  # earlier tests may have left an input firewall there: not under test here
        exec_in(h.name, "nft flush ruleset", state_dir=sd, check=True)
    exec_in(proxy_host.name, LISTEN.format(port=3128), state_dir=sd, check=True)
    exec_in(other_host.name, LISTEN.format(port=3129), state_dir=sd, check=True)
    try:
        b = subset(tmp_path, {"NISC-NET-001"}, egress_allow_internal=f"{controller}/32",
                   egress_allow_proxy=proxy_host.address, egress_proxy_port=3128,
                   egress_probe_allowed=[{"address": proxy_host.address, "port": 3128}],
                   egress_probe_blocked=[{"address": other_host.address, "port": 3129}])
        res = result(b, host, "NISC-NET-001")  # no firewall yet: the must-be-blocked listener answers
        assert res["status"] == "fail" and f"connection to {other_host.address}:3129 succeeded (must be blocked)" in res["reason"], res
        apply(b, host)
        res = result(b, host, "NISC-NET-001")
        assert res["status"] == "pass", res
        assert f"connect {other_host.address}:3129: closed (want closed)" in res["evidence"]
        assert f"connect {proxy_host.address}:3128: open (want open)" in res["evidence"]
        exec_in(host.name, "nft flush ruleset", state_dir=sd, check=True)
        res = result(b, host, "NISC-NET-001")
        assert res["status"] == "fail" and f"connection to {other_host.address}:3129 succeeded (must be blocked)" in res["reason"], res
        apply(b, host)
        assert result(b, host, "NISC-NET-001")["status"] == "pass"
    finally:
        exec_in(host.name, "nft flush ruleset", state_dir=sd)
        for h in (proxy_host, other_host):
            exec_in(h.name, "kill $(cat /tmp/kijun-listen.pid)", state_dir=sd)
