"""A host must never hang or sink the run (issue 12), against real lab hosts over SSH.

Hosts misbehave through commands the probe script runs: the probes put /usr/local/bin first on
PATH, so a script planted there as `hostname` (the first probe) hangs, floods or garbles on purpose,
while the real system stays as it is. Every test removes what it planted.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest
import yaml

from kijun.lab.hosts import exec_in

ROOT = Path(__file__).resolve().parents[2]
INVENTORY = str(ROOT / "inventories/lab.py")
BASELINE = str(ROOT / "baselines/nisc-core.yaml")
FIFO = "/run/kijun-test-hang"


def env() -> dict[str, str]:
    # At call time: the lab fixture sets KIJUN_LAB_STATE. PYTHONPATH: this checkout's kijun from any cwd.
    return {**os.environ, "PYINFRA_PROGRESS": "off", "PYTHONPATH": str(ROOT)}


def kijun_argv(*args: str) -> list[str]:
    return [sys.executable, "-m", "kijun.cli", *args]


def kijun(*args: str, cwd=ROOT, timeout: float = 900, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(kijun_argv(*args), capture_output=True, text=True, cwd=cwd, env=env(), timeout=timeout, **kw)


@pytest.fixture
def keys(tmp_path):
    key = tmp_path / "ed25519.pem"
    r = kijun("keygen", "-o", str(key))
    assert r.returncode == 0, r.stderr
    return {"key": str(key), "pub": str(key) + ".pub", "store": str(tmp_path / "runs.db")}


@contextlib.contextmanager
def planted(lab, host: str, command: str, body: str):
    """/usr/local/bin/COMMAND on the host runs BODY (sh), ahead of the real one on the probes' PATH."""
    sd = lab.state_dir
    path = f"/usr/local/bin/{command}"
    exec_in(host, f"rm -f {FIFO} && mkfifo {FIFO} && cat > {path} && chmod 755 {path}", state_dir=sd, check=True,
            input=f"#!/bin/sh\n{body}\n")
    try:
        yield
    finally:
        exec_in(host, f"rm -f {path}", state_dir=sd)
        # Release readers left blocked on the FIFO (their ssh is gone), then remove it.
        exec_in(host, f"timeout 5 sh -c 'while :; do echo > {FIFO}; done' 2>/dev/null; rm -f {FIFO}", state_dir=sd,
                timeout=30)


def hosts_by_name(report: dict) -> dict[str, dict]:
    return {h["host"]: h for h in report["hosts"]}


def stored_runs(store: str) -> list[tuple]:
    with contextlib.closing(sqlite3.connect(store)) as db:
        return db.execute("SELECT run_id, state, complete, report FROM kijun_runs ORDER BY started").fetchall()


def verify_ok(keys) -> None:
    r = kijun("verify", "--store", keys["store"], "--pub", keys["pub"])
    assert r.returncode == 0, r.stdout + r.stderr


def test_a_hung_host_times_out_as_error_and_the_run_is_sealed(lab, keys):
    hung, fine = lab.hosts[0].name, lab.hosts[1].name
    with planted(lab, hung, "hostname", f"cat {FIFO}"):
        t0 = time.monotonic()
        r = kijun("check", "-i", INVENTORY, "-b", BASELINE, "--limit", hung, "--limit", fine, "--host-timeout", "5",
                  "--store", keys["store"], "--key", keys["key"], "--format", "json", timeout=600)
        took = time.monotonic() - t0
    assert r.returncode == 1, r.stderr
    hosts = hosts_by_name(json.loads(r.stdout))
    assert hosts[hung]["error"] == "timed out after 5 s"
    applicable = [c for c in hosts[hung]["results"] if c["status"] != "not-applicable"]
    assert applicable and all(c["status"] == "error" and c["reason"] == "timed out after 5 s" for c in applicable)
    assert hosts[fine]["reachable"] and not hosts[fine]["error"]
    assert any(c["status"] == "pass" for c in hosts[fine]["results"])
    [(run_id, state, complete, _)] = stored_runs(keys["store"])
    assert (state, complete) == ("finished", 1)
    verify_ok(keys)
    assert took < 300, f"the run took {took:.0f} s with a 5 s host deadline"


