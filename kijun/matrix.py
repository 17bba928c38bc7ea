"""Compliance matrices from stored run reports: hosts x controls, clause x organisation/branch, trend.

build() turns one stored check report (plus the baseline for titles, severities, tags and seed
citations, plus earlier reports for the trend) into one plain dict: the JSON format, which is the
source of truth. Every other format (terminal table, CSV, Markdown, HTML) is rendered from that dict,
so the figures cannot disagree.

Definitions (docs/reports-audit.md):
  pass %     pass / (cells - not-applicable) * 100, one decimal; waived, fail, error and unreachable
             all count against it (a waiver is an accepted risk, not compliance). None when no cell
             applies.
  clause     a seed clause cited by controls: (source file, document, section).
  holds      for a clause in one organisation/branch: every applicable cell of its controls passes;
             "waived" when it holds only thanks to waivers; "gaps" when any cell fails, errs or is
             unreachable; "n/a" when nothing applies there.
"""

from __future__ import annotations

import csv
import io
import json
from collections import Counter
from dataclasses import dataclass
from typing import Any

from tabulate import tabulate

from kijun import i18n
from kijun.model import STATUSES, Baseline

FORMAT_VERSION = 1
BAD = frozenset({"fail", "error", "unreachable"})
# Display order of statuses (worst last is the model's order; reports read better best first).
STATUS_ORDER = ("pass", "waived", "fail", "error", "unreachable", "not-applicable")
SHORT = {"pass": "ok", "waived": "W", "fail": "FAIL", "error": "ERR", "unreachable": "UNR",
         "not-applicable": "-", "missing": "?"}
NONE_LABEL = "—"

# Report words not (yet) in kijun.i18n.WORDS; tr() looks here first, then in kijun.i18n.
WORDS: dict[str, dict[str, str]] = {
    "matrix_title": {"ja": "準拠状況マトリクス", "en": "Compliance matrix"},
    "organisation": {"ja": "組織", "en": "Organisation"},
    "branch": {"ja": "拠点", "en": "Branch"},
    "unit": {"ja": "組織/拠点", "en": "Organisation/branch"},
    "clause": {"ja": "根拠条項", "en": "Clause"},
    "document": {"ja": "文書", "en": "Document"},
    "section": {"ja": "節", "en": "Section"},
    "controls": {"ja": "管理策", "en": "Controls"},
    "hosts": {"ja": "ホスト数", "en": "Hosts"},
    "run": {"ja": "実行", "en": "Run"},
    "started": {"ja": "開始", "en": "Started"},
    "finished": {"ja": "終了", "en": "Finished"},
    "baseline": {"ja": "ベースライン", "en": "Baseline"},
    "pass_percent": {"ja": "適合率", "en": "Pass %"},
    "trend": {"ja": "適合率の推移", "en": "Compliance trend"},
    "heatmap": {"ja": "ホスト×管理策", "en": "Hosts × controls"},
    "rollup": {"ja": "根拠条項×組織/拠点", "en": "Clauses × organisation/branch"},
    "holds": {"ja": "充足", "en": "holds"},
    "holds-waived": {"ja": "例外で充足", "en": "holds (waived)"},
    "gaps": {"ja": "未充足", "en": "gaps"},
    "n/a": {"ja": "対象外", "en": "n/a"},
    "waivers_active": {"ja": "有効な例外承認", "en": "Active waivers"},
    "waivers_expired": {"ja": "期限切れの例外承認", "en": "Expired waivers"},
    "justification": {"ja": "理由", "en": "Justification"},
    "approver": {"ja": "承認者", "en": "Approver"},
    "expires": {"ja": "有効期限", "en": "Expires"},
    "ticket": {"ja": "チケット", "en": "Ticket"},
    "filters": {"ja": "絞り込み", "en": "Filters"},
    "none": {"ja": "なし", "en": "none"},
    "incomplete": {"ja": "未完了の実行(一部のホストのみ)", "en": "incomplete run (some hosts only)"},
    "legend": {"ja": "凡例", "en": "Legend"},
    "generated": {"ja": "作成", "en": "Generated"},
    "signed_by": {"ja": "署名鍵", "en": "Signed by key"},
    "chain": {"ja": "チェーン番号", "en": "Chain sequence"},
    "cells": {"ja": "判定数", "en": "Cells"},
    "applicable": {"ja": "対象", "en": "Applicable"},
    "rank": {"ja": "順位", "en": "Rank"},
    "score": {"ja": "優先度", "en": "Score"},
    "gap": {"ja": "不備", "en": "Gap"},
    "expired-waiver": {"ja": "期限切れ例外", "en": "expired waiver"},
    "missing": {"ja": "結果なし", "en": "missing"},
    "state": {"ja": "状態", "en": "State"},
    "deadline": {"ja": "期限", "en": "Deadline"},
    "overdue": {"ja": "期限超過", "en": "overdue"},
    "confirmed_by": {"ja": "確認者", "en": "Confirmed by"},
    "updated": {"ja": "更新", "en": "Updated"},
    "applied-and-verified": {"ja": "適用・確認済", "en": "applied-and-verified"},
    "pending": {"ja": "未完了", "en": "pending"},
    "failed": {"ja": "失敗", "en": "failed"},
    "yes": {"ja": "はい", "en": "yes"},
    "no": {"ja": "いいえ", "en": "no"},
    "detail": {"ja": "詳細", "en": "Detail"},
    "baseline_mismatch": {"ja": "注意: 読み込んだベースラインは実行時のものと異なります",
                          "en": "note: the baseline loaded differs from the one the run used"},
    "pass_definition": {"ja": "適合率 = 適合 ÷ (全判定 − 対象外)。例外承認・不適合・エラー・到達不能は適合に含めない。",
                        "en": "Pass % = pass ÷ (cells − not-applicable). Waived, fail, error and unreachable count against it."},
}


