"""The result store on a real PostgreSQL server (the shared-use backend).

KIJUN_TEST_POSTGRES_URL names a database the tests may wipe (.ci/run starts a local server and sets it).
Without it the tests are skipped on a developer machine and fail in CI (CI=true).
"""

import json
import multiprocessing
import os
import subprocess
import sys

import pytest

from kijun.report import digest
from kijun.store import Store, StoreError

from test_store import KILLED_WRITER, REPO, _writer, chain_of, host, run  # noqa: F401 (fixtures below)
from test_store import pubkeys  # noqa: F401

URL_ENV = "KIJUN_TEST_POSTGRES_URL"


@pytest.fixture
def pg_url():
    url = os.environ.get(URL_ENV)
    if not url:
        if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
            pytest.fail(f"CI must test the PostgreSQL store: set {URL_ENV}")
        pytest.skip(f"no PostgreSQL server for the tests ({URL_ENV} unset)")
    psycopg = pytest.importorskip("psycopg")
    with psycopg.connect(url, autocommit=True) as conn:  # a clean database for each test
        for table in ("kijun_host_results", "kijun_runs", "kijun_rejected", "kijun_advisory_events",
                      "kijun_advisory_hosts", "kijun_advisories"):
            conn.execute(f"DROP TABLE IF EXISTS {table}")
    return url


def sql(url, statement, params=()):
    import psycopg

    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(statement, params)
        return cur.fetchall() if cur.description else []


def test_chain_signing_and_reading(pg_url, signer, pubkeys):
    with Store(pg_url) as s:
        reports = chain_of(s, 3, signer)
        assert [r["chain"]["sequence"] for r in reports] == [1, 2, 3]
        assert reports[2]["chain"]["previous"] == digest(reports[1])
        newest, older = s.latest(2)
        assert (newest["run_id"], older["run_id"]) == (reports[2]["run_id"], reports[1]["run_id"])
        assert [r["hosts"] for r in s.runs()] == [1, 1, 1]
        assert s.get_report(reports[0]["run_id"]) == reports[0]
        assert s.verify_chain(pubkeys) == []


def test_edited_and_removed_reports_are_named(pg_url, signer, pubkeys):
    with Store(pg_url) as s:
        reports = chain_of(s, 4, signer)
    edited, gone = reports[1]["run_id"], reports[2]["run_id"]
    text = sql(pg_url, "SELECT report FROM kijun_runs WHERE run_id = %s", (edited,))[0][0]
    sql(pg_url, "UPDATE kijun_runs SET report = %s WHERE run_id = %s",
        (text.replace('"status":"pass"', '"status":"fail"', 1), edited))
    sql(pg_url, "DELETE FROM kijun_host_results WHERE run_id = %s", (gone,))
    sql(pg_url, "DELETE FROM kijun_runs WHERE run_id = %s", (gone,))
    with Store(pg_url) as s:
        problems = s.verify_chain(pubkeys)
    assert any(p.startswith(f"run {edited}: signature does not match") for p in problems), problems
    assert f"run {reports[3]['run_id']}: sequence 4 follows 2: report(s) 3..3 missing (removed)" in problems


def test_killed_writer_keeps_finished_hosts(pg_url, key_path, signer, pubkeys):
    with Store(pg_url) as s:
        first = run(s, signer)
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(REPO), os.environ.get("PYTHONPATH", "")])}
    proc = subprocess.run([sys.executable, "-c", KILLED_WRITER, pg_url, json.dumps([host("a"), host("b", "fail")]),
                           str(key_path)],
                          capture_output=True, text=True, env=env, timeout=60)
    assert proc.returncode == 9, proc.stderr
    run_id = proc.stdout.strip()
    with Store(pg_url) as s:
        assert [h["host"] for h in s.host_results(run_id)] == ["a", "b"]
        assert s.recover_incomplete(signer) == [run_id]
        report = s.get_report(run_id)
        assert report["complete"] is False
        assert [h["host"] for h in report["hosts"]] == ["a", "b"]
        assert report["chain"] == {"sequence": 2, "previous": digest(first)}
        assert s.verify_chain(pubkeys) == []


def test_concurrent_writers_keep_one_valid_chain(pg_url, key_path, pubkeys):  # noqa: F811
    ctx = multiprocessing.get_context("fork")
    barrier = ctx.Barrier(3)
    # No store exists yet: the writers also race to create the tables.
    procs = [ctx.Process(target=_writer, args=(pg_url, key_path, 6, barrier, tag)) for tag in ("p", "q", "r")]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
        assert p.exitcode == 0
    with Store(pg_url) as s:
        runs = s.runs()
        assert sorted(r["sequence"] for r in runs) == list(range(1, 19))
        assert s.verify_chain(pubkeys) == []


def test_errors_are_one_line_and_hide_the_password(pg_url):
    bad = pg_url.replace("@", "x@", 1) if ":" in pg_url.split("@")[0].split("//")[1] else pg_url + "_missing"
    with pytest.raises(StoreError) as err:
        Store(bad)
    message = str(err.value)
    assert "\n" not in message and "cannot open store" in message
    password = bad.split("//")[1].split("@")[0].partition(":")[2]
    assert not password or password not in message
    with Store(pg_url) as s, pytest.raises(StoreError, match="unknown run nope"):
        s.get_report("nope")


