"""One gettext catalogue for labels and findings (issue 16): findings are English strings that keep their
message id and arguments, reports carry both, and `--lang ja` renders them from kijun/locale."""

import io
import json
import re
from pathlib import Path

import pytest
from babel.messages.extract import extract_from_dir
from babel.messages.mofile import read_mo, write_mo
from babel.messages.pofile import read_po

from kijun import baseline, i18n, msg, probe
from kijun.check import evaluate_control, evaluate_item
from kijun.controls import REGISTRY
from kijun.model import ControlResult, HostResult, HostTarget, ProbeOutput
from kijun.msg import Msg, join
from kijun.plan import PlannedItem, plan_host
from kijun.report import build_report, dumps, report_errors

ROOT = Path(__file__).parents[2]
LOCALE = ROOT / "kijun" / "locale"
PO = LOCALE / "ja" / "LC_MESSAGES" / "kijun.po"
MO = LOCALE / "ja" / "LC_MESSAGES" / "kijun.mo"
HOSTOUT = Path(__file__).parent / "fixtures" / "hostout"
KEYWORDS = {"N_": None, "Msg": None}  # as docs/translation.md runs pybabel extract (-k N_ -k Msg)
JAPANESE = re.compile(r"[\u3040-\u30ff\u4e00-\u9fff]")
FIELD = re.compile(r"\{[^{}]*\}")


def po_catalogue():
    with PO.open("rb") as f:
        return read_po(f)


def extracted_ids() -> set[str]:
    found = extract_from_dir(str(ROOT / "kijun"), method_map=[("**.py", "python")], keywords=KEYWORDS,
                             comment_tags=(), options_map={})
    return {m[2] for m in found}


def literal_ids() -> set[str]:
    """Every Msg("...") / N_("...") literal in the code, found with ast (independent of Babel's extractor)."""
    import ast
    ids = set()
    for path in (ROOT / "kijun").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Name) and node.func.id in KEYWORDS
                    and node.args and isinstance(node.args[0], ast.Constant) and isinstance(node.args[0].value, str)):
                ids.add(node.args[0].value)
    return ids


def has_words(template: str) -> bool:
    """A template says something in English: not only fields, punctuation and configuration names that read
    the same in every language ("{a}, {b}", "TMOUT={seconds}", "AllowGroups {groups}", "pam_pwhistory {state}":
    ALLCAPS, CamelCase, snake_case or dotted names, keys of key=value)."""
    text = re.sub(r"[\w.]+(?=\s*[<>]?=)", "", FIELD.sub("", template))  # keys of key=value, minlen>=...
    words = re.findall(r"[A-Za-z][\w.-]*[A-Za-z]", text)
    return any(not (w.isupper() or any(c.isupper() for c in w[1:]) or re.search(r"[_.\d]", w)) for w in words)


# --- the catalogue ---------------------------------------------------------------------------

def test_every_extracted_message_has_a_japanese_translation():
    cat = po_catalogue()
    translated = {m.id: m.string for m in cat if m.id}
    ids = extracted_ids()
    assert len(ids) > 100
    assert sorted(literal_ids() - ids) == []  # pybabel extract (docs/translation.md) finds every message
    assert sorted(i for i in ids if not translated.get(i)) == []
    # and the translation is Japanese wherever the English says something in words
    not_ja = sorted(i for i in ids if has_words(i) and (translated[i] == i or not JAPANESE.search(translated[i])))
    assert not_ja == []


# Translations that read the same as the English: configuration syntax and punctuation only. A new entry
# here needs a reason; an untranslated message copied into msgstr is caught by this list.
SAME_IN_JAPANESE = {"AllowGroups {groups}", "AllowUsers {users}", "TMOUT={seconds}", "UID 0: {names}",
                    "pam_pwhistory {state}", "{key} {op} {value}", "{key} {value}", "{key}: {problems}", "{key}: {state}", "{key}={value}",
                    "{none} ({rejected})", "{observed} ({path})", "{pending} ({names})", "{user} ({ways})"}


def test_only_configuration_syntax_reads_the_same_in_japanese():
    assert sorted(m.id for m in po_catalogue() if m.id and m.string == m.id and m.id not in SAME_IN_JAPANESE) == []


