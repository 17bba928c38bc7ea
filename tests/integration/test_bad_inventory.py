"""Bad inventories: each broken host gets its own clear error, and the good hosts still complete."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def kijun(*args):
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          env={**os.environ, "PYINFRA_PROGRESS": "off"}, timeout=900)


def write_inventory(lab, tmp_path, bad_class=False) -> Path:
    good = lab.hosts[0]
    wrong_keys = tmp_path / "known_hosts_wrong"
    # lab-02's address with lab-01's host key: a man in the middle, as far as SSH can tell
    lines = [l.split(None, 1) for l in Path(good.known_hosts).read_text().splitlines() if l.strip()]
    theirs = [rest for names, rest in lines if good.address in names.split(",")]
    wrong_keys.write_text("".join(f"{lab.hosts[1].address} {rest}\n" for rest in theirs))
    common = {"ssh_user": "kijun", "_sudo": True, "ssh_key": good.ssh_key, "ssh_strict_host_key_checking": "yes"}
    hosts = [
        (good.address, {**common, "ssh_known_hosts_file": good.known_hosts, "kijun_class": "III", "kijun_name": "good"}),
        (lab.hosts[1].address, {**common, "ssh_known_hosts_file": str(wrong_keys), "kijun_class": "III", "kijun_name": "wrong-key"}),
        ("10.77.0.250", {**common, "ssh_known_hosts_file": good.known_hosts, "kijun_class": "III", "kijun_name": "no-such-host"}),
    ]
    if bad_class:
        hosts.append((lab.hosts[2].address, {**common, "ssh_known_hosts_file": good.known_hosts, "kijun_class": "V", "kijun_name": "bad-class"}))
    inv = tmp_path / "inventory.py"
    inv.write_text(f"hosts = {hosts!r}\n")
    return inv


def test_check_reports_each_bad_host_and_completes_the_good_one(lab, tmp_path):
    inv = write_inventory(lab, tmp_path, bad_class=True)
    r = kijun("check", "-i", str(inv), "--no-store", "--format", "json", "--connect-timeout", "3")
    assert r.returncode == 2, r.stderr  # the inventory had an input error (bad class)
    assert f"{inv}: {lab.hosts[2].address}.kijun_class: importance class must be one of I, II, III, IV (got 'V')" in r.stderr
    report = json.loads(r.stdout)
    by_host = {h["host"]: h for h in report["hosts"]}
    assert set(by_host) == {"good", "wrong-key", "no-such-host"}
    assert by_host["good"]["reachable"] and any(x["status"] == "pass" for x in by_host["good"]["results"])
    for name in ("wrong-key", "no-such-host"):
        h = by_host[name]
        assert not h["reachable"] and h["error"]
        assert {x["status"] for x in h["results"]} <= {"unreachable", "not-applicable"}
        assert "pass" not in {x["status"] for x in h["results"]}
    assert "host key" in by_host["wrong-key"]["error"].lower() or "man-in-the-middle" in by_host["wrong-key"]["error"].lower()


def test_apply_skips_bad_hosts_and_applies_the_good_one(lab, tmp_path):
    inv = write_inventory(lab, tmp_path)
    r = kijun("apply", "-i", str(inv), "--dry", "--format", "json")
    assert r.returncode == 1, r.stderr
    out = {o["host"]: o for o in json.loads(r.stdout)["hosts"]}
    assert out["good"]["reachable"] and out["good"]["changes"]
    assert not out["wrong-key"]["reachable"] and not out["no-such-host"]["reachable"]
