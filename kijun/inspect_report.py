"""The early-inspection report (seed 001, 資料2 1.: 標的型攻撃等に備えた対策の早期点検及び重点実施).

"Inspect promptly how important systems stand against targeted attacks, and carry out what is
needed, what can be done first, in order of priority." From a stored check run this takes the
controls tagged `targeted-attack` on the important systems (importance classes I and II by default),
and turns every gap into one prioritised remediation list:

  gap      fail, error, unreachable, or a failure whose waiver has expired (expired-waiver)
  score    class weight (I=4, II=3, III=2, IV=1) x severity weight (critical=4, high=3, medium=2, low=1)
  order    score descending; ties: unreachable first (nothing is known about such a host), then by
           host, then by control id
  groups   the ranked gaps per organisation and branch (ranks stay global)

The run (kijun.runs.inspection) stores it as a signed, chained report of kind "inspect": one host
entry per inspected host with only the inspected controls; each gap result carries "priority":
{rank, score, gap, severity}, and each host "inspected_from": the check run it came from.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from kijun.i18n import message
from kijun.inputs import InputError
from kijun.matrix import NONE_LABEL, STATUS_ORDER, tr
from kijun.model import Baseline

FORMAT_VERSION = 1
CLASS_WEIGHT = {"I": 4, "II": 3, "III": 2, "IV": 1}
SEVERITY_WEIGHT = {"critical": 4, "high": 3, "medium": 2, "low": 1}
DEFAULT_CLASSES = ("I", "II")
DEFAULT_TAGS = ("targeted-attack",)
GAP_KINDS = ("unreachable", "fail", "error", "expired-waiver")

def _tr(word: str, lang: str) -> str:
    return tr(word, lang)


def gap_kind(host: dict[str, Any], result: dict[str, Any]) -> str | None:
    """What kind of gap a result is, or None when it is no gap (pass, waived, not-applicable)."""
    status = result.get("status")
    if status == "unreachable" or (not host.get("reachable", True) and status != "not-applicable"):
        return "unreachable"
    if status in ("fail", "error"):
        waiver = result.get("waiver")
        if isinstance(waiver, dict) and waiver.get("expired"):
            return "expired-waiver"
        return status
    return None


def score(importance_class: str, severity: str) -> int:
    return CLASS_WEIGHT.get(importance_class, 0) * SEVERITY_WEIGHT.get(severity, 0)


def rank_key(g: dict[str, Any]) -> tuple:
    return (-g["score"], 0 if g["gap"] == "unreachable" else 1, g["host"], g["control_id"])


def build(report: dict[str, Any], baseline: Baseline, *, classes: tuple[str, ...] = DEFAULT_CLASSES,
          tags: tuple[str, ...] = DEFAULT_TAGS, lang: str = "en") -> dict[str, Any]:
    """The inspection of one check report as a JSON-ready dict (ranked gaps, per-control status, groups)."""
    wanted_tags = set(tags)
    controls = [c for c in baseline.controls if set(c.tags) & wanted_tags]
    if not controls:
        raise InputError(baseline.path or baseline.id, "controls",
                         f"no control tagged {', '.join(tags)}: nothing to inspect")
    by_id = {c.id: c for c in controls}
    hosts = sorted((h for h in report.get("hosts") or [] if h.get("importance_class") in classes),
                   key=lambda h: (h.get("organisation") or "", h.get("branch") or "", h["host"]))
    gaps: list[dict[str, Any]] = []
    per_control: dict[str, Counter] = {c.id: Counter() for c in controls}
    host_rows = []
    for h in hosts:
        n = 0
        for r in h.get("results") or []:
            c = by_id.get(r["control_id"])
            if c is None:
                continue
            per_control[c.id][r["status"]] += 1
            kind = gap_kind(h, r)
            if kind is None:
                continue
            n += 1
            waiver = r.get("waiver") if isinstance(r.get("waiver"), dict) else None
            gaps.append({
                "host": h["host"], "organisation": h.get("organisation") or "", "branch": h.get("branch") or "",
                "importance_class": h["importance_class"], "control_id": c.id,
                "title": c.title.get(lang) or c.title["en"], "severity": c.severity, "gap": kind, "status": r["status"],
                "score": score(h["importance_class"], c.severity),
                "observed": message(r, "observed"), "expected": message(r, "expected"),
                "reason": message(r, "reason") or (h.get("error") if kind == "unreachable" else "") or "",
                "waiver": waiver,
            })
        host_rows.append({"host": h["host"], "importance_class": h["importance_class"],
                          "organisation": h.get("organisation") or "", "branch": h.get("branch") or "",
                          "reachable": bool(h.get("reachable", True)), "gaps": n})
    gaps.sort(key=rank_key)
    for i, g in enumerate(gaps, 1):
        g["rank"] = i
    units: dict[tuple[str, str], dict[str, Any]] = {}
    for h in host_rows:
        u = units.setdefault((h["organisation"], h["branch"]), {"organisation": h["organisation"], "branch": h["branch"],
                                                               "hosts": 0, "ranks": []})
        u["hosts"] += 1
    for g in gaps:
        units[(g["organisation"], g["branch"])]["ranks"].append(g["rank"])
    sig = report.get("signature") or {}
    return {
        "kijun_inspect": FORMAT_VERSION,
        "lang": lang,
        "source_run": {"run_id": report["run_id"], "started": report.get("started"), "finished": report.get("finished"),
                       "complete": bool(report.get("complete", True)),
                       "sequence": (report.get("chain") or {}).get("sequence"), "signed_by": sig.get("key_id"),
                       "baseline": report.get("baseline"), "inventory": report.get("inventory")},
        "baseline": {"id": baseline.id, "version": baseline.version, "digest": baseline.digest},
        "classes": list(classes),
        "tags": list(tags),
        "weights": {"class": CLASS_WEIGHT, "severity": SEVERITY_WEIGHT},
        "controls": [{"id": c.id, "title": c.title.get(lang) or c.title["en"], "severity": c.severity,
                      "classes": list(c.classes),
                      "by_status": {s: per_control[c.id].get(s, 0) for s in STATUS_ORDER}} for c in controls],
        "hosts": host_rows,
        "totals": {"hosts": len(host_rows), "controls": len(controls), "gaps": len(gaps),
                   "by_gap": {k: sum(g["gap"] == k for g in gaps) for k in GAP_KINDS}},
        "gaps": gaps,
        "units": sorted(units.values(), key=lambda u: (u["organisation"], u["branch"])),
        "inspect_run": None,
    }


__all__ = ["build", "score", "gap_kind", "NONE_LABEL"]
