"""Approved-software allow-list (NISC-SW-004, type package_allowlist, observe-only) on a real lab host:
not-applicable until the organisation writes the list; with the host's own packages approved it
passes; a package installed from the lab mirror afterwards fails by name; apply removes nothing."""

from __future__ import annotations

import json

import pytest
import yaml

from kijun.lab.hosts import exec_in

from test_apply_check import INVENTORY, ROOT, kijun

CID = "NISC-SW-004"


@pytest.fixture(scope="module")
def allowlist_baseline(tmp_path_factory):
    data = yaml.safe_load((ROOT / "baselines/nisc-core.yaml").read_text(encoding="utf-8"))
    data["controls"] = [c for c in data["controls"] if c["id"] == CID]
    assert len(data["controls"]) == 1
    d = tmp_path_factory.mktemp("allowlist")

    def write(approved: list[str] | None, name: str) -> str:
        copy = json.loads(json.dumps(data))
        if approved is not None:
            copy["variables"]["approved_packages"] = approved
        path = d / f"{name}.yaml"
        path.write_text(yaml.safe_dump(copy, allow_unicode=True, sort_keys=False), encoding="utf-8")
        return str(path)

    return write


def result(baseline: str, host: str) -> dict:
    r = kijun("check", "-i", INVENTORY, "-b", baseline, "--limit", host, "--format", "json", "--no-store")
    assert r.returncode in (0, 1), r.stdout[-2000:] + r.stderr[-2000:]
    return {x["control_id"]: x for h in json.loads(r.stdout)["hosts"] for x in h["results"]}[CID]


def test_unapproved_package_found_and_left_installed(lab, allowlist_baseline):
    host = lab.hosts[0]
    sd = lab.state_dir
    assert result(allowlist_baseline(None, "default"), host.name)["status"] == "not-applicable"

    own = exec_in(host.name, "dpkg-query -W -f '${Package}\\n'", state_dir=sd, check=True).stdout.split()
    assert "tcpdump" not in own
    approved = allowlist_baseline(own, "approved")
    before = result(approved, host.name)
    assert before["status"] == "pass" and before["observed"] == f"all {len(own)} installed packages approved", before

    exec_in(host.name, "apt-get install -y -q tcpdump >/dev/null 2>&1", state_dir=sd, check=True)
    try:
        after = result(approved, host.name)
        assert after["status"] == "fail" and "tcpdump" in after["observed"].split(": ", 1)[1].split(", "), after
        real = kijun("apply", "-i", INVENTORY, "-b", approved, "--limit", host.name, "--format", "json", "--no-verify", "--no-store")
        assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
        assert not any(op["status"] == "changed" for o in json.loads(real.stdout)["hosts"] for op in o["changes"])
        assert "tcpdump" in exec_in(host.name, "dpkg-query -W -f '${Package}\\n' tcpdump", state_dir=sd).stdout
    finally:
        exec_in(host.name, "apt-get purge -y -q --autoremove tcpdump >/dev/null 2>&1", state_dir=sd, check=True)
