"""Server access only for authorised users (NISC-ACCESS-001, type ssh_access) on a real lab host:
not-applicable while the organisation has named no groups; with a list, a host without AllowGroups
fails, apply writes it and the check passes on sshd's effective configuration; a group slipped in by
another drop-in fails; a list that would shut the operator out is reverted by the login guard."""

from __future__ import annotations

import json

import pytest
import yaml

from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun, operator_ok

CID = "NISC-ACCESS-001"
REVERTED = "reverted (would lock out)"


@pytest.fixture(scope="module")
def access_baseline(tmp_path_factory):
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] == CID]
    assert len(data["controls"]) == 1
    d = tmp_path_factory.mktemp("access")

    def write(groups: list[str] | None) -> str:
        copy = json.loads(json.dumps(data))
        if groups is not None:
            copy["variables"]["ssh_allowed_groups"] = groups
        path = d / f"access-{'-'.join(groups) if groups is not None else 'default'}.yaml"
        path.write_text(yaml.safe_dump(copy, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return str(path)

    return write


def result(baseline: str, host: str) -> dict:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--limit", host, "--format", "json", "--no-store")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    return {x["control_id"]: x for h in json.loads(r.stdout)["hosts"] for x in h["results"]}[CID]


def apply(baseline: str, host: str) -> dict:
    r = kijun("apply", "-i", INVENTORY, "-b", baseline, "--limit", host, "--format", "json", "--no-verify", "--no-store")
    assert r.returncode in (0, 1), r.stdout[-3000:] + r.stderr[-3000:]
    return {op["control_id"]: op for o in json.loads(r.stdout)["hosts"] for op in o["changes"]}[CID]


def test_allowgroups_applied_judged_on_effective_config_and_lockout_reverted(lab, access_baseline):
    host = lab.hosts[-1]
    sd = lab.state_dir

    def sh(cmd: str) -> str:
        return exec_in(host.name, cmd, state_dir=sd, check=True).stdout

    sh("sed -i '/^AllowGroups /d' /etc/ssh/sshd_config.d/00-kijun.conf 2>/dev/null; true")
    assert "allowgroups" not in sh("sshd -T")
    try:
        default = result(access_baseline(None), host.name)
        assert default["status"] == "not-applicable" and "allowed_groups" in default["reason"], default

        mine = access_baseline(["kijun"])  # the lab's automation account's own group
        before = result(mine, host.name)
        assert before["status"] == "fail" and "AllowGroups not set" in before["observed"], before

        op = apply(mine, host.name)
        assert op["status"] == "changed", op
        assert "allowgroups kijun" in sh("sshd -T").splitlines()
        assert operator_ok(host)
        after = result(mine, host.name)
        assert after["status"] == "pass" and after["observed"] == "AllowGroups kijun", after

        # another drop-in adds a group: sshd adds it up, the effective config shows it
        sh("echo 'AllowGroups users' > /etc/ssh/sshd_config.d/50-extra.conf")
        extra = result(mine, host.name)
        assert extra["status"] == "fail" and "not allowed: users" in extra["observed"], extra
        sh("rm -f /etc/ssh/sshd_config.d/50-extra.conf")

        # a list without the operator's group would lock kijun out: the guard puts the old drop-in back
        op = apply(access_baseline(["sudo"]), host.name)
        assert op["status"] == "failed" and op["reason"] == REVERTED, op
        assert operator_ok(host)
        assert [g for g in sh("sshd -T").splitlines() if g.startswith("allowgroups")] == ["allowgroups kijun"]
    finally:
        sh("rm -f /etc/ssh/sshd_config.d/50-extra.conf; sed -i '/^AllowGroups /d' /etc/ssh/sshd_config.d/00-kijun.conf 2>/dev/null; "
           "if [ -d /run/systemd/system ]; then systemctl reload ssh; elif [ -f /run/sshd.pid ]; then kill -HUP \"$(cat /run/sshd.pid)\"; fi")
