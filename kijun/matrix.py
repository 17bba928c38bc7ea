"""Compliance matrices from stored run reports: hosts x controls, clause x organisation/branch, trend.

build() turns one stored check report (plus the baseline for titles, severities, tags and seed
citations, plus earlier reports for the trend) into one plain dict: the JSON format, which is the
source of truth. Every other format (terminal table, CSV, Markdown, HTML) is rendered from that dict
by kijun.present (matrix_view, html), so the figures cannot disagree.

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

from collections import Counter
from dataclasses import dataclass
from typing import Any

from kijun import i18n
from kijun.model import BAD_STATUSES as BAD
from kijun.model import STATUSES, Baseline

FORMAT_VERSION = 1
# Display order of statuses (worst last is the model's order; reports read better best first).
STATUS_ORDER = ("pass", "waived", "fail", "error", "unreachable", "not-applicable")
SHORT = {"pass": "ok", "waived": "W", "fail": "FAIL", "error": "ERR", "unreachable": "UNR",
         "not-applicable": "-", "missing": "?"}
NONE_LABEL = "—"

def tr(word: str, lang: str) -> str:
    return i18n.t(word, lang)  # the one catalogue (kijun/locale)


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


def status_rank(status: str) -> int:
    return STATUSES.index(status) if status in STATUSES else len(STATUSES)