def test_dead_server_is_found_by_keepalives_and_the_url_wins(pg_url):
    # A link that dies mid-query must end in an error; the operator's own URL settings are kept.
    with Store(pg_url) as s:
        dsn = s._conn.info.dsn
    assert "keepalives=1" in dsn and "keepalives_idle=30" in dsn and "connect_timeout=15" in dsn
    sep = "&" if "?" in pg_url else "?"
    with Store(f"{pg_url}{sep}keepalives_idle=7") as s:
        dsn = s._conn.info.dsn
    assert "keepalives_idle=7" in dsn and "keepalives_idle=30" not in dsn


def test_a_fabricated_running_run_is_not_sealed(pg_url, signer, pubkeys):  # noqa: F811
    from kijun.report import full_bytes

    with Store(pg_url) as s:
        first = run(s, signer)
    forged = "20200101T000000Z-f0f0f0"
    sql(pg_url, "INSERT INTO kijun_runs (run_id, kind, started, state, owner, updated, meta) VALUES "
        "(%s, 'check', '2020-01-01T00:00:00Z', 'running', 'elsewhere:1', '2020-01-01T00:00:00Z', %s)",
        (forged, json.dumps({"baseline": None, "inventory": None, "version": "0.1.0"})))
    sql(pg_url, "INSERT INTO kijun_host_results (run_id, host, result) VALUES (%s, 'web1', %s)",
        (forged, full_bytes(host("web1")).decode()))
    with Store(pg_url) as s:
        assert s.recover_incomplete(signer) == []
        assert [r["run_id"] for r in s.latest(5, complete_only=False)] == [first["run_id"]]
        assert s.verify_chain(pubkeys) == [
            f"run {forged}: not produced by this controller (run record not signed); left out of the chain"]
        assert s.integrity_problems() == []


def test_an_updated_advisory_ledger_is_flagged(pg_url, signer, pubkeys, tmp_path):  # noqa: F811
    from kijun import advisory, runs
    from kijun.store_ledger import verify_ledger
    from test_advisory import EXAMPLE, FakeFleet, INVENTORY

    inv = tmp_path / "inventory.py"
    inv.write_text(INVENTORY, encoding="utf-8")
    fleet = FakeFleet({"hq-01": "ok", "hq-02": "ok", "kanto-01": "down"})
    with Store(pg_url) as s:
        runs.roll_out(advisory.load(str(EXAMPLE)), str(inv), store=s, sign_key=signer, apply_fn=fleet.apply,
                      check_fn=fleet.check)
    sql(pg_url, "UPDATE kijun_advisory_hosts SET state = 'applied-and-verified', confirmed_at = updated")
    with Store(pg_url) as s:
        data = runs.advisory_status(s, "EXAMPLE-2025-001", public_keys=pubkeys)
        assert not data["all_confirmed"] and len(data["tampered"]) == 1 and "host kanto-01" in data["tampered"][0]
        assert verify_ledger(s, pubkeys) == [
            "advisory EXAMPLE-2025-001: host kanto-01: ledger row signature does not match the row (edited or forged)"]


def test_the_password_comes_from_a_file_never_from_the_command_line(pg_url, tmp_path):
    """--store-password-file (or KIJUN_STORE_PASSWORD_FILE) authenticates; the password is never printed."""
    from urllib.parse import urlsplit, urlunsplit

    parts = urlsplit(pg_url)
    if not parts.password:
        pytest.skip(f"{URL_ENV} has no password to move into a file")
    bare = urlunsplit(parts._replace(netloc=parts.netloc.replace(f":{parts.password}@", "@")))
    pw = tmp_path / "store-password"
    pw.write_text(parts.password + "\n")
    pw.chmod(0o600)

    def kijun(*args, **env):
        clean = {k: v for k, v in os.environ.items() if not k.startswith(("KIJUN_", "PG"))}
        return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True,
                              cwd=REPO, env={**clean, **env}, timeout=120)

    ok = kijun("runs", "--store", bare, "--store-password-file", str(pw))
    # connected with the password from the file: an empty store says so, no error
    assert ok.returncode == 0 and "error" not in ok.stderr, ok.stderr
    via_env = kijun("runs", KIJUN_STORE=bare, KIJUN_STORE_PASSWORD_FILE=str(pw))
    assert via_env.returncode == 0, via_env.stderr
    refused = kijun("runs", "--store", pg_url)  # the password typed on the command line
    assert refused.returncode == 2 and "visible to every user in `ps`" in refused.stderr
    wrong = tmp_path / "wrong"
    wrong.write_text("not-the-password\n")
    wrong.chmod(0o644)
    bad = kijun("runs", "--store", bare, "--store-password-file", str(wrong))
    assert bad.returncode == 2
    assert bad.stderr.splitlines()[0] == f"kijun: warning: {wrong}: password file is readable by others " \
                                         f"(mode 0644): chmod 600 {wrong}"
    assert len(bad.stderr.splitlines()) == 2 and "cannot open store" in bad.stderr.splitlines()[1]
    for r in (ok, via_env, refused, bad):
        assert parts.password not in r.stdout + r.stderr and "not-the-password" not in r.stdout + r.stderr
