"""CLI exit codes and one-line errors, through the real console entry point."""

import json
import subprocess
import sys
from pathlib import Path

import jsonschema

ROOT = Path(__file__).resolve().parents[2]


def kijun(*args, cwd=ROOT, env=None):
    import os

    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=None if env is None else {**os.environ, **env})


def test_validate_ok_and_errors():
    ok = kijun("validate", "baselines/nisc-core.yaml")
    assert ok.returncode == 0, ok.stderr
    bad = kijun("validate", "tests/data/mini.yaml", "no/such.yaml")
    assert bad.returncode == 2
    assert bad.stderr.strip() == "no/such.yaml: cannot read: No such file or directory"


def test_check_local_prints_a_table_and_exits_by_compliance():
    r = kijun("check", "--local", "-b", "tests/data/mini.yaml", "--class", "IV")
    # class IV: only the package control applies; this machine has no sniffing tools installed
    # unless someone installed tcpdump/nmap here, in which case it must fail.
    assert r.returncode in (0, 1)
    assert "T-PKG-001" in r.stdout and "T-SYS-001" in r.stdout and "not-applicable" in r.stdout
    r1 = kijun("check", "--local", "-b", "tests/data/mini.yaml", "--class", "I")
    assert r1.returncode == 1  # this build machine has no persisted ip_forward=0 nor usb-storage ban
    assert "fail" in r1.stdout


def test_check_local_json_is_valid_against_the_shipped_schema():
    r = kijun("check", "--local", "-b", "tests/data/mini.yaml", "--format", "json")
    report = json.loads(r.stdout)
    schema = json.loads((ROOT / "kijun/schemas/report.schema.json").read_text())
    jsonschema.validate(report, schema)
    statuses = {res["control_id"]: res["status"] for res in report["hosts"][0]["results"]}
    assert set(statuses) == {"T-PKG-001", "T-SYS-001"}
    # Each result says what its control is, and each item which setting it judged with which values.
    sys_result = next(res for res in report["hosts"][0]["results"] if res["control_id"] == "T-SYS-001")
    assert sys_result["title"]["ja"] == "IP転送の無効化" and sys_result["severity"] == "medium"
    assert {"type": "sysctl", "params": {"key": "net.ipv4.ip_forward", "value": 0}}.items() <= sys_result["items"][0].items()


def test_japanese_output():
    # wide enough that no title is wrapped (narrower terminals wrap cells onto more lines)
    r = kijun("check", "--local", "-b", "tests/data/mini.yaml", "--lang", "ja", env={"COLUMNS": "200"})
    assert "管理策" in r.stdout and "判定" in r.stdout and "盗聴ツールの禁止" in r.stdout


def test_usage_errors_exit_2():
    assert kijun("check").returncode == 2
    assert kijun("check", "--local", "--class", "V").returncode == 2
    r = kijun("check", "--local", "-b", "missing.yaml")
    assert r.returncode == 2 and r.stderr.count("\n") == 1 and "missing.yaml" in r.stderr


def test_bad_inventory_is_one_line(tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('h1', {'kijun_class': 'V'})]\n")
    r = kijun("check", "-i", str(inv), "-b", "tests/data/mini.yaml", "--no-store")
    assert r.returncode == 2
    assert f"{inv}: h1.kijun_class: importance class must be one of I, II, III, IV (got 'V')" in r.stderr
    inv.write_text("hosts = [('h1', {'ssh_password': 'hunter2'})]\n")
    r = kijun("check", "-i", str(inv), "-b", "tests/data/mini.yaml", "--no-store")
    assert r.returncode == 2 and "secrets do not belong" in r.stderr and "hunter2" not in r.stderr + r.stdout