def tr(word: str, lang: str) -> str:
    entry = WORDS.get(word)
    if entry:
        return entry.get(lang, entry["en"])
    return i18n.t(word, lang)


def status_label(status: str, lang: str) -> str:
    return tr(status, lang)


# --- building ------------------------------------------------------------------------------------

@dataclass(frozen=True)
class Filters:
    classes: tuple[str, ...] = ()  # host importance classes
    tags: tuple[str, ...] = ()  # control tags
    groups: tuple[str, ...] = ()  # host inventory groups, branches or organisations

    def host_ok(self, h: dict[str, Any]) -> bool:
        if self.classes and h.get("importance_class") not in self.classes:
            return False
        if self.groups:
            names = set(h.get("groups") or ()) | {h.get("branch") or "", h.get("organisation") or ""}
            if not names & set(self.groups):
                return False
        return True

    def as_dict(self) -> dict[str, list[str]]:
        return {"classes": list(self.classes), "tags": list(self.tags), "groups": list(self.groups)}


def percent(passed: int, applicable: int) -> float | None:
    return round(100.0 * passed / applicable, 1) if applicable else None


def fmt_percent(value: float | None) -> str:
    return NONE_LABEL if value is None else f"{value:.1f}%"


def _counts(statuses: list[str]) -> dict[str, int]:
    c = Counter(statuses)
    return {s: c.get(s, 0) for s in STATUS_ORDER} | ({"missing": c["missing"]} if c.get("missing") else {})


def _pass_stats(by_status: dict[str, int]) -> tuple[int, int, float | None]:
    total = sum(by_status.values())
    applicable = total - by_status.get("not-applicable", 0)
    return by_status.get("pass", 0), applicable, percent(by_status.get("pass", 0), applicable)


def _control_info(control_id: str, baseline: Baseline | None, lang: str) -> dict[str, Any]:
    try:
        c = baseline.control(control_id) if baseline is not None else None
    except KeyError:
        c = None
    if c is None:
        return {"id": control_id, "title": control_id, "severity": "", "classes": [], "tags": [], "sources": [],
                "known": False}
    return {
        "id": c.id, "title": c.title.get(lang) or c.title.get("en") or c.id, "severity": c.severity,
        "classes": list(c.classes), "tags": list(c.tags),
        "sources": [{"file": s.file, "document": s.document, "section": s.section} for s in c.sources],
        "known": True,
    }


