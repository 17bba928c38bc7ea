"""The hostile corpus (tests/data/hostile) against real lab hosts: `check`, `apply --dry` and, where the
input is legal, `apply`. Every hostile input carries a command that would create a marker file; the
marker must appear neither on any lab host nor on the controller, and each input either gets its one
clear line (exit 2) or is quoted harmlessly. Values that would smuggle lines into sshd_config.d or
login.defs must not reach those files."""

from __future__ import annotations

import glob
import json
import os
import secrets
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kijun.lab.hosts import exec_in

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests/data/hostile"
VARS_BASELINE = str(HOSTILE / "vars-baseline.yaml")
INVENTORY_CASES = yaml.safe_load((HOSTILE / "inventories.yaml").read_text(encoding="utf-8"))
BASELINES = sorted(glob.glob(str(HOSTILE / "baselines/*.yaml")))
LOCAL_MARKER = "kijun-hostile-marker"
MARKER = f"/tmp/kijun-hostile-{secrets.token_hex(4)}"  # the same path is looked for on hosts and controller
# legal-but-hostile baselines that `apply` can run offline (the others install packages from a mirror)
APPLY_QUOTED = {"setting-path-quote.yaml", "file-mode-path-subst.yaml", "variable-path-quote.yaml"}
# refused baselines whose values would smuggle a line into a configuration file if apply ever ran them
SMUGGLERS = {"sshd-value-newline.yaml", "sshd-value-backslash.yaml", "setting-value-newline.yaml",
             "setting-value-backslash.yaml", "sysctl-value-newline.yaml"}


def kijun(cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYINFRA_PROGRESS": "off"}
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=900)


def expectation(path: str) -> str:
    return Path(path).read_text(encoding="utf-8").splitlines()[0][len("# expect: "):].strip()


def fill(value, lab_address: str = ""):
    if isinstance(value, str):
        return value.replace("KIJUN_LOCAL_MARKER", LOCAL_MARKER).replace("KIJUN_MARKER", MARKER).replace("KIJUN_LAB", lab_address)
    if isinstance(value, dict):
        return {k: fill(v, lab_address) for k, v in value.items()}
    return value


def connection(host) -> dict:
    return {"ssh_user": "kijun", "_sudo": True, "ssh_port": host.port, "ssh_key": host.ssh_key,
            "ssh_known_hosts_file": host.known_hosts, "ssh_strict_host_key_checking": "yes", "kijun_class": "I"}


def write_inventory(path: Path, hosts: list[tuple[str, dict]]) -> Path:
    path.write_text(f"hosts = {hosts!r}\n", encoding="utf-8")
    return path


def host_state() -> Path:
    return Path(os.environ["KIJUN_LAB_STATE"])


def marker_anywhere(lab, cwd: Path) -> list[str]:
    """Where a marker exists: the controller (absolute path, kijun's directory) and every lab host."""
    found = [p for p in (MARKER, str(cwd / LOCAL_MARKER)) if Path(p).exists()]
    for h in lab.hosts:
        r = exec_in(h.name, f"ls -d {MARKER} /{LOCAL_MARKER} /root/{LOCAL_MARKER} /home/kijun/{LOCAL_MARKER} 2>/dev/null; true",
                    state_dir=host_state())
        found += [f"{h.name}:{line}" for line in r.stdout.split()]
    return found


def config_digest(host) -> str:
    """The files a smuggled line would land in: sshd configuration, login.defs, persisted sysctls."""
    return exec_in(host.name, "cat /etc/ssh/sshd_config /etc/ssh/sshd_config.d/* /etc/login.defs /etc/sysctl.d/* 2>/dev/null "
                              "| sha256sum", state_dir=host_state()).stdout


@pytest.fixture(scope="module")
def good_inventory(lab, tmp_path_factory) -> Path:
    d = tmp_path_factory.mktemp("hostile-inv")
    h = lab.hosts[0]
    return write_inventory(d / "good.py", [(h.address, {**connection(h), "kijun_name": "good"})])