def test_translations_keep_the_fields_of_their_template():
    for m in po_catalogue():
        if m.id and m.string:
            assert sorted(FIELD.findall(m.id)) == sorted(FIELD.findall(m.string)), m.id


def test_compiled_catalogue_is_current_with_the_po():
    buf = io.BytesIO()
    write_mo(buf, po_catalogue())
    with MO.open("rb") as f:
        shipped = read_mo(f)
    fresh = read_mo(io.BytesIO(buf.getvalue()))
    assert {m.id: m.string for m in shipped if m.id} == {m.id: m.string for m in fresh if m.id}


def test_catalogue_is_shipped_as_package_data():
    text = (ROOT / "pyproject.toml").read_text()
    assert "locale/*/LC_MESSAGES/*.mo" in text
    assert "*.po merge=union" in (ROOT / ".gitattributes").read_text()


def test_one_japanese_word_per_concept():
    assert i18n.t("waived", "ja") == "例外承認"
    assert i18n.t("pass", "ja") == "適合" and i18n.t("not-applicable", "ja") == "対象外"
    assert i18n.t("observed", "ja") == "観測値" and i18n.t("expected", "ja") == "期待値"
    assert i18n.t("waived", "en") == "waived" and i18n.t("unknown-word", "ja") == "unknown-word"


# --- Msg -------------------------------------------------------------------------------------

def test_msg_is_the_english_text_and_renders_in_japanese():
    m = Msg("{unit} is {observed}, expected {expected}", unit="auditd",
            observed=Msg("{file_state}, {active_state}", file_state="disabled", active_state="inactive"),
            expected=Msg("{enabled}, {active}", enabled=Msg("enabled"), active=Msg("active")))
    assert m == "auditd is disabled, inactive, expected enabled, active" and isinstance(m, str)
    assert i18n.render(m, "ja") == "auditd は disabled、inactive (期待値: 自動起動有効、稼働中)"
    assert i18n.render(m, "en") == str(m)


def test_host_values_are_never_templates():
    hostile = "x{unit}{0}%s%(a)s{.__class__}}"
    m = Msg("{unit} is {observed}, expected {expected}", unit=hostile, observed="{observed}", expected="%s")
    assert m == f"{hostile} is {{observed}}, expected %s"
    ja = i18n.render(m, "ja")
    assert ja.startswith(hostile + " は {observed}") and "%s" in ja
    assert i18n.render(json.loads(json.dumps(m.encode())), "ja") == ja
    # a list argument is joined with the language's separator, its elements untouched
    keys = Msg("probe output missing for {keys} (run interrupted?)", keys=["a{b}", "%s"])
    assert str(keys) == "probe output missing for a{b}, %s (run interrupted?)"
    assert i18n.render(keys, "ja").startswith("a{b}、%s の")


def test_templates_cannot_reach_into_objects():
    with pytest.raises(KeyError):
        Msg("{unit.__class__}", unit="x")
    # an encoded message from a stored report is formatted only when its id is kijun's own
    assert i18n.render({"id": "{x.__class__.__mro__}", "args": {"x": "a"}}, "ja") == ""
    assert i18n.render({"id": "{x:>99999999}", "args": {"x": "a"}}, "en") == ""
    with pytest.raises(msg.DecodeError):
        msg.decode({"join": "; ", "parts": [[[[[[[[[["deep"]]]]]]]]]]})


def test_join_keeps_translatability_and_plain_text():
    assert join("; ", ["a", "", "b"]) == "a; b" and not isinstance(join("; ", ["a", "b"]), Msg)
    one = Msg("unset")
    assert join("; ", ["", one]) is one
    j = join("; ", [Msg("unset"), "host text"])
    assert j == "unset; host text" and i18n.render(j, "ja") == "未設定; host text"


def test_msg_survives_copy_and_pickle():
    import copy
    import pickle
    m = join("; ", [Msg("{path} missing", path="/etc/x"), Msg("unset")])
    for other in (copy.deepcopy(m), pickle.loads(pickle.dumps(m))):
        assert other == m and type(other) is type(m) and i18n.render(other, "ja") == "/etc/x が存在しない; 未設定"
    new = Msg("a message not in the catalogue yet: {x}", x="1")
    assert pickle.loads(pickle.dumps(new)).args == {"x": "1"}


