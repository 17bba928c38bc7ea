"""The early inspection (kijun.inspect_report.build) as terminal table and Markdown; JSON is the dict."""

from __future__ import annotations

from typing import Any

from kijun.i18n import render
from kijun.matrix import STATUS_ORDER, status_label, tr
from kijun.present import when
from kijun.present.grid import grid, md_table


def _tr(word: str, lang: str) -> str:
    return tr(word, lang)


def _unit(org: str, branch: str) -> str:
    return "/".join(p for p in (org, branch) if p) or "(-)"


def _gap_row(g: dict[str, Any], lang: str) -> list[Any]:
    detail = render(g["reason"] if g["gap"] == "unreachable" else (g["observed"] or g["reason"]), lang)
    if g["gap"] == "expired-waiver" and g["waiver"]:
        detail = f"{tr('expires', lang)} {g['waiver'].get('expires')}: {detail}"
    return [g["rank"], g["score"], g["host"], g["importance_class"], g["control_id"], g["title"],
            tr(g["severity"], lang), tr(g["gap"], lang), detail]


def _gap_headers(lang: str) -> list[str]:
    return [tr(w, lang) for w in ("rank", "score", "host", "class", "control", "title", "severity", "gap", "detail")]


def _header(data: dict[str, Any], lang: str) -> list[str]:
    src = data["source_run"]
    lines = [_tr("inspect_title", lang), _tr("inspect_basis", lang),
             f"{_tr('source_run', lang)}: {src['run_id']} ({when.human(src['started'])})",
             f"{_tr('classes_inspected', lang)}: {', '.join(data['classes'])}; {_tr('tags_inspected', lang)}: {', '.join(data['tags'])}",
             f"{tr('hosts', lang)}: {data['totals']['hosts']}, {tr('controls', lang)}: {data['totals']['controls']}, "
             f"{_tr('gaps_total', lang)}: {data['totals']['gaps']} ("
             + ", ".join(f"{tr(k, lang)} {v}" for k, v in data["totals"]["by_gap"].items()) + ")"]
    if not src["complete"]:
        lines.append(tr("incomplete", lang))
    if data.get("inspect_run"):
        lines.append(f"{_tr('inspect_run', lang)}: {data['inspect_run']['run_id']} "
                     f"({tr('chain', lang)} {data['inspect_run']['sequence']})")
    return lines


def _control_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    headers = [tr("control", lang), tr("title", lang), tr("severity", lang)] + [status_label(s, lang) for s in STATUS_ORDER]
    rows = [[c["id"], c["title"], tr(c["severity"], lang), *[c["by_status"][s] for s in STATUS_ORDER]]
            for c in data["controls"]]
    return headers, rows


def render_table(data: dict[str, Any], lang: str = "en") -> str:
    out = _header(data, lang)
    out += ["", f"## {_tr('control_status', lang)}", grid(*_control_rows(data, lang), wrap=(1,))]
    out += ["", f"## {_tr('remediation', lang)}"]
    by_rank = {g["rank"]: g for g in data["gaps"]}
    for u in data["units"]:
        out += ["", f"### {_unit(u['organisation'], u['branch'])} ({tr('hosts', lang)}: {u['hosts']}, "
                    f"{_tr('gaps_total', lang)}: {len(u['ranks'])})"]
        if u["ranks"]:
            out.append(grid(_gap_headers(lang), [_gap_row(by_rank[r], lang) for r in u["ranks"]], wrap=(5, 8)))
        else:
            out.append(_tr("no_gaps", lang))
    return "\n".join(out) + "\n"


def render_markdown(data: dict[str, Any], lang: str = "en") -> str:
    head = _header(data, lang)
    out = [f"# {head[0]}", ""] + [f"- {line}" for line in head[1:]]
    out += ["", f"## {_tr('control_status', lang)}", "", md_table(*_control_rows(data, lang))]
    out += ["", f"## {_tr('remediation', lang)}"]
    by_rank = {g["rank"]: g for g in data["gaps"]}
    for u in data["units"]:
        out += ["", f"### {_unit(u['organisation'], u['branch'])}", ""]
        out.append(md_table(_gap_headers(lang), [_gap_row(by_rank[r], lang) for r in u["ranks"]])
                   if u["ranks"] else _tr("no_gaps", lang))
    return "\n".join(out) + "\n"
