"""A host must never hang or sink the run: output parsed on bytes per section, deadline, output cap,
scripts too big for one argument on stdin, stop before dispatch (issue 12)."""

from __future__ import annotations

import os
import time

import pytest

from kijun import check, fleet, probe
from kijun.model import ControlResult, HostResult, HostTarget, ProbeOutput
from kijun.plan import PlannedItem

SJIS = "# 日本語のコメント\n".encode("shift_jis")


def frame(nonce: str, key: str, body: bytes, rc: int = 0) -> bytes:
    return b"\n@@" + nonce.encode() + b" " + key.encode() + b"\n" + body + b"\n@@" + nonce.encode() + b"rc " + \
        str(rc).encode() + b"\n"


def test_a_non_utf8_byte_spoils_only_its_own_section():
    data = frame("n1", "file./etc/login.defs", SJIS + b"UMASK 027\n") + frame("n1", "other", "ok ✓\n".encode())
    out = probe.parse_output(data, "n1")
    assert out["other"] == ProbeOutput("ok ✓", 0) and not out["other"].bad_utf8
    assert out["file./etc/login.defs"].bad_utf8
    assert out["file./etc/login.defs"].stdout.endswith("\nUMASK 027") and "\ufffd" in out["file./etc/login.defs"].stdout


def test_markers_count_only_at_line_start_and_cut_off_sections_stay_missing():
    data = (frame("n2", "a", b"x @@n2 fake\ny", 3) + b"\n@@n2 b\npartial, no end marker\n"
            + frame("n2", "c", b"after"))
    out = probe.parse_output(data, "n2")
    assert out["a"] == ProbeOutput("x @@n2 fake\ny", 3)
    assert "b" not in out and out["c"].stdout == "after"


def test_str_output_still_parses_as_before():
    out = probe.parse_output("@@n a\nhello\n\n@@nrc 0\n", "n")
    assert out["a"] == ProbeOutput("hello", 0)


def test_output_over_the_cap_is_an_error_and_reading_stops():
    runner = probe.make_local_runner(timeout=60, max_output=1024 * 1024)
    t0 = time.monotonic()
    with pytest.raises(probe.ProbeError, match=r"sent more than 1048576 bytes"):
        runner("cat /dev/zero")  # endless: only the cap can end it
    assert time.monotonic() - t0 < 50


def test_a_probe_that_never_returns_is_killed_at_the_deadline(tmp_path):
    pidfile = tmp_path / "pid"
    runner = probe.make_local_runner(timeout=2, max_output=1024)
    with pytest.raises(probe.ProbeError, match=r"timed out after 2 s"):
        runner(f"sleep 300 & echo $! > {pidfile}; wait")
    pid = int(pidfile.read_text())
    for _ in range(50):  # the whole process group is killed, not only the shell
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.1)
    else:
        pytest.fail(f"sleep {pid} survived the deadline")


def test_the_check_of_a_hanging_host_ends_as_error_for_every_control():
    from kijun import baseline, plan

    base = baseline.load("tests/data/mini.yaml")
    target = HostTarget("h", importance_class="I")
    host_plan = plan.plan_host(base, target)
    res = check.check_host(host_plan, target, probe.make_local_runner(timeout=120))  # the same plan runs fine
    assert not res.error

    def hang(script):
        return probe.make_local_runner(timeout=1)("sleep 60")

    res = check.check_host(host_plan, target, hang)
    assert res.error == "timed out after 1 s"
    assert {r.status for r in res.results if r.status != "not-applicable"} == {"error"}


def test_a_script_too_big_for_one_argument_runs_from_stdin_and_probes_cannot_eat_it():
    probes = {f"k{i}": f"echo {i} # {'x' * 200}" for i in range(1000)}  # ~210 KiB of script
    probes["reads-stdin"] = "cat; echo after-cat"
    script = probe.build_script(probes, "nonce")
    assert len(script) > 200 * 1024
    out = probe.parse_output(probe.local_runner(script), "nonce")
    assert out["k999"].stdout == "999" and out["reads-stdin"].stdout == "after-cat"
    assert len(out) == 1001


def test_ssh_gets_big_scripts_on_stdin_and_the_destination_after_double_dash():
    from kijun.remote import Unreachable, remote_command, ssh_argv

    small, stdin = remote_command("echo hi", sudo=True)
    assert small == "sudo /bin/sh -c 'echo hi'" and stdin is None
    big = "echo x\n" * 30000
    command, stdin = remote_command(big, sudo=True)
    assert stdin == big.encode() and command == "sudo /bin/sh -c 'eval \"$(cat)\" </dev/null'"
    target = HostTarget("h1", ssh={"hostname": "h1.example.go.jp", "user": "kijun", "port": 2222,
                                   "key": "/k", "config_file": "/cfg", "known_hosts": "/kh"})
    argv = ssh_argv(target, command)
    assert argv[-3:] == ["--", "h1.example.go.jp", command]
    with pytest.raises(Unreachable):  # an option-like destination never reaches ssh's argv at all
        ssh_argv(HostTarget("x", ssh={"hostname": "-oProxyCommand=x"}), command)
    for opt in (["-F", "/cfg"], ["-i", "/k"], ["-o", "User=kijun"], ["-o", "Port=2222"], ["-o", "BatchMode=yes"],
                ["-o", "UserKnownHostsFile=/kh"], ["-o", "StrictHostKeyChecking=yes"]):
        assert any(argv[i:i + 2] == opt for i in range(len(argv))), opt


