"""kijun.present: one output class per format, fed by a report dict as stored.

Each format is parsed back (JSON, JUnit XML, CSV) or read (table, Markdown, HTML) for the fields a
reader needs: title, severity, the item judged and its parameters, waivers, local times.
"""

from __future__ import annotations

import csv
import io
import json
import xml.etree.ElementTree as ET

import click
import pytest
from click.testing import CliRunner
from wcwidth import wcswidth

from kijun import present
from kijun.model import ControlResult, HostResult, Verdict
from kijun.present import when
from kijun.present.lang import default_lang
from kijun.report import build_report, report_errors

LONG = "PermitRootLogin " + "がとても長い観測値です" * 8 + "x" * 96  # 200 characters, Japanese and ASCII
assert len(LONG) == 200


def results():
    return [
        ControlResult("SYS-001", "fail", "running=1 persisted=unset", "net.ipv4.ip_forward=0",
                      reason="net.ipv4.ip_forward: persisted value unset is not 0", evidence="sysctl -n net.ipv4.ip_forward",
                      items=[Verdict("fail", "running=1", "0", type="sysctl", params={"key": "net.ipv4.ip_forward", "value": 0})],
                      title={"ja": "IP転送の無効化", "en": "No IP forwarding"}, severity="medium"),
        ControlResult("SSH-001", "fail", LONG, "no", title={"ja": "rootでのSSHログイン禁止", "en": "No root SSH login"},
                      severity="high", waiver={"justification": "保守用の踏み台", "approver": "課長 山田",
                                               "expires": "2026-01-31", "ticket": "T-1", "expired": True}),
        ControlResult("UPD-001", "waived", "3 pending", "0 pending", title={"ja": "更新の適用", "en": "Updates applied"},
                      severity="critical", waiver={"justification": "ベンダー検証待ち", "approver": "情報システム課長",
                                                   "expires": "2099-12-31", "ticket": ""}),
        ControlResult("PKG-001", "pass", "none installed", "none", title={"ja": "盗聴ツールの禁止", "en": "No sniffing tools"},
                      severity="high"),
    ]


def host(name, reachable=True):
    return HostResult(host=name, importance_class="II", organisation="省A", branch="本省", role="web", groups=[],
                      reachable=reachable, error="" if reachable else "ssh: no route to host",
                      started="2026-11-22T22:15:00Z", finished="2026-11-22T22:15:01Z", facts={}, results=results())


@pytest.fixture
def report():
    rep = build_report("check", [host("web1"), host("web2")], started="2026-11-22T22:15:00Z",
                       finished="2026-11-22T22:16:00Z", baseline={"id": "nisc-core", "version": "2026.11", "digest": "",
                                                                   "path": "baselines/nisc-core.yaml"},
                       inventory={"path": "inventories/lab.py", "digest": ""}, version="0.1.0")
    assert report_errors(rep) == []  # the new fields are valid against the shipped schema
    return rep


@pytest.fixture
def tokyo(monkeypatch):
    monkeypatch.setenv("TZ", "Asia/Tokyo")
    monkeypatch.setenv("COLUMNS", "120")


def test_registry_has_one_class_per_format():
    assert present.NAMES == ("table", "json", "junit", "csv", "markdown", "html")
    assert present.formats_for("run") == present.NAMES
    assert present.formats_for("drift") == ("table", "json")
    assert {cls.name for cls in present.FORMATS.values()} == set(present.NAMES)


def test_times_local_for_people_iso_with_offset_for_machines(tokyo):
    assert when.human("2026-11-22T22:15:00Z") == "2026-11-23 07:15:00 JST"
    assert when.machine("2026-11-22T22:15:00+00:00") == "2026-11-23T07:15:00+09:00"
    assert when.human("not a time") == "not a time"


def test_json_is_the_report_with_title_severity_and_items(report):
    out = json.loads(present.render("json", "run", report))
    assert out == report  # byte for byte the report: a printed report still verifies
    r = out["hosts"][0]["results"][0]
    assert r["title"] == {"ja": "IP転送の無効化", "en": "No IP forwarding"} and r["severity"] == "medium"
    assert r["items"][0]["type"] == "sysctl" and r["items"][0]["params"] == {"key": "net.ipv4.ip_forward", "value": 0}


def test_junit_parses_and_carries_local_times_and_the_item(report, tokyo):
    root = ET.fromstring(present.render("junit", "run", report, "ja").encode("utf-8"))
    suites = root.findall("testsuite")
    assert [s.get("name") for s in suites] == ["web1", "web2"]
    assert suites[0].get("timestamp") == "2026-11-23T07:15:00+09:00"
    failure = suites[0].find("testcase[@name='SYS-001']/failure")
    assert failure.get("message") == "net.ipv4.ip_forward: persisted value unset is not 0"
    assert "title: IP転送の無効化" in failure.text and "severity: medium" in failure.text
    assert 'item: sysctl {"key": "net.ipv4.ip_forward", "value": 0}' in failure.text
    assert suites[0].find("testcase[@name='UPD-001']/skipped").get("message") == "waived: ベンダー検証待ち"
    assert (root.get("tests"), root.get("failures"), root.get("skipped")) == ("8", "4", "2")