def _control_ids(report: dict[str, Any], baseline: Baseline | None, filters: Filters) -> list[str]:
    seen: list[str] = []
    present = set()
    for h in report.get("hosts") or []:
        for r in h.get("results") or []:
            present.add(r["control_id"])
    if baseline is not None:
        seen = [c.id for c in baseline.controls if c.id in present]
    seen += sorted(present - set(seen))
    if filters.tags:
        wanted = set(filters.tags)
        tags = {c.id: set(c.tags) for c in baseline.controls} if baseline is not None else {}
        seen = [cid for cid in seen if tags.get(cid, set()) & wanted]
    return seen


def _hosts(report: dict[str, Any], filters: Filters) -> list[dict[str, Any]]:
    hosts = [h for h in report.get("hosts") or [] if filters.host_ok(h)]
    return sorted(hosts, key=lambda h: (h.get("organisation") or "", h.get("branch") or "", h["host"]))


def _cells(host: dict[str, Any], control_ids: list[str]) -> list[str]:
    by_id = {r["control_id"]: r["status"] for r in host.get("results") or []}
    return [by_id.get(cid, "missing") for cid in control_ids]


def trend_point(report: dict[str, Any], baseline: Baseline | None, filters: Filters) -> dict[str, Any]:
    """% pass of one report under the same filters as the matrix."""
    control_ids = _control_ids(report, baseline, filters)
    statuses = [s for h in _hosts(report, filters) for s in _cells(h, control_ids)]
    passed, applicable, pct = _pass_stats(_counts(statuses))
    return {"run_id": report["run_id"], "started": report["started"], "sequence": (report.get("chain") or {}).get("sequence"),
            "complete": bool(report.get("complete", True)), "pass": passed, "applicable": applicable,
            "pass_percent": pct}


def _clause_rollup(hosts: list[dict[str, Any]], controls: list[dict[str, Any]], cells: dict[str, list[str]]
                   ) -> tuple[list[dict[str, str]], list[dict[str, Any]]]:
    units = sorted({(h.get("organisation") or "", h.get("branch") or "") for h in hosts})
    clauses: dict[tuple[str, str, str], list[int]] = {}
    for i, c in enumerate(controls):
        for s in c["sources"]:
            clauses.setdefault((s["file"], s["document"], s["section"]), [])
            if i not in clauses[(s["file"], s["document"], s["section"])]:
                clauses[(s["file"], s["document"], s["section"])].append(i)
    out = []
    for (file, document, section), idxs in sorted(clauses.items()):
        row_units = []
        for org, branch in units:
            unit_hosts = [h for h in hosts if (h.get("organisation") or "", h.get("branch") or "") == (org, branch)]
            statuses = [cells[h["host"]][i] for h in unit_hosts for i in idxs]
            by_status = _counts(statuses)
            if any(by_status.get(s, 0) for s in BAD) or by_status.get("missing", 0):
                holds = "gaps"
            elif by_status["waived"]:
                holds = "holds-waived"
            elif by_status["pass"]:
                holds = "holds"
            else:
                holds = "n/a"
            row_units.append({"organisation": org, "branch": branch, "hosts": len(unit_hosts),
                              "by_status": by_status, "holds": holds})
        out.append({"file": file, "document": document, "section": section,
                    "controls": [controls[i]["id"] for i in idxs], "units": row_units})
    return [{"organisation": o, "branch": b} for o, b in units], out


