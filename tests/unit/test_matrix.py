"""Compliance matrix: stored runs (real Store, real signing key) -> JSON, table, CSV, Markdown, HTML."""

import csv
import datetime as dt
import io
import json
import re

import click
import pytest
from click.testing import CliRunner

from kijun import present
from kijun import baseline as baseline_mod
from kijun import matrix, waivers
from kijun.cli import KijunGroup
from kijun.cli_reports import register
from kijun.model import ControlResult, HostResult
from kijun.signing import load_public_keys, public_path
from kijun.store import Store

# --- a realistic small fleet (also used by test_inspect.py and test_html_browser.py) -------------

S000 = "000_5e546960939e18ea.txt"
S001 = "001_cd9f58629d640f31.txt"

BASELINE_YAML = f"""\
kijun: 1
id: fleet-test
version: "2"
title: {{ja: 試験用ベースライン, en: Test baseline}}
controls:
  - id: SSH-001
    title: {{ja: rootでのSSHログイン禁止, en: No root SSH login}}
    rationale: {{ja: 標的型攻撃対策, en: targeted attacks}}
    source:
      - {{file: {S001}, document: 資料2, section: "1.", quote: 標的型攻撃等に備えた対策の早期点検及び重点実施}}
    classes: [I, II, III, IV]
    severity: high
    tags: [targeted-attack]
    items:
      - {{type: sshd_option, key: PermitRootLogin, value: "no"}}
  - id: PKG-001
    title: {{ja: 盗聴ツールの禁止, en: No sniffing tools}}
    rationale: {{ja: 標的型攻撃対策, en: targeted attacks}}
    source:
      - {{file: {S001}, document: 資料2, section: "1.", quote: 標的型攻撃等に備えた対策の早期点検及び重点実施}}
    classes: [I, II, III, IV]
    severity: critical
    tags: [targeted-attack]
    items:
      - {{type: package, state: absent, names: [tcpdump]}}
  - id: SYS-001
    title: {{ja: IP転送の無効化, en: No IP forwarding}}
    rationale: {{ja: 全システムへの対策, en: all systems}}
    source:
      - {{file: {S000}, document: 迅速かつ確実な対策等について, section: "2.(2)", quote: 所要の対策を早急に行うこと}}
    classes: [I, II]
    severity: medium
    tags: []
    items:
      - {{type: sysctl, key: net.ipv4.ip_forward, value: 0}}
  - id: LOG-001
    title: {{ja: ログの保存, en: Keep logs}}
    rationale: {{ja: 情報共有, en: information sharing}}
    source:
      - {{file: {S000}, document: 迅速かつ確実な対策等について, section: "2.(2)", quote: 所要の対策を早急に行うこと}}
      - {{file: {S001}, document: 資料2, section: "3.", quote: 平素からの情報収集の強化と情報共有の徹底}}
    classes: [I, II, III]
    severity: low
    tags: [targeted-attack, logging]
    items:
      - {{type: log_retention, days: 180}}
  - id: UPD-001
    title: {{ja: 更新の適用, en: Updates applied}}
    rationale: {{ja: 対策情報の適用, en: countermeasures applied}}
    source:
      - {{file: {S000}, document: 迅速かつ確実な対策等について, section: "2.(2)", quote: 所要の対策を早急に行うこと}}
    classes: [I, II, III, IV]
    severity: high
    tags: [patch]
    items:
      - {{type: sysctl, key: kernel.kptr_restrict, value: 1}}
"""

# host, organisation, branch, class, groups
FLEET = [
    ("hq-web-01", "ministry-a", "honsho", "I", ["web", "honsho"]),
    ("hq-db-01", "ministry-a", "honsho", "II", ["db", "honsho"]),
    ("hq-file-01", "ministry-a", "honsho", "III", ["file", "honsho"]),
    ("kanto-01", "ministry-a", "kanto-branch", "II", ["web", "kanto_branch"]),
    ("kanto-02", "ministry-a", "kanto-branch", "IV", ["file", "kanto_branch"]),
    ("kansai-01", "agency-b", "kansai", "III", ["web", "kansai"]),
]
UNREACHABLE = {"kanto-02"}