# --- reports ---------------------------------------------------------------------------------

def host(results):
    return HostResult(host="h1", importance_class="I", organisation="", branch="", role="", groups=[],
                      reachable=True, error="", started="2026-01-01T00:00:00+00:00",
                      finished="2026-01-01T00:00:01+00:00", facts={}, results=results)


def auditd_disabled():
    pc = {p.control.id: p for p in plan_host(baseline.load(ROOT / "baselines" / "nisc-core.yaml"),
                                              HostTarget("h1", importance_class="I"))}["NISC-AUDIT-001"]
    out = {"dpkg.status": ProbeOutput("auditd\tii \t1:3.0.9-1\n", 0), "fact.systemd": ProbeOutput("yes", 0),
           "systemctl.auditd": ProbeOutput((HOSTOUT / "systemctl-show-auditd-disabled.txt").read_text(), 0),
           # a real host: the kernel's audit subsystem answers, and no container signs
           "auditctl.s": ProbeOutput("enabled 1\nfailure 1\npid 0\n", 0), "fact.container": ProbeOutput("", 0)}
    return evaluate_control(pc, out)


def test_report_carries_message_ids_and_renders_japanese_after_a_round_trip():
    r = auditd_disabled()
    assert r.status == "fail" and r.reason == "auditd is disabled, failed, expected enabled, active"
    report = json.loads(dumps(build_report("check", [host([r])], version="0.1.0")))
    assert report_errors(report) == []
    stored = report["hosts"][0]["results"][0]
    assert stored["reason"] == r.reason  # the English text is unchanged
    assert stored["messages"]["reason"]["id"] == "{unit} is {observed}, expected {expected}"
    assert i18n.render_field(stored, "reason", "ja") == "auditd は disabled、failed (期待値: 自動起動有効、稼働中)"
    assert i18n.render_field(stored, "reason", "en") == r.reason
    assert "messages" in stored["items"][1]
    # a message that does not say what the signed English says is not shown: the English is
    stored["messages"]["reason"]["args"]["unit"] = "sshd"
    assert i18n.render_field(stored, "reason", "ja") == r.reason


def test_old_reports_without_messages_stay_valid_and_render():
    report = json.loads(dumps(build_report("check", [host([ControlResult("X-1", "fail", "on", "off", "plain")])],
                                           version="0.1.0")))
    stored = report["hosts"][0]["results"][0]
    assert "messages" not in stored and report_errors(report) == []
    assert i18n.render_field(stored, "reason", "ja") == "plain"
    bad = json.loads(json.dumps(report))
    bad["hosts"][0]["results"][0]["messages"] = {"observed": {"nope": 1}}
    assert report_errors(bad)


def test_check_table_prints_japanese_findings():
    from kijun import present
    r = auditd_disabled()
    report = json.loads(dumps(build_report("check", [host([r])], version="0.1.0")))
    ja = present.render("table", "run", report, "ja")
    assert "自動起動有効、稼働中" in ja and "enabled, active" not in ja
    assert "enabled, active" in present.render("table", "run", report, "en")


def test_check_local_lang_ja_prints_japanese_findings():
    import subprocess
    import sys
    run = [sys.executable, "-m", "kijun.cli", "check", "--local", "-b", "tests/data/mini.yaml", "--class", "I"]
    import os
    wide = dict(os.environ, COLUMNS="600")  # one line per row: cells are wrapped to the terminal width
    ja = subprocess.run(run + ["--lang", "ja"], capture_output=True, text=True, cwd=ROOT, env=wide).stdout
    en = subprocess.run(run + ["--lang", "en"], capture_output=True, text=True, cwd=ROOT, env=wide).stdout
    # the forbidden-package item on this machine (no sniffing tool installed): observed and expected
    assert "none installed" in en and "none of 2 forbidden packages installed" in en
    assert "導入なし" in ja and "禁止パッケージ 2 件のいずれも導入されていない" in ja
    assert "none installed" not in ja and "running and persisted" not in ja


# --- every control type ------------------------------------------------------------------------

