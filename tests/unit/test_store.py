import json
import multiprocessing
import os
import sqlite3
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from kijun.report import digest, load_report
from kijun.signing import generate_key, load_private, load_public_keys, public_path
from kijun.store import Store, StoreError, verify_files

REPO = Path(__file__).resolve().parents[2]


def host(name, status="pass", reachable=True, **facts):
    return {
        "host": name, "importance_class": "III", "organisation": "", "branch": "", "role": "", "groups": [],
        "reachable": reachable, "error": "" if reachable else "timeout",
        "started": "2026-11-22T22:15:00Z", "finished": "2026-11-22T22:15:01Z", "commands": 1,
        "facts": {"hostname": name, **facts},
        "results": [{"control_id": "SSH-001", "status": status, "observed": f"{name} PermitRootLogin no",
                     "expected": "no", "reason": "", "evidence": "sshd -T", "items": [], "waiver": None}],
    }


@pytest.fixture
def pubkeys(key_path):
    return load_public_keys([public_path(key_path)])


@pytest.fixture
def store(tmp_path):
    with Store(tmp_path / "results.db") as s:
        yield s


def run(store, signer, hosts=("a", "b"), kind="check", status="pass"):
    run_id = store.begin_run({"kind": kind, "baseline": {"id": "std", "version": "1", "digest": "", "path": "b.yaml"}},
                             signer)
    for h in hosts:
        store.add_host_result(run_id, host(h, status), signer)
    return store.finish_run(run_id, signer)


def chain_of(store, n, signer):
    return [run(store, signer, hosts=(f"h{i}",)) for i in range(n)]


def raw(store_path):
    return sqlite3.connect(store_path, isolation_level=None)


def test_runs_are_chained_and_signed(store, signer, pubkeys):
    first = run(store, signer)
    second = run(store, signer, status="fail")
    assert first["chain"] == {"sequence": 1, "previous": None}
    assert second["chain"] == {"sequence": 2, "previous": digest(first)}
    assert second["summary"]["by_status"]["fail"] == 2
    assert [h["host"] for h in second["hosts"]] == ["a", "b"]
    assert store.get_report(first["run_id"]) == first
    assert store.head() == (2, digest(second))
    assert store.verify_chain(pubkeys) == []


def test_runs_latest_and_kinds(store, signer):
    a = run(store, signer)
    b = run(store, signer, kind="apply")
    c = run(store, signer)
    assert [r["run_id"] for r in store.runs()] == [a["run_id"], b["run_id"], c["run_id"]]
    assert [r["run_id"] for r in store.runs(kind="apply")] == [b["run_id"]]
    summary = store.runs()[0]
    assert summary["state"] == "finished" and summary["hosts"] == 2 and summary["by_status"]["pass"] == 2
    new, old = store.latest(2, kind="check")  # newest first
    assert (old["run_id"], new["run_id"]) == (a["run_id"], c["run_id"])
    assert [r["run_id"] for r in store.latest(5, kind=None)] == [c["run_id"], b["run_id"], a["run_id"]]


def test_latest_skips_incomplete_runs_by_default(store, signer):
    a = run(store, signer)
    rid = store.begin_run({"kind": "check"}, signer)
    store.add_host_result(rid, host("a"), signer)
    partial = store.finish_run(rid, signer, complete=False)
    assert partial["complete"] is False
    assert [r["run_id"] for r in store.latest(2)] == [a["run_id"]]
    assert [r["run_id"] for r in store.latest(2, complete_only=False)] == [rid, a["run_id"]]


def test_export_round_trips_through_load_report(store, signer, tmp_path):
    r = run(store, signer)
    path = store.export(r["run_id"], tmp_path)
    assert path.name == f"{r['run_id']}.json"
    assert load_report(path) == r
    assert digest(load_report(path)) == digest(r)


def test_misuse_is_refused(store, signer):
    r = run(store, signer)
    with pytest.raises(StoreError, match="already finished"):
        store.add_host_result(r["run_id"], host("late"), signer)
    with pytest.raises(StoreError, match="already finished"):
        store.finish_run(r["run_id"], signer)
    with pytest.raises(StoreError, match="unknown run"):
        store.get_report("20260101T000000Z-000000")
    with pytest.raises(StoreError, match="unknown run kind"):
        store.begin_run({"kind": "audit"}, signer)
    with pytest.raises(StoreError, match=r"run meta: baseline\.digest: 'md5:x' does not match"):
        store.begin_run({"kind": "check", "baseline": {"id": "b", "version": "1", "digest": "md5:x", "path": ""}},
                        signer)
    rid = store.begin_run({"kind": "check"}, signer)
    with pytest.raises(StoreError, match="not finished"):
        store.get_report(rid)
    with pytest.raises(StoreError, match="reachable"):
        store.add_host_result(rid, {**host("x"), "reachable": "yes"}, signer)