# Latest run: (host, control) -> status (everything else applicable passes).
LATEST = {
    ("hq-web-01", "SSH-001"): "fail",  # its waiver expired
    ("hq-db-01", "PKG-001"): "error",
    ("hq-db-01", "UPD-001"): "fail",  # waived
    ("hq-file-01", "LOG-001"): "fail",
    ("kansai-01", "SSH-001"): "fail",
}
# Older runs had more failures: the trend improves.
OLDER = [
    {**LATEST, ("kanto-01", "SSH-001"): "fail", ("kanto-01", "PKG-001"): "fail", ("hq-web-01", "PKG-001"): "fail",
     ("kansai-01", "UPD-001"): "fail", ("hq-file-01", "UPD-001"): "fail"},
    {**LATEST, ("kanto-01", "SSH-001"): "fail"},
]

WAIVERS_YAML = """\
waivers:
  - control: UPD-001
    hosts: [hq-db-01]
    justification: vendor-certified kernel; update after the March release (compensated by IPS rules)
    approver: 情報システム課長 山田
    expires: "2099-03-31"
    ticket: RISK-42
  - control: SSH-001
    hosts: [hq-web-01]
    justification: legacy batch job logs in as root
    approver: 情報システム課長 山田
    expires: "2020-01-31"
"""


def load_fleet_baseline(tmp_path):
    p = tmp_path / "fleet-baseline.yaml"
    p.write_text(BASELINE_YAML, encoding="utf-8")
    return baseline_mod.load(p)


def host_results(base, statuses, unreachable=UNREACHABLE, stamp="2026-11-22T10:00:00Z"):
    hosts = []
    for name, org, branch, cls, groups in FLEET:
        reachable = name not in unreachable
        results = []
        for c in base.controls:
            if cls not in c.classes:
                results.append(ControlResult(c.id, "not-applicable", "", "", f"not for class {cls}"))
            elif not reachable:
                results.append(ControlResult(c.id, "unreachable", "", "", "ssh: connect timed out"))
            else:
                st = statuses.get((name, c.id), "pass")
                results.append(ControlResult(c.id, st, f"{c.id} observed {st}", "desired", "" if st == "pass" else "drift",
                                             "probe"))
        hosts.append(HostResult(name, cls, org, branch, "web", list(groups), reachable,
                                "" if reachable else "ssh: connect timed out", stamp, stamp,
                                {"hostname": name, "os": {"id": "debian", "version_id": "12"}}, results, 3))
    return hosts


def store_fleet_runs(store, signer, base, tmp_path, today=dt.date(2026, 11, 22)):
    """Three complete check runs (improving), waivers applied as `kijun check --waivers` does; newest last."""
    wpath = tmp_path / "waivers.yaml"
    wpath.write_text(WAIVERS_YAML, encoding="utf-8")
    ws = waivers.load(wpath, base, today=today)
    reports = []
    for i, statuses in enumerate(OLDER + [LATEST]):
        hosts = host_results(base, statuses, stamp=f"2026-11-{20 + i}T10:00:00Z")
        waivers.apply(ws, hosts, today=today)
        run_id = store.begin_run({"kind": "check", "baseline": base, "inventory": {"path": "inv.py", "digest": ""},
                                  "started": f"2026-11-{20 + i}T10:00:00Z"}, signer)
        for h in hosts:
            store.add_host_result(run_id, h, signer)
        reports.append(store.finish_run(run_id, signer))
    return reports


@pytest.fixture
def fleet(tmp_path, signer):
    base = load_fleet_baseline(tmp_path)
    db = tmp_path / "results.db"
    with Store(db) as st:
        reports = store_fleet_runs(st, signer, base, tmp_path)
        history = matrix.history_for(st, reports[-1])
    return {"base": base, "db": db, "reports": reports, "history": history, "tmp": tmp_path}


def cli():
    group = KijunGroup(name="kijun")
    register(group)
    return group


def run_cli(*args):
    return CliRunner().invoke(cli(), [str(a) for a in args], catch_exceptions=False)


# --- the JSON figures ---------------------------------------------------------------------------