def build(report: dict[str, Any], baseline: Baseline | None = None, *, filters: Filters = Filters(),
          lang: str = "en", history: list[dict[str, Any]] | None = None, generated: str = "") -> dict[str, Any]:
    """The matrix of one report as a JSON-ready dict (see the module docstring for definitions).

    history: reports for the trend, oldest first (the report itself is added if missing).
    """
    control_ids = _control_ids(report, baseline, filters)
    controls = [_control_info(cid, baseline, lang) for cid in control_ids]
    hosts = _hosts(report, filters)
    cells = {h["host"]: _cells(h, control_ids) for h in hosts}
    host_rows = []
    for h in hosts:
        by_status = _counts(cells[h["host"]])
        passed, applicable, pct = _pass_stats(by_status)
        host_rows.append({
            "host": h["host"], "importance_class": h.get("importance_class", ""),
            "organisation": h.get("organisation") or "", "branch": h.get("branch") or "", "role": h.get("role") or "",
            "groups": list(h.get("groups") or []), "reachable": bool(h.get("reachable", True)),
            "error": h.get("error") or "", "cells": cells[h["host"]], "by_status": by_status, "pass_percent": pct,
        })
    for i, c in enumerate(controls):
        c["by_status"] = _counts([cells[h["host"]][i] for h in hosts])
        c["pass_percent"] = _pass_stats(c["by_status"])[2]
    all_cells = [s for h in hosts for s in cells[h["host"]]]
    by_status = _counts(all_cells)
    passed, applicable, pct = _pass_stats(by_status)
    units, clauses = _clause_rollup(hosts, controls, cells)
    history = list(history or [])
    if report["run_id"] not in {r["run_id"] for r in history}:
        history.append(report)
    host_names = {h["host"] for h in hosts}
    active, expired = [], []
    for h in hosts:
        for r in h.get("results") or []:
            w = r.get("waiver")
            if r["control_id"] not in control_ids or not isinstance(w, dict):
                continue
            entry = {"host": h["host"], "control_id": r["control_id"], "status": r["status"],
                     "justification": w.get("justification", ""), "approver": w.get("approver", ""),
                     "expires": w.get("expires", ""), "ticket": w.get("ticket") or ""}
            (expired if w.get("expired") else active).append(entry)
    sig = report.get("signature") or {}
    base_ref = report.get("baseline") or {}
    return {
        "kijun_matrix": FORMAT_VERSION,
        "lang": lang,
        "generated": generated,
        "run": {
            "run_id": report["run_id"], "kind": report.get("kind", "check"), "started": report.get("started"),
            "finished": report.get("finished"), "complete": bool(report.get("complete", True)),
            "sequence": (report.get("chain") or {}).get("sequence"), "signed_by": sig.get("key_id"),
            "baseline": base_ref or None, "inventory": report.get("inventory"),
        },
        "baseline": None if baseline is None else {
            "id": baseline.id, "version": baseline.version, "digest": baseline.digest,
            "title": baseline.title.get(lang, baseline.id),
            "matches_run": not base_ref.get("digest") or base_ref.get("digest") == baseline.digest,
        },
        "filters": filters.as_dict(),
        "statuses": list(STATUS_ORDER),
        "controls": controls,
        "hosts": host_rows,
        "totals": {"hosts": len(hosts), "controls": len(controls), "cells": len(all_cells), "by_status": by_status,
                   "pass": passed, "applicable": applicable, "pass_percent": pct},
        "units": units,
        "clauses": clauses,
        "trend": [trend_point(r, baseline, filters) for r in history],
        "waivers": {"active": sorted(active, key=lambda w: (w["host"], w["control_id"])),
                    "expired": sorted(expired, key=lambda w: (w["host"], w["control_id"]))},
        "hosts_filtered_out": len(report.get("hosts") or []) - len(host_names),
    }


# --- picking runs from the store ---------------------------------------------------------------

def pick_report(store: Any, run_id: str | None = None, kind: str = "check") -> dict[str, Any]:
    """The given run's report, or the latest complete run of kind (kijun.store.Store.pick)."""
    return store.pick(run_id, kind)


def history_for(store: Any, report: dict[str, Any], limit: int = 0) -> list[dict[str, Any]]:
    """Complete check reports up to (and including) report, oldest first; the last `limit` if > 0."""
    upto = (report.get("chain") or {}).get("sequence")
    rows = [r for r in store.runs(kind=report.get("kind", "check"))
            if r["state"] == "finished" and r["complete"] and r["sequence"] is not None
            and (upto is None or r["sequence"] <= upto)]
    if limit > 0:
        rows = rows[-limit:]
    out = [store.get_report(r["run_id"]) for r in rows]
    if report["run_id"] not in {r["run_id"] for r in out}:
        out.append(report)
    return out


# --- rendering -----------------------------------------------------------------------------------

def _unit_label(org: str, branch: str) -> str:
    return "/".join(p for p in (org, branch) if p) or "(-)"


def _clause_label(c: dict[str, Any]) -> str:
    return f"{c['document']} {c['section']}"


