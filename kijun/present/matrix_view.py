"""The compliance matrix (kijun.matrix.build) as terminal table, Markdown and CSV. The HTML page is
kijun.present.html with templates/matrix.html.j2; JSON is the dict itself."""

from __future__ import annotations

import csv
import io
from typing import Any

from kijun.matrix import BAD, SHORT, STATUS_ORDER, fmt_percent, status_label, tr
from kijun.present import when
from kijun.present.grid import grid, md_table


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
    rows = [[p["run_id"], when.human(p["started"]), fmt_percent(p["pass_percent"]), p["pass"], p["applicable"]]
            for p in data["trend"]]
    return headers, rows


def waiver_rows(entries: list[dict[str, Any]], lang: str) -> tuple[list[str], list[list[Any]]]:
    headers = [tr(w, lang) for w in ("host", "control", "status", "approver", "expires", "ticket", "justification")]
    rows = [[w["host"], w["control_id"], status_label(w["status"], lang), w["approver"], w["expires"], w["ticket"],
             w["justification"]] for w in entries]
    return headers, rows


def summary_line(data: dict[str, Any], lang: str) -> str:
    t = data["totals"]
    parts = [f"{status_label(s, lang)}: {t['by_status'].get(s, 0)}" for s in STATUS_ORDER]
    return (f"{tr('hosts', lang)}: {t['hosts']}, {tr('controls', lang)}: {t['controls']}, "
            f"{tr('pass_percent', lang)}: {fmt_percent(t['pass_percent'])} — " + ", ".join(parts))


def _header_lines(data: dict[str, Any], lang: str) -> list[str]:
    run = data["run"]
    base = data["baseline"]
    lines = [f"{tr('matrix_title', lang)} — {tr('run', lang)} {run['run_id']} ({when.human(run['started'])})"]
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
    out += ["", f"## {tr('heatmap', lang)}", grid(*hosts_rows(data, lang))]
    out.append(f"{tr('legend', lang)}: " + ", ".join(f"{SHORT[s]}={status_label(s, lang)}" for s in STATUS_ORDER))
    h, r = clause_rows(data, lang)
    out += ["", f"## {tr('rollup', lang)}", grid(h, r, wrap=(0, 1)) if r else tr("none", lang)]
    h, r = trend_rows(data, lang)
    out += ["", f"## {tr('trend', lang)}", grid(h, r)]
    for key, word in (("expired", "waivers_expired"), ("active", "waivers_active")):
        entries = data["waivers"][key]
        out += ["", f"## {tr(word, lang)} ({len(entries)})"]
        if entries:
            h, r = waiver_rows(entries, lang)
            out.append(grid(h, r, wrap=(6,)))
    return "\n".join(out) + "\n"


def render_markdown(data: dict[str, Any], lang: str = "en") -> str:
    head = _header_lines(data, lang)
    out = [f"# {head[0]}", ""] + [f"- {line}" for line in head[1:]]
    h, r = hosts_rows(data, lang, short=False)
    out += ["", f"## {tr('heatmap', lang)}", "", md_table(h, r)]
    ch = [tr("control", lang), tr("title", lang), tr("severity", lang), tr("clause", lang)]
    cr = [[c["id"], c["title"], tr(c["severity"], lang) if c["severity"] else "",
           "; ".join(f"{s['document']} {s['section']}" for s in c["sources"])] for c in data["controls"]]
    out += ["", md_table(ch, cr)]
    h, r = clause_rows(data, lang)
    out += ["", f"## {tr('rollup', lang)}", "", md_table(h, r) if r else tr("none", lang)]
    h, r = trend_rows(data, lang)
    out += ["", f"## {tr('trend', lang)}", "", md_table(h, r)]
    for key, word in (("expired", "waivers_expired"), ("active", "waivers_active")):
        entries = data["waivers"][key]
        out += ["", f"## {tr(word, lang)} ({len(entries)})", ""]
        if entries:
            out.append(md_table(*waiver_rows(entries, lang)))
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
        rows = [[p["run_id"], when.machine(p["started"]), "" if p["pass_percent"] is None else p["pass_percent"], p["pass"],
                 p["applicable"]] for p in data["trend"]]
    else:
        raise ValueError(f"unknown CSV view {view!r} (hosts, clauses or trend)")
    w.writerow(headers)
    w.writerows(rows)
    return buf.getvalue()
