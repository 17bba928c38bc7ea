"""kijun.runs: apply, dry run and rollback end as signed, stored reports like checks (issue 16).

Real SQLite stores and real Ed25519 keys; the CLI test runs `kijun apply` through pyinfra against a
loopback port nobody listens on (the host is unreachable: the run is still stored and signed).
"""

from __future__ import annotations

import json
import os
import socket
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kijun import ops, runs, signing
from kijun.apply import HostApply, OpOutcome
from kijun.cli import main
from kijun.drift import compare
from kijun.model import Baseline, ControlResult, HostResult, HostTarget
from kijun.report import report_errors
from kijun.store import Store

ROOT = Path(__file__).resolve().parents[2]
MINI = "tests/data/mini.yaml"
BASE = Baseline(id="mini", version="1", title={}, variables={}, class_variables={}, lists={}, controls=[],
                path=MINI, digest="")
TARGET = HostTarget(name="web1", importance_class="II", groups=("web",))


@pytest.fixture
def keys(tmp_path):
    key = signing.generate_key(tmp_path / "k.pem")
    return {"key": str(key), "pub": str(key) + ".pub", "store": str(tmp_path / "runs.db")}


def inv_ref(path="inv-a.py"):
    return {"path": path, "digest": ""}


def checked(statuses: dict[str, str], name="web1") -> HostResult:
    return HostResult(host=name, importance_class="II", organisation="", branch="", role="", groups=["web"],
                      reachable=True, error="", started="2026-11-29T00:00:00Z", finished="2026-11-29T00:00:01Z",
                      facts={}, results=[ControlResult(cid, st, f"{cid}={st}", "ok") for cid, st in statuses.items()])


def stored_run(keys, kind, entries, inventory="inv-a.py", limit=()):
    keeper = runs.open_run(kind, BASE, inv_ref(inventory), runs.scope_of(limit), store_url=keys["store"],
                           key_path=keys["key"], no_store=False, say=lambda line: None)
    for e in entries:
        keeper.add(e)
    return keeper.seal(complete=True)


DRY = HostApply("web1", True, "", [OpOutcome("A", "A: sysctl x", "would-change"),
                                   OpOutcome("B", "B: package y", "unchanged"),
                                   OpOutcome("C", "C: sshd z", "would-change")])


def test_dry_run_and_apply_are_stored_signed_and_kept_apart(keys):
    dry = stored_run(keys, "dry-run", [runs.host_entry(DRY, TARGET)])
    applied = HostApply("web1", True, "", [OpOutcome("A", "A: sysctl x", "changed"),
                                           OpOutcome("C", "C: sshd z", "failed", "login lost", ops.REVERTED)])
    real = stored_run(keys, "apply", [runs.host_entry(applied, TARGET, checked({"A": "pass", "C": "fail"}))])
    with Store(keys["store"]) as st:
        listed = [(r["kind"], r["state"]) for r in st.runs()]
        assert listed == [("dry-run", "finished"), ("apply", "finished")]
        assert st.verify_chain(signing.load_public_keys([keys["pub"]])) == []
        got_dry, got_real = st.get_report(dry["run_id"]), st.get_report(real["run_id"])
    assert report_errors(got_dry) == [] and report_errors(got_real) == []
    assert {c["status"] for c in got_dry["hosts"][0]["changes"]} == {"would-change", "unchanged"}
    assert got_dry["hosts"][0]["results"] == []  # a dry run verifies nothing: no verdicts
    assert got_dry["summary"]["changes"] == {"would-change": 2, "unchanged": 1}
    host = got_real["hosts"][0]
    assert [(c["control_id"], c["status"], c["reason"]) for c in host["changes"]] == [
        ("A", "changed", ""), ("C", "failed", ops.REVERTED)]  # the lock-out revert is on record
    assert {r["control_id"]: r["status"] for r in host["results"]} == {"A": "pass", "C": "fail"}
    assert got_real["scope"] == {"limit": []} and got_real["inventory"]["path"] == "inv-a.py"


def test_tampered_apply_report_is_caught(keys):
    done = stored_run(keys, "apply", [runs.host_entry(
        HostApply("web1", True, "", [OpOutcome("A", "A: x", "failed", "boom")]), TARGET, checked({"A": "fail"}))])
    stored_run(keys, "check", [checked({"A": "fail"})])
    db = sqlite3.connect(keys["store"])
    text = db.execute("SELECT report FROM kijun_runs WHERE run_id = ?", (done["run_id"],)).fetchone()[0]
    assert '"status":"failed"' in text
    db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?",
               (text.replace('"status":"failed"', '"status":"changed"'), done["run_id"]))
    db.commit()
    db.close()
    with Store(keys["store"]) as st:
        problems = st.verify_chain(signing.load_public_keys([keys["pub"]]))
    assert any(done["run_id"] in p for p in problems), problems