def _holds_cell(u: dict[str, Any], lang: str) -> str:
    b = u["by_status"]
    bad = sum(b.get(s, 0) for s in BAD) + b.get("missing", 0)
    return f"{tr(u['holds'], lang)} ({b['pass']}/{b['pass'] + b['waived'] + bad})" if u["holds"] != "n/a" else tr("n/a", lang)


def hosts_rows(data: dict[str, Any], lang: str, short: bool = True) -> tuple[list[str], list[list[Any]]]:
    headers = [tr("host", lang), tr("class", lang), tr("unit", lang)] + [c["id"] for c in data["controls"]] + [tr("pass_percent", lang)]
    rows = []
    for h in data["hosts"]:
        cells = [SHORT.get(s, s) if short else status_label(s, lang) for s in h["cells"]]
        rows.append([h["host"], h["importance_class"], _unit_label(h["organisation"], h["branch"]), *cells,
                     fmt_percent(h["pass_percent"])])
    return headers, rows


def clause_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    headers = [tr("clause", lang), tr("controls", lang)] + [_unit_label(u["organisation"], u["branch"]) for u in data["units"]]
    rows = [[_clause_label(c), ", ".join(c["controls"])] + [_holds_cell(u, lang) for u in c["units"]]
            for c in data["clauses"]]
    return headers, rows


def trend_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    headers = [tr("run", lang), tr("started", lang), tr("pass_percent", lang), tr("pass", lang), tr("applicable", lang)]
    rows = [[p["run_id"], p["started"], fmt_percent(p["pass_percent"]), p["pass"], p["applicable"]] for p in data["trend"]]
    return headers, rows


def waiver_rows(entries: list[dict[str, Any]], lang: str) -> tuple[list[str], list[list[Any]]]:
    headers = [tr(w, lang) for w in ("host", "control", "status", "approver", "expires", "ticket", "justification")]
    rows = [[w["host"], w["control_id"], status_label(w["status"], lang), w["approver"], w["expires"], w["ticket"],
             _cut(w["justification"])] for w in entries]
    return headers, rows


def _cut(text: str, n: int = 60) -> str:
    text = " ".join(str(text).split())
    return text if len(text) <= n else text[: n - 1] + "…"


def summary_line(data: dict[str, Any], lang: str) -> str:
    t = data["totals"]
    parts = [f"{status_label(s, lang)}: {t['by_status'].get(s, 0)}" for s in STATUS_ORDER]
    return (f"{tr('hosts', lang)}: {t['hosts']}, {tr('controls', lang)}: {t['controls']}, "
            f"{tr('pass_percent', lang)}: {fmt_percent(t['pass_percent'])} — " + ", ".join(parts))


def _header_lines(data: dict[str, Any], lang: str) -> list[str]:
    run = data["run"]
    base = data["baseline"]
    lines = [f"{tr('matrix_title', lang)} — {tr('run', lang)} {run['run_id']} ({run['started']})"]
    if base:
        lines.append(f"{tr('baseline', lang)}: {base['id']} {base['version']} — {base['title']}")
        if not base["matches_run"]:
            lines.append(tr("baseline_mismatch", lang))
    if not run["complete"]:
        lines.append(tr("incomplete", lang))
    f = data["filters"]
    if any(f.values()):
        lines.append(f"{tr('filters', lang)}: " + "; ".join(f"{k}={','.join(v)}" for k, v in f.items() if v))
    lines.append(summary_line(data, lang))
    return lines


def render_table(data: dict[str, Any], lang: str = "en") -> str:
    out = _header_lines(data, lang)
    out += ["", f"## {tr('heatmap', lang)}", tabulate(hosts_rows(data, lang)[1], headers=hosts_rows(data, lang)[0])]
    out.append(f"{tr('legend', lang)}: " + ", ".join(f"{SHORT[s]}={status_label(s, lang)}" for s in STATUS_ORDER))
    h, r = clause_rows(data, lang)
    out += ["", f"## {tr('rollup', lang)}", tabulate(r, headers=h) if r else tr("none", lang)]
    h, r = trend_rows(data, lang)
    out += ["", f"## {tr('trend', lang)}", tabulate(r, headers=h)]
    for key, word in (("expired", "waivers_expired"), ("active", "waivers_active")):
        entries = data["waivers"][key]
        out += ["", f"## {tr(word, lang)} ({len(entries)})"]
        if entries:
            h, r = waiver_rows(entries, lang)
            out.append(tabulate(r, headers=h))
    return "\n".join(out) + "\n"


