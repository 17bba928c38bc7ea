"""Records that cannot be forged without the key (issue 12).

Whoever can write the store (SQLite file, PostgreSQL role) but does not hold the signing key must not
get anything signed into the chain or counted as confirmed: a fabricated `running` run, host results
slipped into a real run, an UPDATE of the advisory ledger. Corruption and an empty export directory
are failures of `kijun verify`, never "ok". All stores are real SQLite files edited with sqlite3.
"""

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from kijun import advisory, runs
from kijun.cli import main
from kijun.report import full_bytes
from kijun.signing import generate_key, load_private, load_public_keys, public_path
from kijun.store import Store, StoreError

from test_advisory import EXAMPLE, FakeFleet, INVENTORY
from test_store import host, run

ROOT = Path(__file__).resolve().parents[2]
META = json.dumps({"baseline": {"id": "nisc-core", "version": "1", "digest": "", "path": "b.yaml"},
                   "inventory": {"path": "inv.py", "digest": ""}, "version": "0.1.0"})


def kijun(*args):
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=300)


def forge_running_run(db, run_id="20200101T000000Z-f0f0f0", hosts=("web1", "web2")):
    """What a store writer without the key can do: a running run of a dead owner, every host passing."""
    with sqlite3.connect(db) as c:
        c.execute("INSERT INTO kijun_runs (run_id, kind, started, state, owner, updated, meta) "
                  "VALUES (?, 'check', '2020-01-01T00:00:00Z', 'running', 'elsewhere:1', '2020-01-01T00:00:00Z', ?)",
                  (run_id, META))
        for name in hosts:
            c.execute("INSERT INTO kijun_host_results (run_id, host, result) VALUES (?, ?, ?)",
                      (run_id, name, full_bytes(host(name, "pass")).decode()))
    return run_id


@pytest.fixture
def pubkeys(key_path):
    return load_public_keys([public_path(key_path)])


@pytest.fixture
def db(tmp_path, signer):
    path = tmp_path / "results.db"
    with Store(path) as st:
        run(st, signer)  # one genuine sealed run first
    return path


def chained_run_ids(db):
    with sqlite3.connect(db) as c:
        return [r[0] for r in c.execute("SELECT run_id FROM kijun_runs WHERE sequence IS NOT NULL ORDER BY sequence")]


# --- a fabricated run is never sealed --------------------------------------------------------------

def test_recovery_does_not_sign_a_fabricated_running_run(db, signer, pubkeys):
    forged = forge_running_run(db)
    warnings = []
    with Store(db) as st:
        assert st.recover_incomplete(signer, warn=warnings.append) == []
        assert forged not in chained_run_ids(db)
        assert [r["state"] for r in st.runs() if r["run_id"] == forged] == ["rejected"]
        with pytest.raises(StoreError, match="not finished"):
            st.get_report(forged)
        assert st.recover_incomplete(signer) == []  # set aside once, not retried
        problems = st.verify_chain(pubkeys)
    assert warnings == [f"run {forged}: not produced by this controller (run record not signed); left out of the chain"]
    assert problems == [f"run {forged}: not produced by this controller (run record not signed); left out of the chain"]


def test_routine_check_does_not_sign_it_and_verify_names_it(db, key_path, tmp_path):
    forged = forge_running_run(db)
    inv = tmp_path / "inv.py"  # one host on a closed loopback port: unreachable at once
    inv.write_text('hosts = [("127.0.0.1", {"kijun_name": "dead", "ssh_port": 9, "kijun_class": "III"})]\n')
    r = kijun("check", "-i", str(inv), "-b", "tests/data/mini.yaml", "--store", str(db), "--key", str(key_path),
              "--connect-timeout", "5")
    assert r.returncode == 1, r.stderr
    assert f"kijun: warning: run {forged}: not produced by this controller" in r.stderr
    assert "sealed as incomplete" not in r.stderr
    assert forged not in chained_run_ids(db) and len(chained_run_ids(db)) == 2  # the genuine one and this check
    v = kijun("verify", "--store", str(db), "--key", str(key_path))
    assert v.returncode == 1
    assert f"kijun: tampered: run {forged}: not produced by this controller" in v.stderr


