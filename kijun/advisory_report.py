"""Advisory roll-outs and ledger status as text: table, Markdown, JSON (kijun.runs.rollout builds them)."""

from __future__ import annotations

import json
from typing import Any


def _words():
    from kijun.matrix import markdown_table, tr

    return markdown_table, tr


def _status_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    _, tr = _words()
    headers = [tr(w, lang) for w in ("host", "organisation", "branch", "class", "state", "confirmed_by", "updated",
                                     "run", "overdue", "detail")]
    rows = []
    for r in data["hosts"]:
        state = tr(r["state"], lang) + ("" if r["in_inventory"] else " *") + (" !" if r["tampered"] else "")
        rows.append([r["host"], r["organisation"], r["branch"], r["importance_class"], state,
                     r["confirmed_by"] or "" if r["confirmed"] else "", r["confirmed_at"] or r["updated"] or "",
                     r["run_id"] or "", tr("overdue", lang) if r["overdue"] else "", _cut(r["detail"])])
    return headers, rows


def _cut(text: str, n: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_header(data: dict[str, Any], lang: str) -> list[str]:
    _, tr = _words()
    adv = data["advisory"]
    s = data["summary"]
    days = data["days_left"]
    when = (f"{days} day(s) left" if days >= 0 else f"{-days} day(s) past") if lang == "en" else (
        f"残り{days}日" if days >= 0 else f"{-days}日超過")
    lines = [f"{adv['id']}: {adv['title'].get(lang, adv['title']['en'])}",
             f"{tr('deadline', lang)}: {adv['deadline']} ({when}); {adv['source'].get('document', '')}",
             f"{tr('hosts', lang)}: {s['hosts']}, {tr('applied-and-verified', lang)}: {s['confirmed']}, "
             f"{tr('pending', lang)}: {s['pending']}, {tr('failed', lang)}: {s['by_state']['failed']}, "
             f"{tr('overdue', lang)}: {s['overdue']}"]
    return lines


def render_status(data: dict[str, Any], fmt: str = "table", lang: str = "en") -> str:
    from tabulate import tabulate

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
        out = head + ["", tabulate(unit_rows, headers=unit_headers), "", tabulate(rows, headers=headers)]
    else:
        raise ValueError(f"unknown format {fmt!r} (table, json or markdown)")
    if any(not r["in_inventory"] for r in data["hosts"]):
        out.append("* " + ("not in the inventory any more" if lang == "en" else "インベントリにないホスト"))
    if data["tampered"]:
        out.append("! " + ("ledger row not signed by a trusted key (edited or forged): not counted as confirmed"
                           if lang == "en" else "台帳の行の署名が検証できない(改ざんまたは偽造): 確認済みとして数えない"))
    for err in data["inventory_errors"]:
        out.append(f"inventory: {err}")
    return "\n".join(out) + "\n"


def render_rollout(result: Any, fmt: str = "table", lang: str = "en") -> str:
    from tabulate import tabulate

    _, tr = _words()
    if fmt == "json":
        return json.dumps({"advisory": result.advisory.id, "run_id": result.run_id,
                           "hosts": [r.to_dict() for r in result.rows], "skipped": result.skipped,
                           "all_confirmed": result.all_confirmed}, ensure_ascii=False, indent=2) + "\n"
    rows = [[r.host, r.organisation, r.branch, tr(r.state, lang), r.confirmed_by or "", _cut(r.detail)] for r in result.rows]
    out = [f"{result.advisory.id}: run {result.run_id or '-'}"]
    if rows:
        out.append(tabulate(rows, headers=[tr(w, lang) for w in ("host", "organisation", "branch", "state",
                                                                 "confirmed_by", "detail")]))
    if result.skipped:
        out.append(f"{tr('applied-and-verified', lang)} ({len(result.skipped)}): {', '.join(result.skipped)}")
    return "\n".join(out) + "\n"