def test_secrets_never_reach_the_store(store, signer, tmp_path):
    rid = store.begin_run({"kind": "check"}, signer)
    store.add_host_result(rid, host("a", db_password="hunter2", token="t"), signer)
    store.finish_run(rid, signer)
    store.close()
    assert b"hunter2" not in (tmp_path / "results.db").read_bytes()
    with raw(tmp_path / "results.db") as db:
        assert "hunter2" not in db.execute("SELECT group_concat(result) FROM kijun_host_results").fetchone()[0]


def test_same_host_twice_keeps_the_last_result(store, signer):
    rid = store.begin_run({"kind": "check"}, signer)
    store.add_host_result(rid, host("a", "fail"), signer)
    store.add_host_result(rid, host("a", "pass"), signer)
    r = store.finish_run(rid, signer)
    assert len(r["hosts"]) == 1 and r["hosts"][0]["results"][0]["status"] == "pass"


def test_store_file_is_private_and_in_wal_mode(tmp_path):
    Store(tmp_path / "sub" / "r.db").close()
    assert stat.S_IMODE((tmp_path / "sub" / "r.db").stat().st_mode) == 0o600
    assert raw(tmp_path / "sub" / "r.db").execute("PRAGMA journal_mode").fetchone()[0] == "wal"


def test_urls(tmp_path, monkeypatch):
    Store(f"sqlite:///{tmp_path}/u.db").close()  # four slashes: absolute path
    assert (tmp_path / "u.db").exists()
    monkeypatch.chdir(tmp_path)
    Store("sqlite:///rel.db").close()
    assert (tmp_path / "rel.db").exists()
    with pytest.raises(StoreError, match="unsupported store URL"):
        Store("mysql://x/y")
    try:
        import psycopg  # noqa: F401
    except ImportError:
        with pytest.raises(StoreError, match=r"needs psycopg: pip install 'kijun\[postgres\]'"):
            Store("postgresql://kijun@localhost/kijun")


# --- tamper detection ---------------------------------------------------------------------------

def test_one_edited_byte_is_caught_and_the_run_named(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 4, signer)
    victim = reports[1]["run_id"]
    with raw(tmp_path / "results.db") as db:
        text = db.execute("SELECT report FROM kijun_runs WHERE run_id = ?", (victim,)).fetchone()[0]
        edited = text.replace("PermitRootLogin no", "PermitRootLogin mo", 1)
        assert len(edited) == len(text) and edited != text
        db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (edited, victim))
    problems = store.verify_chain(pubkeys)
    assert any(victim in p and "signature does not match" in p for p in problems), problems
    assert any(victim in p and "stored digest" in p for p in problems), problems
    # the next report's link names the edited one as well
    assert any(p.startswith(f"run {reports[2]['run_id']}: previous digest does not match run {victim}") for p in problems)
    assert all(reports[0]["run_id"] not in p and reports[3]["run_id"] not in p for p in problems)


def test_edit_with_recomputed_digest_column_is_still_caught(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 3, signer)
    victim = reports[2]["run_id"]
    edited = json.loads(json.dumps(reports[2]))
    edited["hosts"][0]["results"][0]["status"] = "fail"
    with raw(tmp_path / "results.db") as db:
        db.execute("UPDATE kijun_runs SET report = ?, digest = ? WHERE run_id = ?",
                   (json.dumps(edited), digest(edited), victim))
    problems = store.verify_chain(pubkeys)
    assert problems == [f"run {victim}: signature does not match the report content (edited or forged)"]


def test_unparsable_stored_report(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 2, signer)
    with raw(tmp_path / "results.db") as db:
        db.execute("UPDATE kijun_runs SET report = '{broken' WHERE run_id = ?", (reports[0]["run_id"],))
    problems = store.verify_chain(pubkeys)
    assert f"run {reports[0]['run_id']}: stored report is not valid JSON" in problems


def test_deleting_a_middle_report_is_caught(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 5, signer)
    gone = reports[2]["run_id"]
    with raw(tmp_path / "results.db") as db:
        db.execute("DELETE FROM kijun_host_results WHERE run_id = ?", (gone,))
        db.execute("DELETE FROM kijun_runs WHERE run_id = ?", (gone,))
    problems = store.verify_chain(pubkeys)
    assert problems == [f"run {reports[3]['run_id']}: sequence 4 follows 2: report(s) 3..3 missing (removed)"]