def test_a_run_signed_by_another_key_is_not_ours(db, signer, tmp_path):
    other = load_private(generate_key(tmp_path / "other.pem"))
    with Store(db) as st:
        rid = st.begin_run({"kind": "check"}, other)
        st.add_host_result(rid, host("x"), other)
        assert st.recover_incomplete(signer, stale_after=-1) == []
        assert rid not in chained_run_ids(db)
        assert "signed by unknown key" in st.rejected(rid)[0]["reason"]


# --- host results slipped into a real run ------------------------------------------------------------

def test_recovery_seals_only_the_host_results_this_key_wrote(db, signer, pubkeys):
    with Store(db) as st:
        rid = st.begin_run({"kind": "check"}, signer)
        st.add_host_result(rid, host("a", "fail"), signer)
        st.add_host_result(rid, host("b", "fail"), signer)
    with sqlite3.connect(db) as c:  # the writer died; someone adds a host and turns a failure into a pass
        c.execute("INSERT INTO kijun_host_results (run_id, host, result) VALUES (?, 'evil', ?)",
                  (rid, full_bytes(host("evil", "pass")).decode()))
        c.execute("UPDATE kijun_host_results SET result = ? WHERE run_id = ? AND host = 'b'",
                  (full_bytes(host("b", "pass")).decode(), rid))
    warnings = []
    with Store(db) as st:
        assert st.recover_incomplete(signer, stale_after=-1, warn=warnings.append) == [rid]
        report = st.get_report(rid)
        assert [h["host"] for h in report["hosts"]] == ["a"]
        assert report["hosts"][0]["results"][0]["status"] == "fail" and report["complete"] is False
        problems = st.verify_chain(pubkeys)
    assert sorted(problems) == sorted([
        f"run {rid}: host b: not produced by this controller (host result signature does not match the row); "
        "left out of its signed report",
        f"run {rid}: host evil: not produced by this controller (host result not signed); left out of its signed report",
    ])
    assert len(warnings) == 2 and all("not produced by this controller" in w for w in warnings)


def test_live_run_leaves_out_a_row_slipped_in_and_a_host_removed(db, signer, pubkeys):
    with Store(db) as st:
        rid = st.begin_run({"kind": "check"}, signer)
        for name in ("a", "b", "c"):
            st.add_host_result(rid, host(name), signer)
        other = st.begin_run({"kind": "check"}, signer)
        st.add_host_result(other, host("z", "fail"), signer)
        with sqlite3.connect(db) as c:
            c.execute("DELETE FROM kijun_host_results WHERE run_id = ? AND host = 'b'", (rid,))
            # a genuinely signed row copied from another run: its signature names that run
            c.execute("INSERT INTO kijun_host_results (run_id, host, result, idx, signature) "
                      "SELECT ?, host, result, idx, signature FROM kijun_host_results WHERE run_id = ?", (rid, other))
        report = st.finish_run(rid, signer)
        assert [h["host"] for h in report["hosts"]] == ["a", "c"] and report["complete"] is False
        problems = st.verify_chain(pubkeys)
    assert f"run {rid}: host result removed from the store (index 1); sealed as incomplete" in problems
    assert any(p.startswith(f"run {rid}: host z: not produced by this controller (host result signature")
               for p in problems)


def test_unsealed_forgery_is_named_by_verify_before_any_recovery(db, pubkeys):
    forged = forge_running_run(db, hosts=("web1",))
    with Store(db) as st:
        problems = st.verify_chain(pubkeys)
    assert problems == [f"run {forged} (unsealed): run record not signed: not produced by kijun",
                        f"run {forged} (unsealed): host web1: host result not signed: not produced by kijun"]


def test_rows_added_to_a_sealed_run_are_named(db, signer, pubkeys):
    with sqlite3.connect(db) as c:
        rid = c.execute("SELECT run_id FROM kijun_runs").fetchone()[0]
        c.execute("INSERT INTO kijun_host_results (run_id, host, result) VALUES (?, 'evil', ?)",
                  (rid, full_bytes(host("evil")).decode()))
    with Store(db) as st:
        assert [r["hosts"] for r in st.runs()] == [3]  # the listing counts rows; verify tells which are not signed
        assert st.verify_chain(pubkeys) == [f"run {rid}: host evil: stored host result is not the one in its signed "
                                            "report (added or edited after sealing)"]