def messages_in(value):
    """Every Msg reachable from a finding (arguments included)."""
    if isinstance(value, msg.Joined):
        for p in value.parts:
            yield from messages_in(p)
    elif isinstance(value, Msg):
        yield value
        for a in value.args.values():
            yield from messages_in(a)
    elif isinstance(value, (list, tuple)):
        for v in value:
            yield from messages_in(v)


def canned_outputs(keys):
    """A few probe outputs for the given keys: nothing, failures, garbage, fixtures, container, no systemd."""
    fixtures = [p.read_text(errors="replace") for p in sorted(HOSTOUT.iterdir())]
    variants = [{k: ProbeOutput("", 0) for k in keys}, {k: ProbeOutput("", 1) for k in keys},
                {k: ProbeOutput("x y z\n0\n", 0) for k in keys}, {k: ProbeOutput("no such file", 2) for k in keys}]
    for fx in fixtures:
        variants.append({k: ProbeOutput(fx, 0) for k in keys})
    for v in list(variants[:4]):
        variants.append({**v, "fact.systemd": ProbeOutput("yes", 0), "fact.container": ProbeOutput("", 0)})
        variants.append({**v, "fact.systemd": ProbeOutput("no", 0),
                         "fact.container": ProbeOutput((HOSTOUT / "container-vm-docker.txt").read_text(), 0)})
    return variants


def items_by_type():
    b = baseline.load(ROOT / "baselines" / "nisc-core.yaml")
    items: dict[str, list[PlannedItem]] = {}
    for cls in ("I", "IV"):
        for pc in plan_host(b, HostTarget("h", importance_class=cls)):
            for i in pc.items:
                items.setdefault(i.type, []).append(i)
    items.setdefault("file_content", []).append(
        PlannedItem("file_content", {"path": "/etc/issue.net", "content": "Authorised use only\n"}, "x"))
    return items


@pytest.fixture(scope="module")
def local_out():
    """This machine's own probe output for the whole baseline: real, varied findings."""
    from kijun.check import probes_for
    b = baseline.load(ROOT / "baselines" / "nisc-core.yaml")
    return probe.run_probes(probes_for(plan_host(b, HostTarget("h", importance_class="I"))), probe.local_runner)


ITEMS = items_by_type()


@pytest.mark.parametrize("ctype", sorted(REGISTRY))
def test_every_finding_of_every_control_type_renders_in_japanese(ctype, local_out):
    ja = msg.catalogue("ja")
    seen = 0
    for item in ITEMS.get(ctype, []):
        keys = REGISTRY[ctype].probes(item.params)
        for out in canned_outputs(keys) + [local_out]:
            v = evaluate_item(item, out)
            for field in ("observed", "expected", "reason"):
                text = getattr(v, field)
                if not text:
                    continue
                assert isinstance(text, Msg), f"{ctype} {field} is not a message: {text!r}"
                for m in messages_in(text):
                    if isinstance(m, msg.Joined):
                        continue
                    assert msg.known(m.template), f"{ctype}: no translation for {m.template!r}"
                    if has_words(m.template):
                        assert JAPANESE.search(ja.gettext(m.template)), m.template
                seen += 1
                assert i18n.render(text, "ja") != "" and str(text) == i18n.render(text, "en")
    assert seen, f"no finding of {ctype} was exercised"


def test_drift_between_stored_reports_shows_japanese_observations():
    from kijun import present
    from kijun.drift import compare

    def render_drift(drift, fmt="table", lang="en"):
        return present.render(fmt, "drift", drift, lang)
    ok = ControlResult("X-1", "pass", Msg("{path} missing", path="/etc/x"), "e")
    bad = ControlResult("X-1", "fail", Msg("mode {mode} {owner}:{group}", mode="0777", owner="root", group="root"), "e")
    old, new = (json.loads(dumps(build_report("check", [host([r])], version="0.1.0"))) for r in (ok, bad))
    drift = compare(old, new)
    ja, en = render_drift(drift, lang="ja"), render_drift(drift, lang="en")
    assert "/etc/x が存在しない" in ja and "パーミッション 0777 所有者 root:root" in ja and "例外承認" not in ja
    assert "/etc/x missing" in en and "mode 0777 root:root" in en
    assert json.loads(render_drift(drift, "json"))["new_failures"][0]["new_observed"] == "mode 0777 root:root"