def test_drift_reads_a_dry_run_as_a_prediction(keys):
    dry = stored_run(keys, "dry-run", [runs.host_entry(DRY, TARGET)])
    check = stored_run(keys, "check", [checked({"A": "fail", "B": "fail", "C": "pass", "OBS": "fail"})])
    d = compare(dry, check)
    # A: would change, still fails = consistent; C: would change, now passes = fixed;
    # B: dry run said in the desired state, check says fail = new drift; OBS: no prediction, left out.
    assert [(c.control_id, c.old_status) for c in d.still_failing] == [("A", "fail")]
    assert [c.control_id for c in d.fixed] == ["C"]
    assert [(c.control_id, c.old_status, c.new_status) for c in d.new_failures] == [("B", "pass", "fail")]
    r = CliRunner().invoke(main, ["drift", "--store", keys["store"], "--since", "dry-run", "--format", "json"])
    assert r.exit_code == 1, r.output
    out = json.loads(r.output)
    assert (out["old_run"], out["new_run"]) == (dry["run_id"], check["run_id"])


def test_default_drift_pairs_runs_of_the_same_inventory_and_scope(keys):
    a1 = stored_run(keys, "check", [checked({"A": "fail"})], inventory="inv-a.py")
    stored_run(keys, "check", [checked({"A": "pass"}, name="db9")], inventory="inv-b.py")
    stored_run(keys, "check", [checked({"A": "pass"}, name="web1")], inventory="inv-a.py", limit=("web1",))
    a2 = stored_run(keys, "check", [checked({"A": "fail"})], inventory="inv-a.py")
    r = CliRunner().invoke(main, ["drift", "--store", keys["store"], "--format", "json"])
    out = json.loads(r.output)
    assert r.exit_code == 0, r.output  # the other fleet's run and the --limit run are not the baseline of comparison
    assert (out["old_run"], out["new_run"]) == (a1["run_id"], a2["run_id"])
    assert out["new_failures"] == [] and out["hosts_new"] == []
    r = CliRunner().invoke(main, ["drift", "--store", keys["store"], "-i", "inv-b.py"])
    assert r.exit_code == 2 and "inv-b.py" in r.output  # only one run of that fleet: nothing to compare


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again at once: connecting is refused


def kijun(args, cwd, extra_env=None):
    env = {k: v for k, v in os.environ.items() if not k.startswith("KIJUN_")}
    env.update(PYTHONPATH=str(ROOT), PYINFRA_PROGRESS="off", **(extra_env or {}))
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def test_cli_apply_stores_and_signs_even_when_hosts_are_unreachable(keys, tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text(f"hosts = [('gone1', {{'ssh_hostname': '127.0.0.1', 'ssh_port': {_free_port()}, "
                   "'kijun_class': 'II'})]\n", encoding="utf-8")
    common = ["-i", str(inv), "-b", str(ROOT / MINI), "--store", keys["store"], "--key", keys["key"]]
    dry = kijun(["apply", "--dry", *common], tmp_path)
    assert dry.returncode == 1, dry.stderr
    assert "dry-run report stored and signed" in dry.stderr
    none = kijun(["apply", "--dry", "--no-store", *common[:4]], tmp_path)
    assert none.returncode == 1 and "stored" not in none.stderr
    with Store(keys["store"]) as st:
        listed = st.runs()
        assert [r["kind"] for r in listed] == ["dry-run"]  # --no-store stored nothing
        report = st.get_report(listed[0]["run_id"])
        assert st.verify_chain(signing.load_public_keys([keys["pub"]])) == []
    host = report["hosts"][0]
    assert (host["host"], host["reachable"], host["importance_class"]) == ("gone1", False, "II")
    assert report["summary"]["unreachable"] == 1 and report["inventory"]["path"] == str(inv)
    ok = kijun(["verify", "--store", keys["store"], "--key", keys["key"]], tmp_path)
    assert ok.returncode == 0, ok.stderr


def test_an_operation_pyinfra_never_ran_is_stored_as_failed(keys):
    stopped = HostApply("web1", True, "", [OpOutcome("A", "A: x", "pending")])
    entry = runs.host_entry(stopped, TARGET)
    assert entry["changes"] == [{"control_id": "A", "name": "A: x", "status": "failed", "detail": "not executed",
                                 "reason": ""}]
    report = stored_run(keys, "apply", [entry])
    assert report["summary"]["changes"] == {"failed": 1} and report_errors(report) == []
