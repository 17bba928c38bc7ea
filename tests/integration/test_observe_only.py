"""Observe-only control types on real lab hosts (issue 15): privilege holders, forbidden tools outside
dpkg, mail auto-forwarding, backups, encrypted storage. Check judges each from the host's real state;
apply never changes them (no automatic fix), so what an administrator planted is still there after."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from kijun.controls import REGISTRY
from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun, statuses

NEW = ("NISC-PRIV-004", "NISC-SW-003", "NISC-MAIL-001", "NISC-BACKUP-001", "NISC-CRYPT-001")


@pytest.fixture(scope="module")
def observe_baseline(tmp_path_factory) -> str:
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] in NEW]
    assert len(data["controls"]) == len(NEW)
    assert all(not REGISTRY[i["type"]].enforceable for c in data["controls"] for i in c["items"])
    path = tmp_path_factory.mktemp("observe") / "observe-only.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


def check(baseline: str) -> dict[str, dict[str, str]]:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--format", "json", "--no-store")
    assert r.returncode in (0, 1), r.stderr
    return json.loads(r.stdout)


def test_observe_only_controls_judge_the_host_and_apply_changes_nothing(lab, observe_baseline):
    sd = lab.state_dir
    a = lab.hosts[0]
    important = next((h for h in lab.hosts if h.kijun_class in ("I", "II")), None)
    assert important is not None, "the lab needs a class I or II host"

    before = check(observe_baseline)
    st = statuses(before)
    for h in lab.hosts:
        for cid in ("NISC-PRIV-004", "NISC-SW-003", "NISC-MAIL-001"):
            assert st[h.name][cid] == "pass", (h.name, cid, st[h.name])
        # no backup job is configured on a fresh host: classes I-II fail, never pass
        assert st[h.name]["NISC-BACKUP-001"] == ("fail" if h.kijun_class in ("I", "II") else "not-applicable")
        # no swap and no listed volume inside a lab host: nothing unencrypted to find
        assert st[h.name]["NISC-CRYPT-001"] in ("pass", "not-applicable")

    exec_in(a.name, "useradd -m -G sudo mallory && mkdir -p /opt/kit && cp /bin/true /opt/kit/nmap "
                    "&& echo 'root-copy@mail.example.net' > /root/.forward", state_dir=sd, check=True)
    exec_in(important.name, "mkdir -p /var/lib/backup && echo '15 1 * * * root /usr/local/sbin/site-backup' > /etc/cron.d/backup "
                            "&& touch /var/lib/backup/last-success", state_dir=sd, check=True)
    after = check(observe_baseline)
    res = {h["host"]: {r["control_id"]: r for r in h["results"]} for h in after["hosts"]}
    ra = res[a.name]
    assert ra["NISC-PRIV-004"]["status"] == "fail" and "mallory" in ra["NISC-PRIV-004"]["observed"]
    assert ra["NISC-SW-003"]["status"] == "fail" and "/opt/kit/nmap" in ra["NISC-SW-003"]["observed"]
    assert ra["NISC-MAIL-001"]["status"] == "fail" and "root-copy@mail.example.net" in ra["NISC-MAIL-001"]["observed"]
    assert res[important.name]["NISC-BACKUP-001"]["status"] == "pass", res[important.name]["NISC-BACKUP-001"]

    dry = kijun("apply", "-i", INVENTORY, "-b", observe_baseline, "--dry", "--format", "json")
    assert dry.returncode in (0, 1), dry.stderr
    assert not any(op["status"] == "would-change" for o in json.loads(dry.stdout)["hosts"] for op in o["changes"]), dry.stdout
    real = kijun("apply", "-i", INVENTORY, "-b", observe_baseline, "--format", "json", "--no-verify")
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
    assert not any(op["status"] == "changed" for o in json.loads(real.stdout)["hosts"] for op in o["changes"])
    left = exec_in(a.name, "id -nG mallory; ls /opt/kit/nmap; cat /root/.forward", state_dir=sd).stdout
    assert "sudo" in left and "/opt/kit/nmap" in left and "mail.example.net" in left

    exec_in(a.name, "userdel -r mallory; rm -rf /opt/kit /root/.forward", state_dir=sd, check=True)
    exec_in(important.name, "rm -f /etc/cron.d/backup /var/lib/backup/last-success", state_dir=sd, check=True)