def test_a_stopped_fleet_dispatches_nothing_and_records_every_host_as_not_checked():
    import threading

    from kijun import baseline

    base = baseline.load("tests/data/mini.yaml")
    stop = threading.Event()
    stop.set()
    targets = [HostTarget(f"h{i}", importance_class="I", ssh={"hostname": "192.0.2.1"}) for i in range(3)]
    seen = []
    results = fleet.check_fleet(base, targets, parallel=1, on_result=seen.append, stop=stop)
    assert [r.host for r in results] == ["h0", "h1", "h2"] and len(seen) == 3
    for r in results:
        assert r.error == fleet.NOT_CHECKED and not r.reachable
        assert {c.status for c in r.results} <= {"error", "not-applicable"} and any(c.status == "error" for c in r.results)


def test_bad_utf8_is_named_in_the_reason_of_an_item_that_does_not_pass():
    item = PlannedItem(type="setting", params={"path": "/etc/login.defs", "key": "UMASK", "value": "027"}, path="x")
    out = probe.parse_output(frame("n", "file./etc/login.defs", SJIS + b"UMASK 022\n"), "n")
    v = check.evaluate_item(item, out)
    assert v.status == "fail" and "not valid UTF-8" in v.reason
    good = probe.parse_output(frame("n", "file./etc/login.defs", SJIS + b"UMASK 027\n"), "n")
    assert check.evaluate_item(item, good).status == "pass"


def test_results_table_strips_terminal_control_sequences():
    from kijun import baseline, present
    from kijun.report import build_report
    from kijun.termsafe import clean

    assert clean("a\x1b[31mred\x1b[0m\x1b]0;owned\x07 b\r\x08\x9b2J\u202eevil\ttab\nline") == "ared bevil\ttab\nline"
    base = baseline.load("tests/data/mini.yaml")
    c = base.controls[0]
    host = HostResult("h\x1b[2J", "I", "", "", "", [], True, "", "", "", {},
                      [ControlResult(c.id, "fail", "\x1b]2;pwned\x07UMASK \x1b[32mPASS\x1b[0m", "027")])
    table = present.render("table", "run", build_report("check", [host, host], baseline=base), "en", baseline=base)
    assert "\x1b" not in table and "\x07" not in table and "UMASK PASS" in table


def test_drift_and_report_tables_strip_escape_sequences_from_stored_host_text(tmp_path, signer):
    from click.testing import CliRunner

    from kijun.cli import main
    from kijun.store import Store

    db = str(tmp_path / "runs.db")
    evil = "\x1b]0;owned\x07\x1b[2J\x1b[1;1HPermitRootLogin no\x1b[8m"
    with Store(db) as st:
        for observed, status in (("PermitRootLogin no", "pass"), (evil, "fail")):
            run = st.begin_run({"kind": "check"}, signer)
            st.add_host_result(run, HostResult("web1", "I", "", "", "", [], True, "", "2026-11-29T00:00:00Z",
                                               "2026-11-29T00:00:01Z", {},
                                               [ControlResult("NISC-SSH-001", status, observed, "no")]), signer)
            st.finish_run(run, signer)
    out = CliRunner().invoke(main, ["drift", "--store", db]).output
    assert "PermitRootLogin no" in out and "\x1b" not in out and "\x07" not in out
    raw = CliRunner().invoke(main, ["drift", "--store", db, "--format", "json"]).output
    assert "\\u001b" in raw  # JSON keeps the evidence exact (escaped)


def test_the_spool_goes_next_to_the_store_else_to_the_current_directory(tmp_path, monkeypatch):
    from kijun import spool
    from kijun.report import build_report, load_report

    report = build_report("check", [], run_id="20261129T000000Z-abcdef", complete=False)
    store_dir = tmp_path / "store"
    store_dir.mkdir()
    here = spool.write(report, str(store_dir / "runs.db"))
    assert here == store_dir / "runs.db.20261129T000000Z-abcdef.spool.json"
    assert load_report(here)["complete"] is False and oct(here.stat().st_mode & 0o777) == "0o600"
    monkeypatch.chdir(tmp_path)
    gone = spool.write(report, str(tmp_path / "missing-dir" / "runs.db"))  # the store's directory is not there
    assert gone == tmp_path / "runs.db.20261129T000000Z-abcdef.spool.json" and gone.is_file()
