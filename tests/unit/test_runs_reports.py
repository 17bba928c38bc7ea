"""Advisory roll-outs and inspections are runs like check and apply (issue 16): each ends as one signed,
stored report that `kijun runs` lists and `kijun verify` verifies (and catches when edited).

No stand-ins: the CLI runs pyinfra and the SSH checker against a loopback port nobody listens on (the
host is unreachable, so the run is stored and signed with that verdict), with real SQLite stores and
real Ed25519 keys.
"""

from __future__ import annotations

import json
import sqlite3

import pytest

from kijun import runs, signing
from kijun.report import report_errors
from kijun.store import Store
from test_runs import ROOT, _free_port, kijun

EXAMPLE = ROOT / "advisories/example-icmp-redirects.yaml"
NISC = ROOT / "baselines/nisc-core.yaml"


@pytest.fixture
def fleet(tmp_path):
    key = signing.generate_key(tmp_path / "k.pem")
    inv = tmp_path / "inv.py"
    inv.write_text(f"hosts = [('gone1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {_free_port()}, "
                   "'kijun_class': 'II', 'kijun_org': 'ministry-a', 'kijun_branch': 'honsho'})]\n", encoding="utf-8")
    return {"key": str(key), "pub": str(key) + ".pub", "store": str(tmp_path / "runs.db"), "inv": str(inv),
            "dir": tmp_path}


def listed_kinds(fleet) -> list[str]:
    r = kijun(["runs", "--store", fleet["store"]], fleet["dir"])
    assert r.returncode == 0, r.stderr
    return [line.split()[1] for line in r.stdout.splitlines()[2:]]


def edit_report(store: str, run_id: str, old: str, new: str) -> None:
    db = sqlite3.connect(store)
    text = db.execute("SELECT report FROM kijun_runs WHERE run_id = ?", (run_id,)).fetchone()[0]
    assert old in text
    db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (text.replace(old, new, 1), run_id))
    db.commit()
    db.close()


def test_advisory_roll_out_is_a_stored_signed_listed_and_verified_run(fleet):
    common = ["--store", fleet["store"], "--key", fleet["key"]]
    r = kijun(["advisory", "apply", str(EXAMPLE), "-i", fleet["inv"], "--format", "json", *common], fleet["dir"])
    assert r.returncode == 1, r.stdout + r.stderr  # the host is not reached: not confirmed
    out = json.loads(r.stdout)
    assert out["run_id"] and [(h["host"], h["state"]) for h in out["hosts"]] == [("gone1", "unreachable")]
    assert listed_kinds(fleet) == ["advisory"]
    with Store(fleet["store"]) as st:
        report = st.get_report(out["run_id"])
        assert st.verify_chain(signing.load_public_keys([fleet["pub"]])) == []
    assert report["kind"] == "advisory" and report_errors(report) == [] and report["complete"] is True
    assert report["baseline"]["id"] == "advisory-example-2025-001" and report["inventory"]["path"] == fleet["inv"]
    host = report["hosts"][0]
    assert (host["host"], host["reachable"], host["importance_class"]) == ("gone1", False, "II")
    assert {r["status"] for r in host["results"]} == {"unreachable"} and host["error"]
    assert report["signature"]["key_id"] == signing.key_id(signing.load_private(fleet["key"]).public_key())
    ok = kijun(["verify", *common], fleet["dir"])
    assert ok.returncode == 0 and "the advisory ledger is signed" in ok.stdout, ok.stderr
    # the ledger row points at the stored run
    s = kijun(["advisory", "status", "EXAMPLE-2025-001", *common, "--format", "json"], fleet["dir"])
    assert s.returncode == 1 and json.loads(s.stdout)["hosts"][0]["run_id"] == out["run_id"]
    edit_report(fleet["store"], out["run_id"], '"reachable":false', '"reachable":true')
    bad = kijun(["verify", *common], fleet["dir"])
    assert bad.returncode == 1 and out["run_id"] in bad.stderr, bad.stdout + bad.stderr


