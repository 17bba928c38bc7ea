"""The clause map (baselines/clauses/nisc.yaml) against the seed texts, the baseline and docs/clauses.md."""

import dataclasses
import json
import os
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from kijun import baseline as baseline_mod
from kijun import clauses, params
from kijun.cli import KijunGroup
from kijun.cli_clauses import register
from kijun.model import ControlResult, HostResult, HostTarget, Source
from kijun.schema import render
from kijun.store import Store

ROOT = Path(__file__).resolve().parents[2]
SEEDS = Path(os.environ.get("KIJUN_SEEDS") or ROOT.parent / "shared" / "seeds")
MAP = ROOT / "baselines/clauses/nisc.yaml"


def seeds_dir() -> Path:
    """CI has ../shared/seeds beside the checkout: there a missing directory fails, elsewhere it skips."""
    if not SEEDS.is_dir():
        if os.environ.get("CI") == "true":
            pytest.fail(f"seed texts not found at {SEEDS} (CI=true: the quote checks must run)")
        pytest.skip("seed texts (../shared/seeds) not beside this checkout")
    return SEEDS


@pytest.fixture(scope="module")
def base():
    return baseline_mod.load(ROOT / "baselines/nisc-core.yaml")


@pytest.fixture(scope="module")
def cmap():
    return clauses.load(MAP)


def test_shipped_clause_schema_is_generated():
    shipped = (ROOT / "kijun/schemas/clauses.schema.json").read_text(encoding="utf-8")
    assert shipped == render(clauses.clauses_schema()), "run `kijun schema --write`"


def test_map_baseline_and_seeds_agree(cmap, base):
    assert clauses.cross_check(cmap, base, seeds_dir()) == []


def test_every_quote_is_byte_exact_in_its_seed(cmap, base):
    seeds = seeds_dir()
    texts = {p.name: p.read_text(encoding="utf-8") for p in seeds.glob("*.txt")}
    assert [c.id for c in cmap.clauses if c.quote not in texts[c.file]] == []
    assert [(c.id, s.quote) for c in base.controls for s in c.sources if s.quote not in texts[s.file]] == []


def test_quote_check_does_not_normalise(cmap, base):
    """The seeds write Ⅰ as the mojibake T and use half-width spaces: a tidied quote must be rejected."""
    seeds = seeds_dir()
    c = cmap.get("002B-15")
    assert c.quote == "重要性T  セキュリティ要求水準1"
    for tidied in ("重要性Ⅰ  セキュリティ要求水準1", "重要性T セキュリティ要求水準1", "重要性Ｔ  セキュリティ要求水準1"):
        bad = dataclasses.replace(cmap, clauses=[dataclasses.replace(c, quote=tidied)])
        assert any("002B-15: quote is not in" in p for p in clauses.check_quotes(bad, base, seeds)), tidied


def test_every_control_cites_a_clause_that_lists_it(cmap, base):
    for c in base.controls:
        cited = [cmap.get(s.clause) for s in c.sources]
        assert all(cited), c.id
        assert any(cl.status in clauses.IMPLEMENTING and c.id in cl.implementing(base) for cl in cited), c.id


def test_every_seed_is_covered_and_003_once(cmap):
    keys = {c.id.split("-")[0] for c in cmap.clauses}
    assert {"000", "001", "002A", "002B", "002C", "002D", "002E", "003", "004"} <= keys
    only = [c for c in cmap.clauses if c.file.startswith("003_")]
    assert len(only) == 1 and only[0].status == "procedural" and "organisational" in only[0].notes


def test_threats_and_history_are_background_never_implemented(cmap, base):
    for cid in ("001-08", "001-09", "001-10", "002C-01", "002C-02", "004-01", "004-13"):
        c = cmap.get(cid)
        assert c.status == "background" and c.implementing(base) == [], cid
    # The "changing threats" slide is in 資料3 of the 2013 meeting, not 資料2.
    assert all(cmap.get(cid).section.startswith("資料3") for cid in ("001-08", "001-09", "001-10"))
    for cid in ("NISC-USB-001", "NISC-SW-001"):
        secs = [s.section for s in base.control(cid).sources if s.file.startswith("001_")]
        assert secs and all(s.startswith("資料3") for s in secs), cid


def _bad(base, cid, **changes):
    c = base.control(cid)
    return dataclasses.replace(base, controls=[dataclasses.replace(c, **changes) if x.id == cid else x for x in base.controls])