@pytest.mark.parametrize("path", BASELINES, ids=lambda p: Path(p).name)
def test_hostile_baseline_on_a_lab_host(path, lab, good_inventory, tmp_path):
    base = tmp_path / Path(path).name
    base.write_text(fill(Path(path).read_text(encoding="utf-8")), encoding="utf-8")
    expect = expectation(path)
    runs = [("check", "--no-store", "--format", "json"), ("apply", "--dry", "--format", "json")]
    if expect == "quoted" and Path(path).name in APPLY_QUOTED or Path(path).name in SMUGGLERS:
        runs.append(("apply", "--no-verify", "--format", "json"))
    configs = config_digest(lab.hosts[0])
    for args in runs:
        r = kijun(tmp_path, args[0], "-i", str(good_inventory), "-b", str(base), *args[1:])
        assert "Traceback" not in r.stderr, r.stderr
        if expect == "quoted":
            assert r.returncode in (0, 1), (args, r.stderr)
            out = json.loads(r.stdout)
            if args[0] == "check":
                host = out["hosts"][0]
                assert host["reachable"] and {x["status"] for x in host["results"]} != {"unreachable"}, host
            else:
                assert out["hosts"][0]["reachable"] and not out["hosts"][0]["error"], out
        else:
            assert r.returncode == 2, (args, r.stdout, r.stderr)
            assert r.stderr.strip().splitlines()[-1].startswith(f"kijun: error: {base}"), r.stderr
            assert expect.replace("KIJUN_MARKER", MARKER) in r.stderr, r.stderr
    assert not marker_anywhere(lab, tmp_path)
    if Path(path).name in SMUGGLERS:  # refused at load: sshd, login.defs and sysctl files are untouched
        assert config_digest(lab.hosts[0]) == configs
    if Path(path).name in APPLY_QUOTED:  # remove what apply wrote at the odd paths (directories included)
        exec_in(lab.hosts[0].name, ["find", "/etc", "-depth", "-name", "*touch *", "-exec", "rm", "-rf", "--", "{}", ";"],
                state_dir=host_state())


@pytest.mark.parametrize("case", INVENTORY_CASES, ids=lambda c: c["case"])
def test_hostile_inventory_host_beside_a_good_one(case, lab, tmp_path):
    good, target = lab.hosts[0], lab.hosts[1]
    hostile_name = fill(case["host"], target.address)
    hostile = (hostile_name, {**connection(target), "kijun_name": "hostile", **fill(case["data"], target.address)})
    inv = write_inventory(tmp_path / "inventory.py", [(good.address, {**connection(good), "kijun_name": "good"}), hostile])
    expect = fill(case["expect"], target.address)

    r = kijun(tmp_path, "check", "-i", str(inv), "-b", VARS_BASELINE, "--no-store", "--format", "json", "--connect-timeout", "5")
    assert "Traceback" not in r.stderr, r.stderr
    report = {h["host"]: h for h in json.loads(r.stdout)["hosts"]}
    assert report["good"]["reachable"], report["good"]  # the other hosts go on
    if expect == "quoted":
        assert r.returncode in (0, 1), r.stderr
        assert report["hostile"]["reachable"], report["hostile"]
    else:
        assert r.returncode == 2, r.stderr
        assert any(line.startswith("kijun: error: ") and expect in line for line in r.stderr.splitlines()), (expect, r.stderr)
        assert set(report) == {"good"}, "a refused host must not be checked"

    runs = [("--dry",)] + ([()] if expect == "quoted" else [])
    for extra in runs:
        r = kijun(tmp_path, "apply", "-i", str(inv), "-b", VARS_BASELINE, "--no-verify", "--format", "json", *extra)
        assert "Traceback" not in r.stderr, r.stderr
        if expect != "quoted" and r.returncode == 2 and r.stdout == "":
            # refused when the inventory is read: apply changes hosts, so the whole inventory is refused in one
            # line before any host is contacted
            assert any(line.startswith("kijun: error: ") and expect in line for line in r.stderr.splitlines()), (expect, r.stderr)
            continue
        # refused when the host's plan is made (kijun_vars breaking a parameter's kind): that host gets its
        # error and no operation, the others are worked on
        out = {o["host"]: o for o in json.loads(r.stdout)["hosts"]}
        assert out["good"]["reachable"] and not out["good"]["error"], out["good"]
        bad = [o for name, o in out.items() if name != "good"]
        assert len(bad) == 1
        if expect == "quoted":
            assert bad[0]["reachable"] and not bad[0]["error"], bad[0]
        else:
            assert bad[0]["error"] and not any(op["status"] in ("changed", "would-change") for op in bad[0]["changes"]), bad[0]
            assert expect.split(": ", 1)[-1] in bad[0]["error"], (expect, bad[0])
    assert not marker_anywhere(lab, tmp_path)
    if expect == "quoted":
        exec_in(target.name, ["find", "/etc/cron.weekly", "-depth", "-mindepth", "1", "-name", "*kijun-hostile*", "-exec",
                              "rm", "-rf", "--", "{}", ";"], state_dir=host_state())