def test_csv_parses_with_codes_titles_items_and_offsets(report, tokyo):
    rows = list(csv.DictReader(io.StringIO(present.render("csv", "run", report, "ja"))))
    assert len(rows) == 8
    sys = rows[0]
    assert (sys["host"], sys["control_id"], sys["status"], sys["severity"]) == ("web1", "SYS-001", "fail", "medium")
    assert sys["title"] == "IP転送の無効化" and sys["run_id"] == report["run_id"]
    assert sys["items"] == 'sysctl {"key": "net.ipv4.ip_forward", "value": 0}'
    assert sys["started"] == "2026-11-23T07:15:00+09:00"
    ssh = rows[1]
    assert ssh["observed"] == LONG and (ssh["waiver_expires"], ssh["waiver_expired"]) == ("2026-01-31", "yes")


def test_csv_cells_do_not_become_formulas(report):
    report["hosts"][0]["results"][0]["observed"] = "=HYPERLINK(\"http://x\")"
    rows = list(csv.DictReader(io.StringIO(present.render("csv", "run", report))))
    assert rows[0]["observed"].startswith("'=")


def test_table_header_names_baseline_class_hosts_and_local_time(report, tokyo):
    text = present.render("table", "run", report, "ja")
    head = text.split("\n+")[0]
    assert "ベースライン: nisc-core 2026.11" in head and "重要性: II" in head and "ホスト: 2 (web1, web2)" in head
    assert "開始: 2026-11-23 07:16:00 JST" not in head and "開始: 2026-11-23 07:15:00 JST" in head


def test_ja_table_rows_have_one_display_width_and_long_findings_wrap(report, tokyo):
    text = present.render("table", "run", report, "ja")
    table = text.split("\n\n")[1]
    lines = table.splitlines()
    assert len({wcswidth(line) for line in lines}) == 1, {wcswidth(line) for line in lines}
    assert max(wcswidth(line) for line in lines) <= 120  # fits the terminal (COLUMNS)
    # The 200-character finding is wrapped onto more lines, not cut: every character is there.
    assert "…" not in text
    observed_col = [line.split("|")[6] for line in lines if line.startswith("| web1 ") or line.startswith("|      ")]
    assert "".join("".join(c.split()) for c in observed_col).count("".join(LONG.split())) == 1


def test_waivers_and_expired_waivers_are_in_the_default_table(report, tokyo):
    text = present.render("table", "run", report, "ja")
    assert "期限切れの例外承認 (2)" in text and "有効な例外承認 (2)" in text
    assert "不適合 (期限切れ例外承認)" in text  # the result row itself says its waiver expired (its date is listed below)
    assert "ベンダー検証待ち" in text and "課長 山田" in text
    en = present.render("table", "run", report, "en")
    assert "Expired waivers (2)" in en and "Active waivers (2)" in en


def test_markdown_and_table_files_carry_no_terminal_escapes(report):
    report["hosts"][0]["results"][0]["observed"] = "\x1b]0;owned\x07\x1b[2Jfine"
    for fmt in ("markdown", "table"):
        out = present.render(fmt, "run", report, "en")
        assert "\x1b" not in out and "\x07" not in out and "fine" in out, fmt


def test_markdown_is_japanese_with_local_times(report, tokyo):
    md = present.render("markdown", "run", report, "ja")
    assert md.startswith("# kijun 点検 — ")
    assert "- 開始: 2026-11-23 07:15:00 JST" in md and "## 判定結果" in md and "## 期限切れの例外承認 (2)" in md
    assert "| web1 | SYS-001 | IP転送の無効化 |" in " ".join(md.split()).replace("| ", "| ").replace("  ", " ")


def test_html_is_japanese_with_jst_and_escapes_host_text(report, tokyo):
    report["hosts"][0]["results"][3]["observed"] = "<script>alert(1)</script>"
    page = present.render("html", "run", report, "ja")
    assert page.startswith("<!DOCTYPE html>") and '<html lang="ja">' in page
    for label in ("ベースライン", "重要性", "判定", "観測値", "期限切れの例外承認", "有効な例外承認", "集計"):
        assert label in page, label
    assert "2026-11-23 07:15:00 JST" in page
    assert "<script>alert(1)" not in page and "&lt;script&gt;alert(1)&lt;/script&gt;" in page
    assert "http://" not in page and "https://" not in page and "<link" not in page


def test_matrix_html_is_japanese_with_local_times(report, tokyo):
    from kijun import matrix

    page = present.render("html", "matrix", matrix.build(report, None, lang="ja", generated="2026-11-22T23:00:00Z"), "ja")
    assert '<html lang="ja">' in page and "準拠状況マトリクス" in page and "適合率" in page
    assert "<dd>2026-11-23 07:16:00 JST</dd>" in page and "<dd>2026-11-23 08:00:00 JST</dd>" in page  # finished, generated
    assert ">2026-11-23</text>" in page  # the trend's date axis is the local date