def test_matrix_figures(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    assert [c["id"] for c in data["controls"]] == ["SSH-001", "PKG-001", "SYS-001", "LOG-001", "UPD-001"]
    assert [h["host"] for h in data["hosts"]] == ["kansai-01", "hq-db-01", "hq-file-01", "hq-web-01", "kanto-01", "kanto-02"]
    t = data["totals"]
    assert t["cells"] == 30 and t["hosts"] == 6 and t["controls"] == 5
    assert t["by_status"] == {"pass": 18, "waived": 1, "fail": 3, "error": 1, "unreachable": 3, "not-applicable": 4}
    assert (t["pass"], t["applicable"], t["pass_percent"]) == (18, 26, 69.2)
    by_host = {h["host"]: h for h in data["hosts"]}
    assert by_host["hq-db-01"]["cells"] == ["pass", "error", "pass", "pass", "waived"]
    assert by_host["kanto-02"]["cells"] == ["unreachable", "unreachable", "not-applicable", "not-applicable", "unreachable"]
    assert by_host["kanto-02"]["pass_percent"] == 0.0 and not by_host["kanto-02"]["reachable"]
    assert by_host["kanto-01"]["pass_percent"] == 100.0
    ssh = data["controls"][0]
    assert ssh["by_status"]["fail"] == 2 and ssh["title"] == "No root SSH login"
    assert ssh["sources"] == [{"file": S001, "document": "資料2", "section": "1."}]
    assert data["run"]["run_id"] == fleet["reports"][-1]["run_id"] and data["run"]["sequence"] == 3
    assert data["baseline"]["matches_run"] is True
    json.dumps(data)  # JSON-ready


def test_trend_over_stored_runs(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    trend = data["trend"]
    assert [p["run_id"] for p in trend] == [r["run_id"] for r in fleet["reports"]]
    assert [p["pass_percent"] for p in trend] == [round(100 * 13 / 26, 1), round(100 * 17 / 26, 1), 69.2]
    assert trend[0]["pass"] == 13 and trend[0]["applicable"] == 26
    # The trend of an older run stops at that run.
    with Store(fleet["db"]) as st:
        older = matrix.history_for(st, fleet["reports"][1])
    assert [r["run_id"] for r in older] == [r["run_id"] for r in fleet["reports"][:2]]


def test_clause_rollup_per_organisation_and_branch(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"])
    assert data["units"] == [{"organisation": "agency-b", "branch": "kansai"},
                             {"organisation": "ministry-a", "branch": "honsho"},
                             {"organisation": "ministry-a", "branch": "kanto-branch"}]
    clauses = {(c["file"], c["section"]): c for c in data["clauses"]}
    assert set(clauses) == {(S000, "2.(2)"), (S001, "1."), (S001, "3.")}
    assert clauses[(S001, "1.")]["controls"] == ["SSH-001", "PKG-001"]
    assert clauses[(S000, "2.(2)")]["controls"] == ["SYS-001", "LOG-001", "UPD-001"]
    holds = {(c["section"], u["branch"]): u["holds"] for c in data["clauses"] for u in c["units"]}
    assert holds[("3.", "kansai")] == "holds"
    assert holds[("3.", "kanto-branch")] == "holds"  # kanto-02 is class IV: LOG-001 does not apply
    assert holds[("3.", "honsho")] == "gaps"
    assert holds[("2.(2)", "kansai")] == "holds"
    assert holds[("2.(2)", "kanto-branch")] == "gaps"  # unreachable host
    u = next(u for u in clauses[(S001, "1.")]["units"] if u["branch"] == "kanto-branch")
    assert u["hosts"] == 2 and u["by_status"]["pass"] == 2 and u["by_status"]["unreachable"] == 2


def test_holds_only_through_waivers_and_not_applicable(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], filters=matrix.Filters(groups=("db",)))
    assert [h["host"] for h in data["hosts"]] == ["hq-db-01"]
    holds = {c["section"]: c["units"][0]["holds"] for c in data["clauses"]}
    assert holds["2.(2)"] == "holds-waived"
    data = matrix.build(fleet["reports"][-1], fleet["base"], filters=matrix.Filters(classes=("IV",), tags=("logging",)))
    assert [c["id"] for c in data["controls"]] == ["LOG-001"]
    assert {u["holds"] for c in data["clauses"] for u in c["units"]} == {"n/a"}
    assert data["totals"]["pass_percent"] is None


def test_filters(fleet):
    report = fleet["reports"][-1]
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(classes=("I", "II")))
    assert {h["importance_class"] for h in data["hosts"]} == {"I", "II"}
    assert data["hosts_filtered_out"] == 3
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(tags=("targeted-attack",)))
    assert [c["id"] for c in data["controls"]] == ["SSH-001", "PKG-001", "LOG-001"]
    assert data["totals"]["cells"] == 18
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(groups=("kanto-branch",)))  # branch name
    assert [h["host"] for h in data["hosts"]] == ["kanto-01", "kanto-02"]
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(groups=("kanto_branch", "kansai")))  # group names
    assert [h["host"] for h in data["hosts"]] == ["kansai-01", "kanto-01", "kanto-02"]
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(groups=("agency-b",)))  # organisation
    assert [h["host"] for h in data["hosts"]] == ["kansai-01"]
    # The trend uses the same filters.
    data = matrix.build(report, fleet["base"], filters=matrix.Filters(classes=("II",)), history=fleet["history"])
    assert data["trend"][-1]["pass_percent"] == data["totals"]["pass_percent"]