def test_a_host_that_floods_is_capped_and_controller_memory_stays_bounded(lab, tmp_path):
    flood = lab.hosts[0].name
    # 100 MiB from the host. The address-space limit keeps a regression from eating the shared machine.
    wrapper = ("import resource, subprocess, sys\n"
               "resource.setrlimit(resource.RLIMIT_AS, (3 << 30, 3 << 30))\n"
               "rc = subprocess.run(sys.argv[1:]).returncode\n"
               "sys.stderr.write(f'MAXRSS_KIB={resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss}\\n')\n"
               "sys.exit(rc)\n")
    with planted(lab, flood, "hostname", "yes | head -c 104857600"):
        r = subprocess.run([sys.executable, "-c", wrapper, *kijun_argv(
            "check", "-i", INVENTORY, "-b", BASELINE, "--limit", flood, "--no-store", "--format", "json")],
            capture_output=True, text=True, cwd=ROOT, env=env(), timeout=900)
        small = kijun("check", "-i", INVENTORY, "-b", BASELINE, "--limit", flood, "--no-store", "--format", "json",
                      "--max-output", "64K")
    maxrss_mib = int(r.stderr.rsplit("MAXRSS_KIB=", 1)[1].split()[0]) / 1024
    assert r.returncode == 1, r.stderr[-3000:]
    host = hosts_by_name(json.loads(r.stdout))[flood]
    assert host["error"] == "sent more than 16777216 bytes"
    assert all(c["status"] in ("error", "not-applicable") for c in host["results"])
    print(f"controller max RSS with a 100 MiB host: {maxrss_mib:.0f} MiB")
    assert maxrss_mib < 300, f"controller used {maxrss_mib:.0f} MiB for one host's capped output"
    assert hosts_by_name(json.loads(small.stdout))[flood]["error"] == "sent more than 65536 bytes"


def sjis_comment() -> str:
    """A printf argument writing a Shift_JIS comment line (as a Japanese admin's editor would)."""
    raw = "# パスワードの有効期限 (担当: 情報システム課)\n".encode("shift_jis")
    return "".join(f"\\{b:03o}" for b in raw)


def test_a_shift_jis_byte_in_login_defs_spoils_only_what_reads_it(lab):
    host = lab.hosts[1].name
    sd = lab.state_dir

    def check() -> dict:
        r = kijun("check", "-i", INVENTORY, "-b", BASELINE, "--limit", host, "--no-store", "--format", "json")
        assert r.returncode in (0, 1), r.stderr
        return hosts_by_name(json.loads(r.stdout))[host]

    before = check()
    exec_in(host, "cp -a /etc/login.defs /etc/login.defs.kijun-test", state_dir=sd, check=True)
    try:
        exec_in(host, f"printf '{sjis_comment()}' >> /etc/login.defs", state_dir=sd, check=True)
        hexdump = exec_in(host, "od -An -tx1 /etc/login.defs | tr -d ' \\n'", state_dir=sd).stdout
        assert "8370" in hexdump  # Shift_JIS パ: not UTF-8
        after = check()
    finally:
        exec_in(host, "mv /etc/login.defs.kijun-test /etc/login.defs", state_dir=sd, check=True)
    assert after["reachable"] and not after["error"], after["error"]
    was = {c["control_id"]: c["status"] for c in before["results"]}
    now = {c["control_id"]: c["status"] for c in after["results"]}
    assert now == was, {k: (was[k], now[k]) for k in now if now[k] != was[k]}
    assert sum(s == "error" for s in now.values()) < 5


def test_a_probe_script_over_128_kib_goes_on_stdin(lab, tmp_path):
    host = lab.hosts[2].name
    n = 1200  # ~180 bytes of script per item: well over one argument's 128 KiB
    deep = "/var/tmp/kijun-test-big/" + "d" * 100
    items = [{"type": "setting", "path": f"{deep}/f{i:05d}", "key": "KEY", "value": "yes"} for i in range(n)]
    data = yaml.safe_load((ROOT / "tests/data/mini.yaml").read_text(encoding="utf-8"))
    control = dict(data["controls"][0], id="T-BIG-001", classes=["I", "II", "III", "IV"], items=items)
    data["controls"] = [control]
    path = tmp_path / "big.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")

    from kijun import baseline, check, plan, probe
    from kijun.model import HostTarget

    script = probe.build_script(check.probes_for(plan.plan_host(baseline.load(str(path)), HostTarget("x", "I"))), "n")
    assert len(script.encode()) > 160 * 1024
    sd = lab.state_dir
    exec_in(host, f"mkdir -p {deep} && echo 'KEY yes' > {deep}/f{n - 1:05d}", state_dir=sd, check=True)
    try:
        r = kijun("check", "-i", INVENTORY, "-b", str(path), "--limit", host, "--no-store", "--format", "json")
    finally:
        exec_in(host, "rm -rf /var/tmp/kijun-test-big", state_dir=sd)
    assert r.returncode == 1, r.stderr
    h = hosts_by_name(json.loads(r.stdout))[host]
    assert h["reachable"] and not h["error"], h["error"]
    [res] = h["results"]
    statuses = [i["status"] for i in res["items"]]
    assert len(statuses) == n and statuses[-1] == "pass" and set(statuses[:-1]) == {"fail"}, set(statuses)


