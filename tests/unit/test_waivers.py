"""Waivers: validation (one-line errors naming file and path), matching, expiry, and how every report shows them."""

import datetime as dt
import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from kijun import present
from kijun import inspect_report, matrix, waivers
from kijun.baseline import InputError
from kijun.cli import main
from kijun.report import build_report, report_errors
from test_matrix import (  # noqa: F401 - shared fixtures and fleet
    LATEST, fleet, host_results, load_fleet_baseline,
)

TODAY = dt.date(2026, 11, 22)


def write(tmp_path, text, name="waivers.yaml"):
    p = tmp_path / name
    p.write_text(text, encoding="utf-8")
    return p


def entry(**fields):
    base = {"control": "SSH-001", "hosts": "[hq-web-01]", "justification": "legacy job", "approver": "課長 山田",
            "expires": '"2099-03-31"'}
    base.update(fields)
    lines = [f"    {k}: {v}" for k, v in base.items() if v is not None]
    return "waivers:\n  - " + "\n".join(lines).lstrip() + "\n"


def one_error(tmp_path, text):
    p = write(tmp_path, text)
    with pytest.raises(InputError) as exc:
        waivers.load(p, today=TODAY)
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(p))
    return msg


def test_valid_file_loads(tmp_path):
    ws = waivers.load(write(tmp_path, entry(groups="[db]", ticket="RISK-1")), today=TODAY)
    (w,) = ws.waivers
    assert (w.control, w.hosts, w.groups, w.approver, w.expires, w.ticket) == (
        "SSH-001", ("hq-web-01",), ("db",), "課長 山田", "2099-03-31", "RISK-1")
    assert ws.notes == [] and ws.digest.startswith("sha256:")


def test_unquoted_date_is_accepted(tmp_path):
    ws = waivers.load(write(tmp_path, entry(expires="2099-03-31")), today=TODAY)
    assert ws.waivers[0].expiry == dt.date(2099, 3, 31)


def test_missing_approver_is_one_line_naming_file_and_path(tmp_path):
    msg = one_error(tmp_path, entry(approver=None))
    assert ":2: waivers[0].approver: an approver is required" in msg


def test_empty_approver_rejected(tmp_path):
    assert "waivers[0].approver: approver must not be empty" in one_error(tmp_path, entry(approver='"  "'))


def test_missing_expiry_rejected(tmp_path):
    assert "waivers[0].expires: an expiry date is required" in one_error(tmp_path, entry(expires=None))


@pytest.mark.parametrize("value, reason", [
    ('"2026-02-30"', "2026-02-30 is not a calendar date"),
    ("next year", "expires must be a date YYYY-MM-DD (got 'next year')"),
])
def test_invalid_expiry_rejected(tmp_path, value, reason):
    msg = one_error(tmp_path, entry(expires=value))
    assert ":6: waivers[0].expires: " + reason in msg


def test_other_bad_entries(tmp_path):
    assert "name the hosts and/or groups" in one_error(tmp_path, entry(hosts=None))
    assert "unknown key(s): 'approved'" in one_error(tmp_path, entry(approved="x"))
    assert "YAML syntax error" in one_error(tmp_path, "waivers: [\n")
    assert "empty file" in one_error(tmp_path, "")


def test_second_entry_path(tmp_path):
    text = entry() + "  - control: PKG-001\n    groups: [db]\n    justification: x\n    expires: '2099-01-01'\n"
    assert "waivers[1].approver" in one_error(tmp_path, text)


def test_unknown_control_and_expired_are_notes(tmp_path):
    base = load_fleet_baseline(tmp_path)
    ws = waivers.load(write(tmp_path, entry(control="NOPE-001", expires='"2020-01-31"')), base, today=TODAY)
    notes = [str(n) for n in ws.notes]
    assert any("waivers[0].control: unknown control NOPE-001" in n for n in notes)
    assert any("waivers[0].expires: expired on 2020-01-31" in n for n in notes)
    assert [w.control for w in ws.expired(TODAY)] == ["NOPE-001"]


def test_host_and_group_matching(tmp_path):
    base = load_fleet_baseline(tmp_path)
    text = (entry(control="SSH-001", hosts="[kansai-01]")
            + "  - control: PKG-001\n    groups: [db]\n    justification: x\n    approver: y\n    expires: '2099-01-01'\n")
    ws = waivers.load(write(tmp_path, text), base, today=TODAY)
    statuses = {**LATEST, ("hq-web-01", "PKG-001"): "fail", ("hq-db-01", "SSH-001"): "fail"}
    hosts = waivers.apply(ws, host_results(base, statuses), today=TODAY)
    got = {(h.host, r.control_id): r.status for h in hosts for r in h.results}
    assert got[("kansai-01", "SSH-001")] == "waived"  # named host
    assert got[("hq-db-01", "PKG-001")] == "waived"  # error, host in group db
    assert got[("hq-web-01", "PKG-001")] == "fail"  # group web is not covered
    assert got[("hq-web-01", "SSH-001")] == "fail"  # another host
    assert got[("hq-db-01", "SSH-001")] == "fail"  # the group waiver is for PKG-001 only
    assert got[("kanto-02", "PKG-001")] == "unreachable"  # nothing known: never waived
    assert got[("kanto-01", "SSH-001")] == "pass"
    waived = next(r for h in hosts if h.host == "kansai-01" for r in h.results if r.control_id == "SSH-001")
    assert waived.waiver == {"justification": "legacy job", "approver": "課長 山田", "expires": "2099-03-31",
                             "ticket": None}


