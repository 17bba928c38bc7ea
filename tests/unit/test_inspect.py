"""Early-inspection report (seed 001): ranking, per organisation/branch, signed and chained like run reports."""

import json

from click.testing import CliRunner

from kijun import inspect_report, present, runs
from kijun.cli import main
from kijun.signing import load_public_keys, public_path, verify_signature
from kijun.store import Store
from test_matrix import fleet  # noqa: F401 - shared fixture

ALL = ("I", "II", "III", "IV")


def test_class_one_high_ranks_above_class_three_low(fleet):  # noqa: F811
    data = inspect_report.build(fleet["reports"][-1], fleet["base"], classes=ALL)
    ranks = {(g["host"], g["control_id"]): g for g in data["gaps"]}
    high_i = ranks[("hq-web-01", "SSH-001")]  # class I, severity high
    low_iii = ranks[("hq-file-01", "LOG-001")]  # class III, severity low
    assert (high_i["importance_class"], high_i["severity"], high_i["score"]) == ("I", "high", 12)
    assert (low_iii["importance_class"], low_iii["severity"], low_iii["score"]) == ("III", "low", 2)
    assert high_i["rank"] < low_iii["rank"]
    assert low_iii["rank"] == len(data["gaps"])  # the least urgent gap comes last
    # Ranks are 1..n in score order.
    assert [g["rank"] for g in data["gaps"]] == list(range(1, len(data["gaps"]) + 1))
    scores = [g["score"] for g in data["gaps"]]
    assert scores == sorted(scores, reverse=True)


def test_gaps_and_what_is_no_gap(fleet):  # noqa: F811
    data = inspect_report.build(fleet["reports"][-1], fleet["base"], classes=ALL)
    got = {(g["host"], g["control_id"]): g["gap"] for g in data["gaps"]}
    assert got == {
        ("hq-web-01", "SSH-001"): "expired-waiver",
        ("hq-db-01", "PKG-001"): "error",
        ("hq-file-01", "LOG-001"): "fail",
        ("kansai-01", "SSH-001"): "fail",
        ("kanto-02", "SSH-001"): "unreachable",
        ("kanto-02", "PKG-001"): "unreachable",
    }
    # UPD-001 is not tagged targeted-attack; LOG-001 is not for class IV: neither is inspected there.
    assert [c["id"] for c in data["controls"]] == ["SSH-001", "PKG-001", "LOG-001"]
    assert data["totals"]["by_gap"] == {"unreachable": 2, "fail": 2, "error": 1, "expired-waiver": 1}


def test_important_systems_only_by_default(fleet):  # noqa: F811
    data = inspect_report.build(fleet["reports"][-1], fleet["base"])
    assert {h["importance_class"] for h in data["hosts"]} == {"I", "II"}
    assert [(g["rank"], g["host"], g["control_id"], g["score"]) for g in data["gaps"]] == [
        (1, "hq-db-01", "PKG-001", 12),  # II x critical
        (2, "hq-web-01", "SSH-001", 12),  # I x high
    ]


def test_per_organisation_and_branch(fleet):  # noqa: F811
    data = inspect_report.build(fleet["reports"][-1], fleet["base"], classes=ALL)
    units = {(u["organisation"], u["branch"]): u for u in data["units"]}
    assert set(units) == {("agency-b", "kansai"), ("ministry-a", "honsho"), ("ministry-a", "kanto-branch")}
    by_rank = {g["rank"]: g for g in data["gaps"]}
    for (org, branch), u in units.items():
        assert all((by_rank[r]["organisation"], by_rank[r]["branch"]) == (org, branch) for r in u["ranks"])
        assert u["ranks"] == sorted(u["ranks"])
    assert len(units[("ministry-a", "honsho")]["ranks"]) == 3 and units[("ministry-a", "honsho")]["hosts"] == 3
    text = present.render("table", "inspect", data, "en")
    assert "ministry-a/kanto-branch" in text and "Prioritised remediation list" in text
    ja = present.render("markdown", "inspect", inspect_report.build(fleet["reports"][-1], fleet["base"], classes=ALL, lang="ja"), "ja")
    assert "標的型攻撃等に備えた対策の早期点検" in ja and "優先順位付き是正リスト" in ja and "期限切れ例外" in ja


def test_stored_signed_and_tampering_detected(fleet, signer, key_path):  # noqa: F811
    keys = load_public_keys([public_path(key_path)])
    with Store(fleet["db"]) as st:
        report = st.latest(1)[0]
        data = inspect_report.build(report, fleet["base"], classes=ALL)
        signed, _ = runs.store_inspection(data, report, store=st, sign_key=signer, say=lambda line: None)
        assert signed["kind"] == "inspect" and data["inspect_run"]["run_id"] == signed["run_id"]
        assert signed["chain"]["sequence"] == report["chain"]["sequence"] + 1
        verify_signature(signed, keys)
        assert st.verify_chain(keys) == []
        web = next(h for h in signed["hosts"] if h["host"] == "hq-web-01")
        ssh = next(r for r in web["results"] if r["control_id"] == "SSH-001")
        assert ssh["priority"]["rank"] == next(g["rank"] for g in data["gaps"] if g["host"] == "hq-web-01")
        assert web["inspected_from"] == report["run_id"]
        assert {r["control_id"] for r in web["results"]} == {"SSH-001", "PKG-001", "LOG-001"}
        # Raise a gap's rank in the stored report: the signature and the chain catch it.
        text = st._q("SELECT report FROM kijun_runs WHERE run_id = ?", (signed["run_id"],))[0][0]
        forged = text.replace('"rank":1,', '"rank":9,', 1) if '"rank":1,' in text else text.replace('"rank": 1,', '"rank": 9,', 1)
        assert forged != text
        with st._transaction():
            st._q("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (forged, signed["run_id"]))
        problems = st.verify_chain(keys)
    assert any(signed["run_id"] in p and "signature does not match" in p for p in problems)


def test_cli_inspect(fleet, key_path):  # noqa: F811
    db, b = str(fleet["db"]), str(fleet["base"].path)
    r = CliRunner().invoke(main, ["inspect", "--store", db, "--key", str(key_path), "-b", b, "--format", "json",
                                  "--classes", "I,II,III,IV"])
    assert r.exit_code == 1, r.output  # gaps remain
    data = json.loads(r.stdout)
    assert data["inspect_run"]["sequence"] == 4 and data["totals"]["gaps"] == 6
    r = CliRunner().invoke(main, ["verify", "--store", db, "--key", str(key_path)])
    assert r.exit_code == 0, r.output
    r = CliRunner().invoke(main, ["inspect", "--store", db, "-b", b, "--no-store", "--classes", "IV", "--lang", "ja"])
    assert r.exit_code == 1 and "kanto-02" in r.output and "到達不能" in r.output
    r = CliRunner().invoke(main, ["inspect", "--store", db, "-b", b, "--no-store", "--tag", "nothing"])
    assert r.exit_code == 2 and "no control tagged nothing" in r.output
    r = CliRunner().invoke(main, ["inspect", "--store", db, "-b", b, "--key", "/nonexistent/key.pem"])
    assert r.exit_code == 2 and "no signing key" in r.output
