"""Remote-access mechanisms on a real lab host (NISC-NET-009/010, type remote_access, observe-only):
a fresh host passes (only sshd listens, no modem); a listener outside the allow-list, an `ssh -R`
client and a modem device node make it fail, with each named; apply changes none of them."""

from __future__ import annotations

import json

import pytest
import yaml

from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun

IDS = ("NISC-NET-009", "NISC-NET-010")
# A TCP service on 0.0.0.0:5900 that accepts and never answers (so the ssh client below stays
# connected, waiting for a banner), one on loopback only, and a UDP socket.
HOLD = """import socket
t = socket.socket(); t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1); t.bind(("0.0.0.0", 5900)); t.listen()
l = socket.socket(); l.bind(("127.0.0.1", 8080)); l.listen()
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); u.bind(("0.0.0.0", 1194))
conns = []
while True:
    conns.append(t.accept()[0])
"""


@pytest.fixture(scope="module")
def remote_baseline(tmp_path_factory) -> str:
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] in IDS]
    assert len(data["controls"]) == len(IDS)
    path = tmp_path_factory.mktemp("remote") / "remote.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def results(baseline: str, host: str) -> dict[str, dict]:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--limit", host, "--format", "json", "--no-store")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    return {x["control_id"]: x for h in json.loads(r.stdout)["hosts"] for x in h["results"]}


def test_remote_access_mechanisms_found_and_left_alone(lab, remote_baseline):
    host = lab.hosts[0]

    def sh(cmd: str):
        return exec_in(host.name, cmd, state_dir=lab.state_dir, check=True).stdout

    before = results(remote_baseline, host.name)
    for cid in IDS:
        assert before[cid]["status"] == "pass", before[cid]
    assert "listening: tcp/22" in before["NISC-NET-009"]["observed"]

    sh("cat > /tmp/kijun-hold.py <<'PY'\n" + HOLD + "PY\n"
       "setsid python3 /tmp/kijun-hold.py </dev/null >/dev/null 2>&1 & echo $! > /tmp/kijun-hold.pids; sleep 1; "
       "setsid ssh -N -o BatchMode=yes -o StrictHostKeyChecking=no -R 9000:localhost:22 -p 5900 kijun@127.0.0.1 "
       "</dev/null >/dev/null 2>&1 & echo $! >> /tmp/kijun-hold.pids; mknod /dev/ttyACM0 c 166 0; sleep 1")
    try:
        after = results(remote_baseline, host.name)
        net, modem = after["NISC-NET-009"], after["NISC-NET-010"]
        assert net["status"] == "fail", net
        assert "tcp/5900 (python3)" in net["observed"] and "udp/1194 (python3)" in net["observed"], net
        assert "8080" not in net["observed"], net  # loopback only
        assert "running: ssh -R" in net["observed"], net
        assert modem["status"] == "fail" and "/dev/ttyACM0" in modem["observed"], modem

        real = kijun("apply", "-i", INVENTORY, "-b", remote_baseline, "--limit", host.name, "--format", "json", "--no-verify", "--no-store")
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
        assert not any(op["status"] == "changed" for o in json.loads(real.stdout)["hosts"] for op in o["changes"])
        left = sh("ls /dev/ttyACM0; ss -H -tln")
        assert "/dev/ttyACM0" in left and ":5900" in left
    finally:
        sh("kill $(cat /tmp/kijun-hold.pids); rm -f /dev/ttyACM0 /tmp/kijun-hold.py /tmp/kijun-hold.pids")