@pytest.mark.parametrize("sig, presses, host_timeout, hung_error", [
    (signal.SIGINT, 1, 20, "timed out after 20 s"),  # in flight: it ends at its deadline
    (signal.SIGTERM, 1, 20, "timed out after 20 s"),
    (signal.SIGINT, 2, 600, "not finished: run interrupted"),  # a second press cuts hosts in flight
], ids=["ctrl-c", "sigterm", "ctrl-c-twice"])
def test_a_signal_stops_dispatching_and_seals_the_run_as_interrupted(lab, keys, sig, presses, host_timeout, hung_error):
    hung = lab.hosts[0].name
    names = [h.name for h in lab.hosts]
    with planted(lab, hung, "hostname", f"cat {FIFO}"):
        p = subprocess.Popen(kijun_argv("-v", "check", "-i", INVENTORY, "-b", BASELINE, "--parallel", "1",
                                        "--host-timeout", str(host_timeout), "--store", keys["store"],
                                        "--key", keys["key"], "--format", "json"),
                             cwd=ROOT, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            first = p.stderr.readline()
            assert ": checking" in first, first
            run_id = first.split()[1].rstrip(":")
            time.sleep(3)  # the hung host is in flight, the others wait for a free slot
            t_sig = time.monotonic()
            for _ in range(presses):
                p.send_signal(sig)
                time.sleep(1)
            out, err = p.communicate(timeout=300)
            took = time.monotonic() - t_sig
        finally:
            if p.poll() is None:
                p.kill()
    assert p.returncode == 2, err
    assert f"run {run_id} sealed as incomplete (interrupted): 1 host(s) checked, {len(names) - 1} not checked" in err, err
    assert f"kijun: {names[1]}: not checked: run interrupted\n" in err  # -v: each host's end
    hosts = hosts_by_name(json.loads(out))
    assert set(hosts) == set(names)
    assert hosts[hung]["error"] == hung_error
    for name in names[1:]:
        assert hosts[name]["error"] == "not checked: run interrupted" and not hosts[name]["reachable"]
        assert all(c["status"] in ("error", "not-applicable") for c in hosts[name]["results"])
    [(stored_id, state, complete, report)] = stored_runs(keys["store"])
    assert (stored_id, state, complete) == (run_id, "finished", 0)
    assert json.loads(report)["complete"] is False and len(json.loads(report)["hosts"]) == len(names)
    verify_ok(keys)
    assert took < 200, took


@pytest.fixture
def small_disk(tmp_path):
    """A 4 MiB tmpfs for the store, so the test can fill it up mid-run."""
    d = tmp_path / "disk"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "kijun-test", str(d)], check=True)
    try:
        yield d
    finally:
        subprocess.run(["umount", "-l", str(d)], check=False)


def test_a_store_that_fails_mid_run_leaves_a_spool_with_every_result(lab, keys, small_disk, tmp_path):
    hung, fine = lab.hosts[0].name, lab.hosts[1].name
    store = small_disk / "runs.db"
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    with planted(lab, hung, "hostname", f"cat {FIFO}"):
        p = subprocess.Popen(kijun_argv("-v", "check", "-i", INVENTORY, "-b", BASELINE, "--limit", hung, "--limit", fine,
                                        "--host-timeout", "25", "--store", str(store), "--key", keys["key"],
                                        "--format", "json"),
                             cwd=workdir, env=env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        try:
            lines = [p.stderr.readline()]
            run_id = lines[0].split()[1].rstrip(":")
            # -v: the quick host's end line comes once it is in the store
            while not (lines[-1].startswith(f"kijun: {fine}: ") and not lines[-1].endswith(": checking\n")):
                lines.append(p.stderr.readline())
                assert lines[-1], "".join(lines)
            # Disk full while the hung host is still in flight.
            subprocess.run(["dd", "if=/dev/zero", f"of={small_disk}/filler", "bs=64k"], capture_output=True)
            out, err = p.communicate(timeout=300)
        finally:
            if p.poll() is None:
                p.kill()
    err = "".join(lines) + err
    assert p.returncode == 2, err
    assert f"store failed during run {run_id}" in err, err
    spools = list(workdir.glob(f"*{run_id}*.json")) + list(small_disk.glob(f"*{run_id}*.json"))
    assert len(spools) == 1, (err, spools)
    assert str(spools[0]) in err
    spool = json.loads(spools[0].read_text())
    assert spool["run_id"] == run_id and spool["complete"] is False
    got = hosts_by_name(spool)
    assert set(got) == {hung, fine}
    assert got[hung]["error"] == "timed out after 25 s" and got[fine]["reachable"] and not got[fine]["error"]
    report = json.loads(out)  # the terminal report still has every host
    assert set(hosts_by_name(report)) == {hung, fine}