def test_inspection_is_a_stored_signed_listed_and_verified_run(fleet):
    common = ["--store", fleet["store"], "--key", fleet["key"]]
    c = kijun(["check", "-i", fleet["inv"], "-b", str(NISC), "--format", "json", *common], fleet["dir"])
    assert c.returncode == 1, c.stderr
    source = json.loads(c.stdout)
    r = kijun(["inspect", "-b", str(NISC), "--format", "json", *common], fleet["dir"])
    assert r.returncode == 1, r.stdout + r.stderr  # the unreachable class II host is all gaps
    data = json.loads(r.stdout)
    assert data["totals"]["gaps"] > 0 and {g["gap"] for g in data["gaps"]} == {"unreachable"}
    run_id = data["inspect_run"]["run_id"]
    assert f"inspection stored as run {run_id}" in r.stderr
    assert listed_kinds(fleet) == ["check", "inspect"]
    with Store(fleet["store"]) as st:
        report = st.get_report(run_id)
        assert st.verify_chain(signing.load_public_keys([fleet["pub"]])) == []
    assert report["kind"] == "inspect" and report_errors(report) == []
    assert report["chain"]["sequence"] == data["inspect_run"]["sequence"] == 2
    host = report["hosts"][0]
    assert host["inspected_from"] == source["run_id"]
    inspected = {c["id"] for c in data["controls"]}
    assert {r["control_id"] for r in host["results"]} == inspected  # only the inspected controls
    assert sorted(r["priority"]["rank"] for r in host["results"]) == [g["rank"] for g in data["gaps"]]
    assert kijun(["verify", *common], fleet["dir"]).returncode == 0
    edit_report(fleet["store"], run_id, '"rank":1,', '"rank":99,')
    bad = kijun(["verify", *common], fleet["dir"])
    assert bad.returncode == 1 and run_id in bad.stderr, bad.stdout + bad.stderr


def test_inspect_needs_no_key_to_look(fleet, tmp_path):
    common = ["--store", fleet["store"], "--key", fleet["key"]]
    assert kijun(["check", "-i", fleet["inv"], "-b", str(NISC), *common], fleet["dir"]).returncode == 1
    home = tmp_path / "home"  # no default key here: kijun keygen was never run
    home.mkdir()
    env = {"HOME": str(home)}
    r = kijun(["inspect", "-b", str(NISC), "--store", fleet["store"], "--lang", "ja"], fleet["dir"], env)
    assert r.returncode == 1, r.stdout + r.stderr  # gaps, and no error
    assert "到達不能" in r.stdout and "gone1" in r.stdout
    assert "inspection not stored: no signing key at" in r.stderr and "kijun keygen" in r.stderr
    assert listed_kinds(fleet) == ["check"]  # nothing was stored
    # a key asked for by name must be there: that is an error, not a quiet unsigned inspection
    r = kijun(["inspect", "-b", str(NISC), "--store", fleet["store"], "--key", str(tmp_path / "nope.pem")],
              fleet["dir"], env)
    assert r.returncode == 2 and "no signing key" in r.stderr and r.stdout == ""


def test_local_check_is_a_run_too_stored_unless_told_not(tmp_path):
    import socket

    base = __import__("kijun.baseline", fromlist=["load"]).load(ROOT / "tests/data/mini.yaml")
    run = runs.check_local(base, "IV", host_timeout=60, max_output=1 << 20, no_store=True)
    assert not run.keeper.stored and run.report["kind"] == "check" and report_errors(run.report) == []
    # the machine's own series: drift compares its local runs with each other, not with a fleet's
    assert run.report["inventory"] == {"path": f"local:{socket.gethostname()}", "digest": ""}
    key = signing.generate_key(tmp_path / "k.pem")
    stored = runs.check_local(base, "IV", host_timeout=60, max_output=1 << 20, no_store=False,
                              store_url=str(tmp_path / "r.db"), key_path=str(key))
    assert stored.keeper.stored and Store(str(tmp_path / "r.db")).get_report(stored.keeper.run_id)["hosts"]
    assert [h["host"] for h in run.report["hosts"]] == [run.hosts[0].host]