def _md_escape(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def markdown_table(headers: list[str], rows: list[list[Any]]) -> str:
    return tabulate([[_md_escape(c) for c in row] for row in rows], headers=[_md_escape(h) for h in headers],
                    tablefmt="github", disable_numparse=True)


def render_markdown(data: dict[str, Any], lang: str = "en") -> str:
    head = _header_lines(data, lang)
    out = [f"# {head[0]}", ""] + [f"- {line}" for line in head[1:]]
    h, r = hosts_rows(data, lang, short=False)
    out += ["", f"## {tr('heatmap', lang)}", "", markdown_table(h, r)]
    ch = [tr("control", lang), tr("title", lang), tr("severity", lang), tr("clause", lang)]
    cr = [[c["id"], c["title"], tr(c["severity"], lang) if c["severity"] else "",
           "; ".join(f"{s['document']} {s['section']}" for s in c["sources"])] for c in data["controls"]]
    out += ["", markdown_table(ch, cr)]
    h, r = clause_rows(data, lang)
    out += ["", f"## {tr('rollup', lang)}", "", markdown_table(h, r) if r else tr("none", lang)]
    h, r = trend_rows(data, lang)
    out += ["", f"## {tr('trend', lang)}", "", markdown_table(h, r)]
    for key, word in (("expired", "waivers_expired"), ("active", "waivers_active")):
        entries = data["waivers"][key]
        out += ["", f"## {tr(word, lang)} ({len(entries)})", ""]
        if entries:
            out.append(markdown_table(*waiver_rows(entries, lang)))
        else:
            out.append(tr("none", lang))
    out += ["", f"_{tr('pass_definition', lang)}_"]
    return "\n".join(out) + "\n"


def render_csv(data: dict[str, Any], lang: str = "en", view: str = "hosts") -> str:
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if view == "hosts":
        headers, rows = hosts_rows(data, lang, short=False)
        headers = [tr("host", lang), tr("class", lang), tr("organisation", lang), tr("branch", lang)] + headers[3:]
        rows = [[h["host"], h["importance_class"], h["organisation"], h["branch"],
                 *[status_label(s, lang) for s in h["cells"]], "" if h["pass_percent"] is None else h["pass_percent"]]
                for h in data["hosts"]]
    elif view == "clauses":
        headers = [tr("document", lang), tr("section", lang), "file", tr("organisation", lang), tr("branch", lang),
                   tr("state", lang)] + [status_label(s, lang) for s in STATUS_ORDER]
        rows = [[c["document"], c["section"], c["file"], u["organisation"], u["branch"], tr(u["holds"], lang),
                 *[u["by_status"].get(s, 0) for s in STATUS_ORDER]] for c in data["clauses"] for u in c["units"]]
    elif view == "trend":
        headers = ["run_id", tr("started", lang), tr("pass_percent", lang), tr("pass", lang), tr("applicable", lang)]
        rows = [[p["run_id"], p["started"], "" if p["pass_percent"] is None else p["pass_percent"], p["pass"],
                 p["applicable"]] for p in data["trend"]]
    else:
        raise ValueError(f"unknown CSV view {view!r} (hosts, clauses or trend)")
    w.writerow(headers)
    w.writerows(rows)
    return buf.getvalue()


def render_json(data: dict[str, Any]) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2, sort_keys=False) + "\n"


FORMATS = ("table", "csv", "markdown", "json")  # html: kijun.html_report.render_html


def render(data: dict[str, Any], fmt: str = "table", lang: str = "en", view: str = "hosts") -> str:
    if fmt == "table":
        return render_table(data, lang)
    if fmt == "csv":
        return render_csv(data, lang, view)
    if fmt == "markdown":
        return render_markdown(data, lang)
    if fmt == "json":
        return render_json(data)
    # html is kijun.html_report.render_html: it reads this module's words, so this one must not import it
    raise ValueError(f"unknown format {fmt!r} (one of {', '.join(FORMATS)})")


def status_rank(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)