def test_waivers_listed(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"])
    assert [(w["host"], w["control_id"], w["status"]) for w in data["waivers"]["active"]] == [("hq-db-01", "UPD-001", "waived")]
    expired = data["waivers"]["expired"]
    assert [(w["host"], w["control_id"], w["status"], w["expires"]) for w in expired] == [
        ("hq-web-01", "SSH-001", "fail", "2020-01-31")]


def test_without_baseline_and_unknown_controls(fleet):
    data = matrix.build(fleet["reports"][-1], None)
    assert sorted(c["id"] for c in data["controls"]) == sorted(["SSH-001", "PKG-001", "SYS-001", "LOG-001", "UPD-001"])
    assert all(c["title"] == c["id"] and not c["known"] for c in data["controls"])
    assert data["clauses"] == [] and data["baseline"] is None
    assert data["totals"]["pass_percent"] == 69.2


def test_japanese_titles_and_headers(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], lang="ja")
    assert data["controls"][0]["title"] == "rootでのSSHログイン禁止"
    text = present.render("table", "matrix", data, "ja")
    assert "準拠状況マトリクス" in text and "適合率" in text and "到達不能" in text and "根拠条項" in text
    md = present.render("markdown", "matrix", data, "ja")
    assert "| ホスト " in md and "rootでのSSHログイン禁止" in md


# --- formats ---------------------------------------------------------------------------------------