def test_planted_index_and_garbage_times_cost_nothing(db, signer, pubkeys):
    with Store(db) as st:
        rid = st.begin_run({"kind": "check"}, signer)
        st.add_host_result(rid, host("a"), signer)
        with sqlite3.connect(db) as c:
            c.execute("INSERT INTO kijun_host_results (run_id, host, result, idx) VALUES (?, 'evil', '{}', ?)",
                      (rid, 10 ** 15))
            c.execute("UPDATE kijun_runs SET updated = 'yesterday', owner = 'x' WHERE run_id = ?", (rid,))
        st.add_host_result(rid, host("b"), signer)  # signed with index 10**15 + 1
        with sqlite3.connect(db) as c:
            c.execute("UPDATE kijun_runs SET updated = 'yesterday', owner = 'x' WHERE run_id = ?", (rid,))
        warnings = []
        assert st.recover_incomplete(signer, warn=warnings.append) == [rid]  # an unreadable time is no sign of life
        report = st.get_report(rid)
        assert [h["host"] for h in report["hosts"]] == ["a", "b"] and report["complete"] is False
        problems = st.verify_chain(pubkeys)
    assert f"run {rid}: host result removed from the store (index 1-{10 ** 15 - 1}); sealed as incomplete" in problems
    assert sorted(warnings) == sorted(p for p in problems if p.startswith(f"run {rid}"))
    assert f"run {rid}: host evil: not produced by this controller (host result not signed); left out of its " \
           "signed report" in problems


def test_an_older_store_gains_the_signature_columns(tmp_path, signer):
    path = tmp_path / "old.db"
    with sqlite3.connect(path) as c:  # the tables as the first release made them
        c.execute("CREATE TABLE kijun_runs (run_id TEXT PRIMARY KEY, kind TEXT NOT NULL, started TEXT NOT NULL, "
                  "state TEXT NOT NULL, owner TEXT NOT NULL, updated TEXT NOT NULL, meta TEXT NOT NULL, finished TEXT, "
                  "complete INTEGER NOT NULL DEFAULT 0, sequence BIGINT UNIQUE, digest TEXT, summary TEXT, report TEXT)")
        c.execute("CREATE TABLE kijun_host_results (id INTEGER PRIMARY KEY AUTOINCREMENT, run_id TEXT NOT NULL "
                  "REFERENCES kijun_runs(run_id), host TEXT NOT NULL, result TEXT NOT NULL, UNIQUE (run_id, host))")
    with Store(path) as st:
        assert run(st, signer)["chain"]["sequence"] == 1


# --- the advisory ledger ---------------------------------------------------------------------------

@pytest.fixture
def ledger(tmp_path, signer, key_path):
    inv = tmp_path / "inventory.py"
    inv.write_text(INVENTORY, encoding="utf-8")
    setup = {"inv": str(inv), "db": str(tmp_path / "runs.db"), "key": str(key_path), "signer": signer,
             "adv": advisory.load(str(EXAMPLE)), "fleet": FakeFleet({"hq-01": "ok", "hq-02": "stuck", "kanto-01": "down"})}
    roll(setup)
    return setup


def roll(setup, **kw):
    with Store(setup["db"]) as st:
        return runs.roll_out(setup["adv"], setup["inv"], store=st, sign_key=setup["signer"], apply_fn=setup["fleet"].apply,
                                 check_fn=setup["fleet"].check, confirmed_by="CSIRT", **kw)


def status_cli(setup):
    return CliRunner().invoke(main, ["advisory", "status", "EXAMPLE-2025-001", "--store", setup["db"],
                                     "--key", setup["key"], "--format", "json"])


def verify_cli(setup):
    return CliRunner().invoke(main, ["verify", "--store", setup["db"], "--key", setup["key"]])