def test_deleting_the_first_report_is_caught(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 3, signer)
    with raw(tmp_path / "results.db") as db:
        db.execute("DELETE FROM kijun_host_results WHERE run_id = ?", (reports[0]["run_id"],))
        db.execute("DELETE FROM kijun_runs WHERE run_id = ?", (reports[0]["run_id"],))
    problems = store.verify_chain(pubkeys)
    assert problems == [f"run {reports[1]['run_id']}: chain starts at sequence 2: report(s) 1..1 missing (removed)"]


def test_swapping_two_reports_is_caught(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 4, signer)
    b, c = reports[1]["run_id"], reports[2]["run_id"]
    with raw(tmp_path / "results.db") as db:
        db.execute("UPDATE kijun_runs SET sequence = -1 WHERE run_id = ?", (b,))
        db.execute("UPDATE kijun_runs SET sequence = 2 WHERE run_id = ?", (c,))
        db.execute("UPDATE kijun_runs SET sequence = 3 WHERE run_id = ?", (b,))
    problems = store.verify_chain(pubkeys)
    assert f"run {c}: kept at sequence 2 but signed as sequence 3 (reordered)" in problems
    assert f"run {b}: kept at sequence 3 but signed as sequence 2 (reordered)" in problems
    assert len(problems) == 2, problems


def test_swapping_report_contents_between_rows_is_caught(store, signer, pubkeys, tmp_path):
    reports = chain_of(store, 3, signer)
    a, b = reports[0]["run_id"], reports[1]["run_id"]
    with raw(tmp_path / "results.db") as db:
        ra, rb = (db.execute("SELECT report FROM kijun_runs WHERE run_id = ?", (x,)).fetchone()[0] for x in (a, b))
        db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (rb, a))
        db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (ra, b))
    problems = store.verify_chain(pubkeys)
    assert any(p.startswith(f"run {a}: stored report belongs to run {b}") for p in problems)
    assert any(p.startswith(f"run {b}: stored report belongs to run {a}") for p in problems)
    assert any(f"run {a}: kept at sequence 1 but signed as sequence 2" in p for p in problems)


def test_unknown_signing_key_is_reported(store, signer, tmp_path):
    chain_of(store, 2, signer)
    other = load_public_keys([public_path(generate_key(tmp_path / "other.pem"))])
    problems = store.verify_chain(other)
    assert len(problems) == 2 and all("signed by unknown key" in p for p in problems)


# --- killed writers and concurrency -------------------------------------------------------------

KILLED_WRITER = """
import json, os, sys
from kijun.store import Store
store = Store(sys.argv[1])
from kijun.signing import load_private
signer = load_private(sys.argv[3])
run_id = store.begin_run({"kind": "check"}, signer)
for h in json.loads(sys.argv[2]):
    store.add_host_result(run_id, h, signer)
print(run_id, flush=True)
os._exit(9)  # killed before finish_run: no cleanup, no commit beyond what is already done
"""