def test_cross_check_finds_each_kind_of_disagreement(cmap, base):
    usb = base.control("NISC-USB-001")
    # scope widened without saying so: USB storage is banned on all classes, the clause names class I
    problems = clauses.cross_check(cmap, _bad(base, "NISC-USB-001", scope="seed"))
    assert any("NISC-USB-001: applies to class(es) II,III,IV" in p for p in problems), problems
    # citing only a background clause (the 2013 threat slide) is not an implementation
    only_bg = tuple(s for s in usb.sources if s.clause == "001-09")
    assert any("NISC-USB-001: cites no automated or partial clause" in p
               for p in clauses.cross_check(cmap, _bad(base, "NISC-USB-001", sources=only_bg)))
    # a clause that does not exist, and a procedural one
    ghost = (Source(usb.sources[0].file, "d", "s", "q", "001-99"),) + usb.sources
    assert any("001-99, which the clause map does not have" in p for p in clauses.cross_check(cmap, _bad(base, "NISC-USB-001", sources=ghost)))
    proc = (Source(usb.sources[0].file, "d", "s", "q", "001-03"),) + usb.sources
    assert any("calls procedural" in p for p in clauses.cross_check(cmap, _bad(base, "NISC-USB-001", sources=proc)))
    # a source without a clause id
    nocl = tuple(dataclasses.replace(s, clause="") for s in usb.sources)
    assert any("names no clause" in p for p in clauses.cross_check(cmap, _bad(base, "NISC-USB-001", sources=nocl)))
    # an automated clause naming a control the baseline lacks, and one with no control left
    c17 = cmap.get("002B-17")
    ghost_map = dataclasses.replace(cmap, clauses=[dataclasses.replace(c17, controls=("NISC-NOPE-001",)) if c is c17 else c
                                                   for c in cmap.clauses])
    problems = clauses.cross_check(ghost_map, base)
    assert any("names NISC-NOPE-001" in p for p in problems)
    assert any("NISC-SSH-001: cites 002B-17, which does not list NISC-SSH-001" in p for p in problems)
    # a variable without a declared source
    no_src = dataclasses.replace(base, variable_sources={k: v for k, v in base.variable_sources.items() if k != "log_retention_days"})
    assert any("log_retention_days has no entry in variable_sources" in p for p in clauses.cross_check(cmap, no_src))


def test_schema_rejects_an_implemented_clause_without_controls(tmp_path):
    text = MAP.read_text(encoding="utf-8").replace("    status: partial\n    controls: [NISC-PATCH-001]\n", "    status: partial\n", 1)
    p = tmp_path / "m.yaml"
    p.write_text(text, encoding="utf-8")
    with pytest.raises(baseline_mod.InputError) as e:
        clauses.load(p)
    assert str(e.value).startswith(f"{p}:") and "clauses[" in str(e.value) and "\n" not in str(e.value)


def test_docs_clauses_md_is_generated_from_the_map(cmap, base):
    doc = (ROOT / "docs/clauses.md").read_text(encoding="utf-8")
    assert doc == clauses.render_markdown(cmap, base), "run `python3 -m kijun.cli clauses --format markdown -o docs/clauses.md`"


def test_every_variable_says_where_its_number_comes_from(base, cmap):
    assert set(base.variable_sources) == set(base.variables)
    for name, src in base.variable_sources.items():
        assert src["source"] in ("seed", "kijun-default"), name
        if src["source"] == "seed":
            assert cmap.get(src["clause"]).status in clauses.IMPLEMENTING, name
        else:
            assert src["reference"], name


def test_parameter_origins(base):
    t3 = HostTarget(name="h3", importance_class="III")
    t1 = HostTarget(name="h1", importance_class="I", variables={"password_min_length": 20})
    assert params.origin_of(base, "log_retention_days", "III") == "kijun-default"
    assert params.origin_of(base, "log_retention_days", "I") == "class"
    assert params.origin_of(base, "patch_max_pending_security", "III") == "seed"
    assert params.origin_of(base, "password_min_length", "I", t1.variables) == "organisation"
    (o,) = params.host_overrides(base, t1)
    assert (o["value"], o["baseline_value"]) == (20, 15)
    assert params.host_overrides(base, t3) == []


# --- the commands -----------------------------------------------------------------------------

def cli():
    group = KijunGroup(name="kijun")
    register(group)
    return group


def run_cli(*args):
    return CliRunner().invoke(cli(), [str(a) for a in args], catch_exceptions=False)


def _host(name, cls, statuses, base):
    results = [ControlResult(c.id, statuses.get(c.id, "pass") if cls in c.classes else "not-applicable", "", "", "")
               for c in base.controls]
    stamp = "2026-11-29T10:00:00Z"
    return HostResult(name, cls, "org", "hq", "web", [], True, "", stamp, stamp, {}, results, 1)