def dry_run_report():
    entry = {"host": "web1", "importance_class": "I", "reachable": True, "error": "", "started": "2026-11-22T22:15:00Z",
             "finished": "2026-11-22T22:15:00Z", "facts": {}, "results": [],
             "changes": [{"control_id": "SYS-001", "name": "SYS-001: sysctl net.ipv4.ip_forward = 0",
                          "status": "would-change", "detail": "", "reason": ""},
                         {"control_id": "PKG-001", "name": "PKG-001: package tcpdump absent", "status": "unchanged",
                          "detail": "", "reason": ""}]}
    return build_report("dry-run", [entry], version="0.1.0")


@pytest.mark.parametrize("fmt", present.NAMES)
def test_every_format_renders_a_dry_run(fmt):
    out = present.render(fmt, "run", dry_run_report(), "ja")
    assert "SYS-001" in out
    if fmt == "table":
        assert "変更予定" in out and "適用の予行" in out
    if fmt == "junit":
        root = ET.fromstring(out.encode("utf-8"))
        assert root.get("failures") == "1" and root.get("tests") == "2"  # would change: not in the desired state


def test_lang_defaults_from_kijun_lang_then_the_locale():
    assert default_lang({}) == "en"
    assert default_lang({"LANG": "ja_JP.UTF-8"}) == "ja"
    assert default_lang({"LANG": "ja_JP.UTF-8", "LC_ALL": "C"}) == "en"  # LC_ALL wins over LANG
    assert default_lang({"LC_MESSAGES": "ja_JP.eucJP", "LANG": "en_US.UTF-8"}) == "ja"
    assert default_lang({"KIJUN_LANG": "en", "LC_ALL": "ja_JP.UTF-8"}) == "en"
    assert default_lang({"KIJUN_LANG": "ja"}) == "ja"
    assert default_lang({"KIJUN_LANG": "fr", "LANG": "ja_JP.UTF-8"}) == "ja"  # no such language: the locale decides


def test_every_command_takes_its_lang_default_from_one_helper():
    from kijun.cli import main
    from kijun.present.options import lang_option

    def commands(group, path=()):
        for name, cmd in group.commands.items():
            yield path + (name,), cmd
            if isinstance(cmd, click.Group):
                yield from commands(cmd, path + (name,))

    with_lang = {path: cmd for path, cmd in commands(main) if any(p.name == "lang" for p in cmd.params)}
    assert {("check",), ("apply",), ("drift",), ("matrix",), ("inspect",)} <= set(with_lang)
    for path, cmd in with_lang.items():
        [param] = [p for p in cmd.params if p.name == "lang"]
        assert param.default is default_lang, path

    @click.command()
    @lang_option
    def show(lang):
        click.echo(lang)

    runner = CliRunner()
    assert runner.invoke(show, env={"KIJUN_LANG": "", "LC_ALL": "", "LC_MESSAGES": "", "LANG": "ja_JP.UTF-8"}).output == "ja\n"
    assert runner.invoke(show, env={"KIJUN_LANG": "en", "LANG": "ja_JP.UTF-8"}).output == "en\n"
    assert runner.invoke(show, ["--lang", "ja"], env={"KIJUN_LANG": "en"}).output == "ja\n"


@pytest.mark.parametrize("args, message", [
    (["check", "--local", "--format", "xml"], "--format: xml: unknown output format (one of table, json, junit, csv, markdown, html)"),
    (["drift", "--format", "junit"], "--format: junit: drift has no junit output (one of table, json)"),
    (["matrix", "--format", "junit"], "--format: junit: matrix has no junit output (one of table, json, csv, markdown, html)"),
    (["inspect", "--format", "csv"], "--format: csv: inspect has no csv output (one of table, json, markdown)"),
])
def test_unknown_format_or_combination_is_one_line_exit_2(args, message, tmp_path):
    from kijun.cli import main

    r = CliRunner().invoke(main, args + ["--store", str(tmp_path / "runs.db")] if args[0] != "check" else args)
    assert r.exit_code == 2, r.output
    assert r.stderr == f"kijun: error: {message}\n"
    assert not (tmp_path / "runs.db").exists()  # refused before anything ran


def test_check_local_says_which_class_it_judged_by(tmp_path):
    from kijun.cli import main

    r = CliRunner().invoke(main, ["check", "--local", "-b", "tests/data/mini.yaml", "--lang", "en", "-o",
                                  str(tmp_path / "out.txt")], env={"COLUMNS": "200"})
    assert r.exit_code in (0, 1), r.output
    text = (tmp_path / "out.txt").read_text(encoding="utf-8")
    assert "Class: I" in text.splitlines()[0] and "Baseline: mini 1" in text.splitlines()[0]
    assert "judged as importance class I (the default: the strictest; give this machine's class with --class)" in text