def test_table_format(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    text = present.render("table", "matrix", data, "en")
    assert "69.2%" in text and "hq-web-01" in text and "UNR" in text
    assert "Clauses × organisation/branch" in text and "Expired waivers (1)" in text
    assert "agency-b/kansai" in text


def test_csv_formats(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    rows = list(csv.reader(io.StringIO(present.render("csv", "matrix", data, "en"))))
    assert rows[0][:4] == ["Host", "Class", "Organisation", "Branch"]
    assert rows[0][4:9] == ["SSH-001", "PKG-001", "SYS-001", "LOG-001", "UPD-001"]
    assert len(rows) == 7
    hq_db = next(r for r in rows if r[0] == "hq-db-01")
    assert hq_db[4:10] == ["pass", "error", "pass", "pass", "waived", "60.0"]
    rows = list(csv.reader(io.StringIO(present.render("csv", "matrix", data, "en", view_option="clauses"))))
    assert len(rows) == 1 + 3 * 3
    rows = list(csv.reader(io.StringIO(present.render("csv", "matrix", data, "en", view_option="trend"))))
    assert [r[2] for r in rows[1:]] == ["50.0", "65.4", "69.2"]


def test_markdown_format(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    md = present.render("markdown", "matrix", data, "en")
    assert md.startswith("# Compliance matrix")
    rows = {" ".join(line.split()) for line in md.splitlines()}
    assert "| hq-db-01 | II | ministry-a/honsho | pass | error | pass | pass | waived | 60.0% |" in rows
    assert "## Compliance trend" in md and " 69.2% " in md


def test_json_and_html_carry_the_same_figures(fleet):
    data = matrix.build(fleet["reports"][-1], fleet["base"], history=fleet["history"])
    assert json.loads(present.render("json", "matrix", data, "en")) == data
    page = present.render("html", "matrix", data, "en")
    embedded = re.search(r'<script type="application/json" id="kijun-data">(.*?)</script>', page, re.S).group(1)
    assert json.loads(embedded) == data
    assert page.count('<td class="cell"') == 30
    for s, n in data["totals"]["by_status"].items():
        assert f'data-count-status="{s}">{n}<' in page
    assert "http://" not in page.replace("http://www.w3.org/2000/svg", "") and "https://" not in page
    assert "<link" not in page and "@import" not in page and "url(" not in page


def test_html_escapes_hostile_text(fleet, signer):
    base = fleet["base"]
    hosts = host_results(base, {("hq-web-01", "SSH-001"): "fail"})
    hosts[0].results[0].waiver = {"justification": "</script><script>alert(1)</script>", "approver": "<b>x</b>",
                                  "expires": "2020-01-01", "ticket": None, "expired": True}
    with Store(fleet["db"]) as st:
        run_id = st.begin_run({"kind": "check", "baseline": base}, signer)
        for h in hosts:
            st.add_host_result(run_id, h, signer)
        report = st.finish_run(run_id, signer)
    page = present.render("html", "matrix", matrix.build(report, base), "en")
    assert "<script>alert(1)" not in page and "&lt;b&gt;x&lt;/b&gt;" in page
    assert page.count("</script>") == 2


# --- CLI ---------------------------------------------------------------------------------------

def test_cli_matrix_formats(fleet, tmp_path):
    db, bpath = fleet["db"], fleet["base"].path
    r = run_cli("matrix", "--store", db, "-b", bpath, "--format", "json")
    assert r.exit_code == 0, r.output
    data = json.loads(r.output)
    assert data["totals"]["pass_percent"] == 69.2 and len(data["trend"]) == 3
    r = run_cli("matrix", "--store", db, "-b", bpath, "--run", fleet["reports"][0]["run_id"], "--format", "json")
    assert json.loads(r.output)["totals"]["pass_percent"] == 50.0 and len(json.loads(r.output)["trend"]) == 1
    r = run_cli("matrix", "--store", db, "-b", bpath, "--class", "I,II", "--tag", "targeted-attack", "--format", "csv")
    assert r.exit_code == 0 and len(r.output.strip().splitlines()) == 4
    r = run_cli("matrix", "--store", db, "-b", bpath, "--group", "kansai", "--format", "markdown", "--lang", "ja")
    assert r.exit_code == 0 and "kansai-01" in r.output and "hq-web-01" not in r.output
    r = run_cli("matrix", "--store", db, "-b", bpath)
    assert r.exit_code == 0 and "69.2%" in r.output
    out = tmp_path / "matrix.html"
    r = run_cli("matrix", "--store", db, "-b", bpath, "--format", "html", "-o", out, "--lang", "ja")
    assert r.exit_code == 0 and out.read_text(encoding="utf-8").startswith("<!DOCTYPE html>")
    assert '<html lang="ja">' in out.read_text(encoding="utf-8")


def test_cli_matrix_errors(tmp_path):
    r = CliRunner().invoke(cli(), ["matrix", "--store", str(tmp_path / "empty.db")])
    assert r.exit_code == 2 and "no store at" in r.output and not (tmp_path / "empty.db").exists()
    Store(tmp_path / "empty.db").close()
    r = CliRunner().invoke(cli(), ["matrix", "--store", str(tmp_path / "empty.db")])
    assert r.exit_code == 2 and "no complete check run stored yet" in r.output
    r = CliRunner().invoke(cli(), ["matrix", "--store", str(tmp_path / "empty.db"), "--run", "20260101T000000Z-abcdef"])
    assert r.exit_code == 2 and "unknown run" in r.output
    r = CliRunner().invoke(cli(), ["matrix", "--store", str(tmp_path / "empty.db"), "--class", "V"])
    assert r.exit_code == 2


def test_signed_chain_untouched_by_matrix(fleet, key_path):
    with Store(fleet["db"]) as st:
        before = st.head()
        matrix.build(matrix.pick_report(st), fleet["base"], history=matrix.history_for(st, matrix.pick_report(st)))
        assert st.head() == before
        assert st.verify_chain(load_public_keys([public_path(key_path)])) == []


def test_register_adds_commands():
    group = click.Group()
    register(group)
    assert {"matrix", "inspect", "advisory", "waivers"} <= set(group.commands)
    assert set(group.commands["advisory"].commands) >= {"apply", "status", "validate"}