def test_expired_waiver_turns_back_into_failure_and_is_listed(tmp_path):
    base = load_fleet_baseline(tmp_path)
    ws = waivers.load(write(tmp_path, entry(expires='"2026-11-21"')), base, today=TODAY)
    hosts = waivers.apply(ws, host_results(base, LATEST), today=TODAY)
    r = next(r for h in hosts if h.host == "hq-web-01" for r in h.results if r.control_id == "SSH-001")
    assert r.status == "fail" and r.waiver["expired"] is True
    report = build_report("check", hosts, baseline=base)
    assert report_errors(report) == []
    assert [(e["host"], e["control_id"], e["status"]) for e in waivers.expired_in_report(report)] == [
        ("hq-web-01", "SSH-001", "fail")]
    # The last valid day still waives.
    hosts = waivers.apply(ws, host_results(base, LATEST), today=dt.date(2026, 11, 21))
    r = next(r for h in hosts if h.host == "hq-web-01" for r in h.results if r.control_id == "SSH-001")
    assert r.status == "waived"


def test_waived_shown_in_json_report_matrix_and_inspect(fleet):  # noqa: F811
    report = fleet["reports"][-1]
    base = fleet["base"]
    # JSON run report: the stored, signed report carries status waived and the waiver.
    assert [(w["host"], w["control_id"], w["approver"]) for w in waivers.waived_in_report(report)] == [
        ("hq-db-01", "UPD-001", "情報システム課長 山田")]
    assert [(w["host"], w["control_id"]) for w in waivers.expired_in_report(report)] == [("hq-web-01", "SSH-001")]
    # Matrix: the waived cell, both lists, every format.
    data = matrix.build(report, base)
    db = next(h for h in data["hosts"] if h["host"] == "hq-db-01")
    assert db["cells"][-1] == "waived"
    assert data["waivers"]["active"][0]["control_id"] == "UPD-001"
    assert data["waivers"]["expired"][0]["control_id"] == "SSH-001"
    assert "Active waivers (1)" in present.render("table", "matrix", data, "en") and "Expired waivers (1)" in present.render("table", "matrix", data, "en")
    assert "例外承認" in present.render("markdown", "matrix", matrix.build(report, base, lang="ja"), "ja")
    # Inspect: an expired waiver is a gap of its own kind; a valid one is no gap.
    ins = inspect_report.build(report, base, classes=("I", "II", "III", "IV"), tags=("targeted-attack", "patch"))
    kinds = {(g["host"], g["control_id"]): g["gap"] for g in ins["gaps"]}
    assert kinds[("hq-web-01", "SSH-001")] == "expired-waiver"
    assert ("hq-db-01", "UPD-001") not in kinds
    upd = next(c for c in ins["controls"] if c["id"] == "UPD-001")
    assert upd["by_status"]["waived"] == 1


def test_cli_rejects_bad_waiver_file_with_exit_2(tmp_path):
    p = write(tmp_path, entry(approver=None))
    r = CliRunner().invoke(main, ["check", "--local", "--waivers", str(p)])
    assert r.exit_code == 2
    lines = [ln for ln in r.output.splitlines() if ln]
    assert len(lines) == 1 and lines[0].startswith(f"kijun: error: {p}:2: waivers[0].approver: ")
    r = CliRunner().invoke(main, ["waivers", "check", str(p)])
    assert r.exit_code == 2 and "waivers[0].approver" in r.output


def test_cli_waivers_check(tmp_path):
    ok = write(tmp_path, entry(), "ok.yaml")
    r = CliRunner().invoke(main, ["waivers", "check", str(ok), "-b", str(load_fleet_baseline(tmp_path).path)])
    assert r.exit_code == 0 and "ok: 1 waiver(s), 0 expired" in r.output
    old = write(tmp_path, entry(expires='"2020-01-01"'), "old.yaml")
    r = CliRunner().invoke(main, ["waivers", "check", str(old), "-b", str(load_fleet_baseline(tmp_path).path)])
    assert r.exit_code == 1 and "expired on 2020-01-01" in r.output


def test_shipped_example_is_valid():
    errors, warnings = waivers.validate(Path(__file__).parents[2] / "waivers/example.yaml")
    assert errors == [] and json.dumps([str(w) for w in warnings])