def test_one_update_marking_every_host_confirmed_is_refused(ledger):
    assert verify_cli(ledger).exit_code == 0
    with sqlite3.connect(ledger["db"]) as c:
        c.execute("UPDATE kijun_advisory_hosts SET state = 'applied-and-verified', confirmed_by = 'CSIRT', "
                  "confirmed_at = updated")
    r = status_cli(ledger)
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert not data["all_confirmed"] and data["summary"]["confirmed"] == 1  # hq-01 was really confirmed
    flagged = {h["host"] for h in data["hosts"] if h["tampered"]}
    assert flagged == {"hq-02", "kanto-01"}
    assert "kijun: tampered: advisory EXAMPLE-2025-001: host kanto-01: ledger row signature does not match" in r.stderr
    v = verify_cli(ledger)
    assert v.exit_code == 1
    assert ("kijun: tampered: advisory EXAMPLE-2025-001: host hq-02: ledger row signature does not match the row "
            "(edited or forged)") in v.stderr
    assert "host hq-01" not in v.stderr
    table = CliRunner().invoke(main, ["advisory", "status", "EXAMPLE-2025-001", "--store", ledger["db"],
                                      "--key", ledger["key"]])
    assert table.exit_code == 1 and "(edited or forged): not counted as confirmed" in table.stdout


def test_a_forged_confirmation_neither_stands_nor_skips_the_host(ledger):
    with sqlite3.connect(ledger["db"]) as c:
        c.execute("UPDATE kijun_advisory_hosts SET state = 'applied-and-verified', confirmed_by = 'CSIRT', "
                  "confirmed_at = updated WHERE host = 'kanto-01'")
    again = roll(ledger, pending_only=True)  # still down: a real confirmation would stand, a forged one must not
    assert "kanto-01" not in again.skipped
    assert {r.host: r.state for r in again.rows}["kanto-01"] == "unreachable"
    data = json.loads(status_cli(ledger).stdout)
    assert {h["host"]: h["state"] for h in data["hosts"]}["kanto-01"] == "unreachable" and not data["tampered"]


def test_an_edited_advisory_row_makes_status_refuse(ledger):
    with sqlite3.connect(ledger["db"]) as c:  # judge against an inventory holding only confirmed hosts
        c.execute("UPDATE kijun_advisories SET inventory = '/tmp/only-hq-01.py'")
    r = status_cli(ledger)
    assert r.exit_code == 2 and r.output.count("\n") == 1
    assert "advisory EXAMPLE-2025-001: ledger row signature does not match the row (edited or forged)" in r.output
    v = verify_cli(ledger)
    assert v.exit_code == 1 and "advisory EXAMPLE-2025-001: ledger row signature does not match" in v.stderr


def test_an_edited_ledger_event_is_named_by_verify(ledger):
    with sqlite3.connect(ledger["db"]) as c:
        c.execute("UPDATE kijun_advisory_events SET actor = 'someone else' WHERE host = 'hq-01'")
    v = verify_cli(ledger)
    assert v.exit_code == 1 and "advisory EXAMPLE-2025-001: host hq-01: ledger event" in v.stderr


# --- kijun verify: corruption and nothing to verify ---------------------------------------------------

def test_corrupted_pages_fail_verify_in_one_line(tmp_path, signer, key_path):
    path = tmp_path / "results.db"
    with Store(path) as st:
        for _ in range(3):
            run(st, signer, hosts=[f"h{i}" for i in range(5)])
    ok = kijun("verify", "--store", str(path), "--key", str(key_path))
    assert ok.returncode == 0, ok.stderr
    with sqlite3.connect(path) as c:
        page_size = c.execute("PRAGMA page_size").fetchone()[0]
        # A page the chain check never reads (the host results' unique index): only the integrity check sees it.
        root = c.execute("SELECT rootpage FROM sqlite_master WHERE tbl_name = 'kijun_host_results' "
                         "AND type = 'index'").fetchone()[0]
    data = bytearray(path.read_bytes())
    start = (root - 1) * page_size
    data[start + 8: start + page_size] = b"\xa5" * (page_size - 8)
    path.write_bytes(bytes(data))
    r = kijun("verify", "--store", str(path), "--key", str(key_path))
    assert r.returncode == 1 and r.stdout == ""
    assert r.stderr.count("\n") == 1 and r.stderr.startswith(f"kijun: corrupt: {path}: integrity check: "), r.stderr


def test_verify_of_an_empty_directory_is_an_error(tmp_path, key_path):
    empty = tmp_path / "exports"
    empty.mkdir()
    r = kijun("verify", "--key", str(key_path), str(empty))
    assert r.returncode == 2 and r.stdout == ""
    assert r.stderr == f"kijun: error: {empty}: no report files (*.json) in this directory: nothing to verify\n"