def test_clauses_command_adds_the_compliance_of_a_stored_run(tmp_path, signer, base, monkeypatch):
    monkeypatch.chdir(ROOT)
    db = tmp_path / "results.db"
    with Store(db) as st:
        run_id = st.begin_run({"kind": "check", "baseline": base, "inventory": {"path": "inv.py", "digest": ""}}, signer)
        st.add_host_result(run_id, _host("a", "I", {"NISC-SSH-001": "fail"}, base), signer)
        st.add_host_result(run_id, _host("b", "IV", {}, base), signer)
        st.finish_run(run_id, signer)
    res = run_cli("clauses", "--run", "latest", "--store", db, "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    assert data["run_id"] == run_id
    rows = {r["id"]: r for r in data["clauses"]}
    assert rows["002B-17"]["compliance"] == {"pass": 1, "fail": 1, "waived": 0, "not-applicable": 0}
    # 002B-64: NISC-MEDIA-002 (class I only: passes on a, not applicable on b) and NISC-USB-001 (passes on both)
    assert rows["002B-64"]["compliance"] == {"pass": 3, "fail": 0, "waived": 0, "not-applicable": 1}
    assert "compliance" in rows["001-08"] and not any(rows["001-08"]["compliance"].values())  # background counts nothing
    table = run_cli("clauses", "--run", run_id, "--store", db, "--lang", "ja", "--status", "automated")
    assert table.exit_code == 0 and f"実行: {run_id}" in table.output and "1/1/0" in table.output
    assert "組織的対策 0" in table.output.splitlines()[-1]


def test_clauses_check_command_and_bad_map(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    ok = run_cli("clauses", "--check", "--seeds", seeds_dir())
    assert ok.exit_code == 0 and "quotes checked against" in ok.output
    broken = tmp_path / "m.yaml"
    broken.write_text(MAP.read_text(encoding="utf-8").replace("status: background", "status: noise", 1), encoding="utf-8")
    res = CliRunner().invoke(cli(), ["clauses", "--map", str(broken)])
    assert res.exit_code == 2 and str(broken) in res.output and "noise" in res.output and "Traceback" not in res.output


def test_params_command_lists_sources_and_overrides(tmp_path, monkeypatch):
    monkeypatch.chdir(ROOT)
    inv = tmp_path / "inv.py"
    inv.write_text('hosts = [("web1", {"kijun_class": "II", "kijun_vars": {"log_retention_days": 400}})]\n', encoding="utf-8")
    res = run_cli("params", "-i", inv, "--format", "json")
    assert res.exit_code == 0, res.output
    data = json.loads(res.output)
    rows = {r["variable"]: r for r in data["variables"]}
    assert rows["log_retention_days"]["source"] == "kijun-default" and rows["log_retention_days"]["by_class"]["I"] == 1095
    assert data["overrides"] == [{"host": "web1", "class": "II", "variable": "log_retention_days", "value": 400,
                                  "baseline_value": 730, "origin": "organisation"}]
    table = run_cli("params", "--lang", "ja")
    assert table.exit_code == 0 and "基準文書" in table.output and "kijun 既定値" in table.output


def test_register_adds_both_commands():
    group = click.Group()
    register(group)
    assert set(group.commands) == {"clauses", "params"}


def test_report_and_table_show_the_organisations_own_numbers(base):
    from kijun import check, plan, present
    from kijun import report as report_mod

    target = HostTarget(name="web1", importance_class="II", variables={"log_retention_days": 400})
    host = check.unreachable_host(plan.plan_host(base, target), target, "ssh: timed out", check.now())
    plain = check.unreachable_host(plan.plan_host(base, HostTarget(name="db1", importance_class="II")), HostTarget(name="db1", importance_class="II"), "x", check.now())
    rep = report_mod.build_report("check", [host, plain], baseline=base, inventory={"path": "inv.py", "digest": ""})
    assert report_mod.report_errors(rep) == []
    by = {h["host"]: h for h in rep["hosts"]}
    assert by["web1"]["overrides"] == {"log_retention_days": 400} and by["db1"]["overrides"] == {}
    table = present.render("table", "run", rep, "ja")
    line = next(x for x in table.splitlines() if x.startswith("組織による上書き"))
    assert "web1: log_retention_days=400" in line and "db1" not in line
    only_plain = report_mod.build_report("check", [plain], baseline=base)
    assert "organisation overrides" not in present.render("table", "run", only_plain, "en")


def test_japanese_table_columns_line_up_by_display_width(cmap, base):
    """kijun.present.grid pads by display width (wcwidth): every rule and cell border is at the same cell."""
    from wcwidth import wcwidth

    lines = clauses.render_table(clauses.rollup(cmap, base), "ja").splitlines()[:-1]

    def borders(line):
        col, out = 0, []
        for ch in line:
            if ch in "|+":
                out.append(col)
            col += max(wcwidth(ch), 1)
        return out, col

    assert any(wcwidth(ch) == 2 for line in lines for ch in line)  # there is Japanese text to align
    first = borders(lines[0])
    assert len(first[0]) == 6  # five columns
    assert all(borders(line) == first for line in lines), [line for line in lines if borders(line) != first][:2]