def test_killed_writer_keeps_finished_hosts(tmp_path, key_path, signer, pubkeys):
    db = tmp_path / "results.db"
    with Store(db) as s:
        first = run(s, signer)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, str(db), json.dumps([host("a"), host("b", "fail")]),
                           str(key_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 9, proc.stderr
    run_id = proc.stdout.strip()
    with Store(db) as s:
        [summary] = [r for r in s.runs() if r["run_id"] == run_id]
        assert summary["state"] == "running" and summary["sequence"] is None and summary["hosts"] == 2
        assert [h["host"] for h in s.host_results(run_id)] == ["a", "b"]
        assert s.recover_incomplete(signer) == [run_id]
        assert s.recover_incomplete(signer) == []
        report = s.get_report(run_id)
        assert report["complete"] is False and report["finished"] is None
        assert [h["host"] for h in report["hosts"]] == ["a", "b"]
        assert report["chain"] == {"sequence": 2, "previous": digest(first)}
        assert s.verify_chain(pubkeys) == []


def test_recover_leaves_live_runs_alone(store, signer):
    rid = store.begin_run({"kind": "check"}, signer)  # owned by this (live) process
    store.add_host_result(rid, host("a"), signer)
    assert store.recover_incomplete(signer) == []
    assert store.recover_incomplete(signer, stale_after=-1) == [rid]  # silent "too long": sealed


def _writer(db, key_path, n_runs, barrier, tag):
    signer = load_private(key_path)
    with Store(db) as s:
        barrier.wait()
        for i in range(n_runs):
            rid = s.begin_run({"kind": "check"}, signer)
            for h in range(3):
                s.add_host_result(rid, host(f"{tag}-{i}-{h}"), signer)
            s.finish_run(rid, signer)


def test_concurrent_writers_keep_one_valid_chain(tmp_path, key_path, pubkeys):
    db = tmp_path / "results.db"
    Store(db).close()
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(2)
    procs = [ctx.Process(target=_writer, args=(db, key_path, 10, barrier, tag)) for tag in ("p", "q")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(db) as s:
        runs = s.runs()
        assert len(runs) == 20
        assert sorted(r["sequence"] for r in runs) == list(range(1, 21))
        assert s.verify_chain(pubkeys) == []


# --- exported files -----------------------------------------------------------------------------

def exported(store, signer, tmp_path, n=4):
    reports = chain_of(store, n, signer)
    out = tmp_path / "export"
    out.mkdir()
    paths = [store.export(r["run_id"], out) for r in reports]
    return reports, paths, out


def test_verify_files_clean(store, signer, pubkeys, tmp_path):
    _, _, out = exported(store, signer, tmp_path)
    assert verify_files([out], pubkeys) == []


def test_verify_files_names_the_edited_file(store, signer, pubkeys, tmp_path):
    reports, paths, out = exported(store, signer, tmp_path)
    text = paths[1].read_text()
    paths[1].write_text(text.replace("PermitRootLogin no", "PermitRootLogin mo", 1))
    problems = verify_files([out], pubkeys)
    assert f"{paths[1]} (run {reports[1]['run_id']}): signature does not match the report content (edited or forged)" in problems
    assert any(p.startswith(f"{paths[2]} (run {reports[2]['run_id']}): previous digest does not match {paths[1]}")
               for p in problems)


def test_verify_files_names_the_file_after_a_removed_one(store, signer, pubkeys, tmp_path):
    reports, paths, out = exported(store, signer, tmp_path)
    paths[2].unlink()
    assert verify_files([out], pubkeys) == [
        f"{paths[3]} (run {reports[3]['run_id']}): sequence 4 follows 2: report(s) 3..3 missing (removed)"]


def test_verify_files_reports_broken_files_in_one_line(store, signer, pubkeys, tmp_path):
    reports, paths, out = exported(store, signer, tmp_path)
    paths[0].write_text(paths[0].read_text()[:-20])
    problems = verify_files(paths, pubkeys)
    assert problems[0].startswith(f"{paths[0]}:") and "invalid JSON" in problems[0]
    assert "\n" not in problems[0]
    assert any("chain starts at sequence 2" in p for p in problems)


def test_verify_files_detects_a_fork(store, signer, pubkeys, tmp_path):
    _, paths, out = exported(store, signer, tmp_path, n=2)
    (out / "copy.json").write_text(paths[1].read_text())
    problems = verify_files([out], pubkeys)
    assert len(problems) == 1 and "sequence 2 used twice" in problems[0]


def test_a_file_that_is_not_a_store_gives_a_one_line_error(tmp_path):
    bad = tmp_path / "notes.db"
    bad.write_text("these are my notes, not a database\n" * 100)
    with pytest.raises(StoreError) as info:
        Store(bad)
    assert str(info.value).startswith(str(bad)) and "not a database" in str(info.value)
    assert "\n" not in str(info.value)


def test_failed_write_leaves_no_open_transaction(store, signer):
    rid = store.begin_run({"kind": "check"}, signer)
    with pytest.raises(StoreError):
        store.begin_run({"kind": "check", "run_id": rid}, signer)  # duplicate id: rolled back
    store.add_host_result(rid, host("a"), signer)  # the store still takes writes
    assert store.finish_run(rid, signer)["chain"]["sequence"] == 1


def test_threads_can_share_one_store(store, signer, pubkeys):
    from concurrent.futures import ThreadPoolExecutor

    rid = store.begin_run({"kind": "check"}, signer)
    with ThreadPoolExecutor(8) as pool:
        list(pool.map(lambda i: store.add_host_result(rid, host(f"h{i:03d}"), signer), range(64)))
    report = store.finish_run(rid, signer)
    assert [h["host"] for h in report["hosts"]] == [f"h{i:03d}" for i in range(64)]
    assert store.verify_chain(pubkeys) == []


def test_store_url_defaults_to_kijun_store_env(tmp_path, monkeypatch):
    monkeypatch.setenv("KIJUN_STORE", f"sqlite:///{tmp_path}/env.db")
    with Store() as s:
        assert s.url == f"sqlite:///{tmp_path}/env.db"
    assert (tmp_path / "env.db").exists()
