"""Advisory roll-outs and ledger status as text: table, Markdown, JSON (kijun.runs.rollout builds them)."""

from __future__ import annotations

import json
from typing import Any


def _words():
    from kijun.matrix import tr
    from kijun.present.grid import md_table

    return md_table, tr


def _status_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    _, tr = _words()
    headers = [tr(w, lang) for w in ("host", "organisation", "branch", "class", "state", "confirmed_by", "updated",
                                     "run", "overdue", "detail")]
    rows = []
    for r in data["hosts"]:
        state = tr(r["state"], lang) + ("" if r["in_inventory"] else " *") + (" !" if r["tampered"] else "")
        rows.append([r["host"], r["organisation"], r["branch"], r["importance_class"], state,
                     r["confirmed_by"] or "" if r["confirmed"] else "", r["confirmed_at"] or r["updated"] or "",
                     r["run_id"] or "", tr("overdue", lang) if r["overdue"] else "", r["detail"] or ""])
    return headers, rows


def _status_header(data: dict[str, Any], lang: str) -> list[str]:
    _, tr = _words()
    adv = data["advisory"]
    s = data["summary"]
    days = data["days_left"]
    when = tr("days_left", lang).format(days=days) if days >= 0 else tr("days_past", lang).format(days=-days)
    lines = [f"{adv['id']}: {adv['title'].get(lang, adv['title']['en'])}",
             f"{tr('deadline', lang)}: {adv['deadline']} ({when}); {adv['source'].get('document', '')}",
             f"{tr('hosts', lang)}: {s['hosts']}, {tr('applied-and-verified', lang)}: {s['confirmed']}, "
             f"{tr('pending', lang)}: {s['pending']}, {tr('failed', lang)}: {s['by_state']['failed']}, "
             f"{tr('overdue', lang)}: {s['overdue']}"]
    return lines


def render_status(data: dict[str, Any], fmt: str = "table", lang: str = "en") -> str:
    from kijun.present.grid import grid

    markdown_table, tr = _words()
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    headers, rows = _status_rows(data, lang)
    unit_headers = [tr("organisation", lang), tr("branch", lang), tr("hosts", lang), tr("applied-and-verified", lang),
                    tr("pending", lang)]
    unit_rows = [[u["organisation"], u["branch"], u["hosts"], u["confirmed"], u["outstanding"]] for u in data["units"]]
    head = _status_header(data, lang)
    if fmt == "markdown":
        out = [f"# {head[0]}", ""] + [f"- {x}" for x in head[1:]]
        out += ["", markdown_table(unit_headers, unit_rows), "", markdown_table(headers, rows)]
    elif fmt == "table":
        out = head + ["", grid(unit_headers, unit_rows), "", grid(headers, rows, wrap=(9,))]
    else:
        raise ValueError(f"unknown format {fmt!r} (table, json or markdown)")
    if any(not r["in_inventory"] for r in data["hosts"]):
        out.append("* " + tr("not_in_inventory", lang))
    if data["tampered"]:
        out.append("! " + tr("ledger_tampered", lang))
    for err in data["inventory_errors"]:
        out.append(f"inventory: {err}")
    return "\n".join(out) + "\n"


def render_rollout(result: Any, fmt: str = "table", lang: str = "en") -> str:
    from kijun.present.grid import grid

    _, tr = _words()
    if fmt == "json":
        return json.dumps({"advisory": result.advisory.id, "run_id": result.run_id,
                           "hosts": [r.to_dict() for r in result.rows], "skipped": result.skipped,
                           "all_confirmed": result.all_confirmed}, ensure_ascii=False, indent=2) + "\n"
    rows = [[r.host, r.organisation, r.branch, tr(r.state, lang), r.confirmed_by or "", r.detail or ""] for r in result.rows]
    out = [f"{result.advisory.id}: run {result.run_id or '-'}"]
    if rows:
        out.append(grid([tr(w, lang) for w in ("host", "organisation", "branch", "state", "confirmed_by", "detail")],
                        rows, wrap=(5,)))
    if result.skipped:
        out.append(f"{tr('applied-and-verified', lang)} ({len(result.skipped)}): {', '.join(result.skipped)}")
    return "\n".join(out) + "\n"
