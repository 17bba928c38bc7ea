"""The compliance matrix as one self-contained HTML page (inline CSS, JS and SVG; no network, no fonts).

The page is rendered server-side from the matrix dict (kijun.matrix.build), so it reads the same with
scripts disabled, in print and in an archive. The same dict is embedded verbatim as
<script type="application/json" id="kijun-data">: the page's small script cross-checks the figures it
shows against it (root attribute data-kijun-consistent="1"/"0") and adds hover and legend filtering.
"""

from __future__ import annotations

import html
import json
from typing import Any

from kijun.matrix import BAD, NONE_LABEL, STATUS_ORDER, fmt_percent, status_label, tr

COLORS = {
    "pass": "#2e7d32", "waived": "#6f5bd6", "fail": "#c62828", "error": "#e46a00",
    "unreachable": "#37474f", "not-applicable": "#e4e7eb", "missing": "#ffffff",
}
SYMBOLS = {"pass": "✓", "waived": "W", "fail": "✗", "error": "!", "unreachable": "?", "not-applicable": "·",
           "missing": " "}
HOLDS_COLORS = {"holds": "#c8e6c9", "holds-waived": "#ddd7fb", "gaps": "#ffcdd2", "n/a": "#eceff1"}

CSS = """
:root{--ink:#1f2933;--muted:#5f6b7a;--line:#d8dde3;--bg:#f6f7f9;--card:#fff;--accent:#0b3d91}
*{box-sizing:border-box}
html{font-family:system-ui,-apple-system,"Segoe UI","Hiragino Sans","Hiragino Kaku Gothic ProN","Noto Sans CJK JP","Noto Sans JP",Meiryo,sans-serif;color:var(--ink);background:var(--bg);font-size:14px}
body{margin:0;padding:24px 32px 48px}
header.top{display:flex;justify-content:space-between;align-items:flex-end;border-bottom:3px solid var(--accent);padding-bottom:12px;margin-bottom:20px;gap:24px;flex-wrap:wrap}
h1{font-size:22px;margin:0 0 4px;color:var(--accent)}
h2{font-size:16px;margin:28px 0 10px;padding-left:8px;border-left:4px solid var(--accent)}
.sub{color:var(--muted);margin:0}
dl.meta{display:grid;grid-template-columns:auto auto;gap:2px 12px;margin:0;font-size:12px;color:var(--muted)}
dl.meta dt{font-weight:600}dl.meta dd{margin:0;font-family:ui-monospace,SFMono-Regular,Menlo,Consolas,monospace}
.notice{background:#fff4e5;border:1px solid #f0b46b;padding:8px 12px;border-radius:6px;margin:8px 0}
.kpis{display:flex;gap:12px;flex-wrap:wrap}
.kpi{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:10px 16px;min-width:110px;border-top:4px solid var(--c,#999)}
.kpi .num{display:block;font-size:26px;font-weight:700;font-variant-numeric:tabular-nums}
.kpi .lbl{color:var(--muted);font-size:12px}
.kpi.main{min-width:170px;--c:var(--accent)}.kpi.main .num{font-size:34px;color:var(--accent)}
.panel{background:var(--card);border:1px solid var(--line);border-radius:8px;padding:12px 16px;overflow-x:auto}
table{border-collapse:collapse}
table.grid th,table.grid td{border:1px solid var(--line);padding:4px 8px;text-align:left;vertical-align:top}
table.grid thead th{background:#eef1f5;font-weight:600}
table.heat{border-collapse:separate;border-spacing:2px}
table.heat th.ctl{writing-mode:vertical-rl;transform:rotate(180deg);font:11px ui-monospace,Menlo,Consolas,monospace;padding:4px 0;white-space:nowrap;vertical-align:bottom;color:var(--muted)}
table.heat th.hn{text-align:left;font-weight:500;white-space:nowrap;padding-right:8px}
table.heat td.pct,table.heat th.pct{font-variant-numeric:tabular-nums;text-align:right;padding-left:8px;white-space:nowrap}
table.heat tr.unit th{text-align:left;background:#eef1f5;padding:4px 8px;font-size:12px;color:var(--accent)}
td.cell{width:22px;height:22px;min-width:22px;text-align:center;font-size:12px;font-weight:700;color:#fff;border-radius:3px;cursor:default}
td.cell[data-status="not-applicable"]{color:#9aa5b1}
td.cell[data-status="missing"]{color:#999;background:repeating-linear-gradient(45deg,#fff,#fff 3px,#eee 3px,#eee 6px)}
.badge{display:inline-block;border-radius:10px;padding:0 7px;font-size:11px;background:#eef1f5;color:var(--muted);margin-left:4px}
.dim td.cell{opacity:.15}.dim td.cell.on{opacity:1}
.hl{outline:2px solid var(--accent)}
.legend{display:flex;gap:10px;flex-wrap:wrap;margin:8px 0 0;font-size:12px}
.legend button{border:1px solid var(--line);background:#fff;border-radius:14px;padding:2px 10px 2px 6px;cursor:pointer;font:inherit;color:var(--ink)}
.legend button[aria-pressed="true"]{border-color:var(--accent);box-shadow:0 0 0 1px var(--accent)}
.sw{display:inline-block;width:12px;height:12px;border-radius:3px;vertical-align:-2px;margin-right:4px}
td.holds{white-space:nowrap;font-variant-numeric:tabular-nums}
svg text{font-family:inherit}
.trend-label{font-size:11px;font-weight:600;fill:var(--accent)}
footer{margin-top:32px;color:var(--muted);font-size:12px;border-top:1px solid var(--line);padding-top:10px}
code{font-family:ui-monospace,Menlo,Consolas,monospace;font-size:12px}
@media print{body{padding:0;background:#fff}.legend button{display:none}.panel{border:none;padding:0}td.cell{-webkit-print-color-adjust:exact;print-color-adjust:exact}}
"""

JS = r"""
(function () {
  "use strict";
  var root = document.documentElement;
  var data = JSON.parse(document.getElementById("kijun-data").textContent);
  // Cross-check the rendered figures against the embedded data (the JSON format of `kijun matrix`).
  var ok = true;
  var cells = document.querySelectorAll("#heatmap td.cell");
  if (cells.length !== data.hosts.length * data.controls.length) ok = false;
  data.statuses.forEach(function (s) {
    var shown = document.querySelector('[data-count-status="' + s + '"]');
    var counted = 0;
    for (var i = 0; i < cells.length; i++) if (cells[i].getAttribute("data-status") === s) counted++;
    if (!shown || Number(shown.textContent) !== data.totals.by_status[s] || counted !== data.totals.by_status[s]) ok = false;
  });
  var labels = document.querySelectorAll("#trend .trend-label");
  if (labels.length !== data.trend.length) ok = false;
  root.setAttribute("data-kijun-consistent", ok ? "1" : "0");
  if (!ok) {
    var warn = document.getElementById("consistency");
    warn.hidden = false;
  }
  // Hover: outline the row's host and the column's control.
  var heat = document.getElementById("heatmap");
  heat.addEventListener("mouseover", function (ev) {
    var td = ev.target.closest && ev.target.closest("td.cell");
    heat.querySelectorAll(".hl").forEach(function (el) { el.classList.remove("hl"); });
    if (!td) return;
    var col = td.getAttribute("data-col");
    var head = heat.querySelector('th.ctl[data-col="' + col + '"]');
    if (head) head.classList.add("hl");
    td.parentNode.querySelector("th.hn").classList.add("hl");
  });
  // Legend: show only the chosen statuses.
  var chosen = {};
  document.querySelectorAll(".legend button").forEach(function (b) {
    b.addEventListener("click", function () {
      var s = b.getAttribute("data-status");
      chosen[s] = !chosen[s];
      b.setAttribute("aria-pressed", chosen[s] ? "true" : "false");
      var any = Object.keys(chosen).some(function (k) { return chosen[k]; });
      heat.classList.toggle("dim", any);
      cells.forEach(function (c) { c.classList.toggle("on", !!chosen[c.getAttribute("data-status")]); });
    });
  });
  root.setAttribute("data-kijun-ready", "1");
})();
"""


def e(value: Any) -> str:
    return html.escape("" if value is None else str(value), quote=True)


def embed_json(data: dict[str, Any]) -> str:
    """JSON safe inside <script>: no '</script>', no HTML comment openers, no U+2028/9 surprises."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return text


def _unit(org: str, branch: str) -> str:
    return " / ".join(p for p in (org, branch) if p) or "—"


def trend_svg(points: list[dict[str, Any]], lang: str, width: int = 760, height: int = 240) -> str:
    """Inline SVG line chart of % pass per run (oldest left). Labels carry class trend-label."""
    left, right, top, bottom = 44, 20, 22, 42
    pw, ph = width - left - right, height - top - bottom
    n = len(points)

    def x(i: int) -> float:
        return left + (pw / 2 if n == 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return top + ph * (1 - v / 100.0)

    out = [f'<svg id="trend" role="img" viewBox="0 0 {width} {height}" width="{width}" height="{height}" '
           f'xmlns="http://www.w3.org/2000/svg" aria-label="{e(tr("trend", lang))}">']
    for v in (0, 25, 50, 75, 100):
        dash = "" if v in (0, 100) else ' stroke-dasharray="3 3"'
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y(v):.1f}" y2="{y(v):.1f}" stroke="#d8dde3" '
                   f'stroke-width="1"{dash}/>')
        out.append(f'<text x="{left - 6}" y="{y(v) + 4:.1f}" font-size="10" text-anchor="end" fill="#5f6b7a">{v}%</text>')
    coords = [(x(i), y(p["pass_percent"])) for i, p in enumerate(points) if p["pass_percent"] is not None]
    if len(coords) > 1:
        path = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        area = f"{coords[0][0]:.1f},{y(0):.1f} {path} {coords[-1][0]:.1f},{y(0):.1f}"
        out.append(f'<polygon points="{area}" fill="#0b3d91" fill-opacity="0.08"/>')
        out.append(f'<polyline points="{path}" fill="none" stroke="#0b3d91" stroke-width="2.5" stroke-linejoin="round"/>')
    step = max(1, (n + 7) // 8)  # at most ~8 date labels on the axis
    for i, p in enumerate(points):
        cx = x(i)
        value = p["pass_percent"]
        label = NONE_LABEL if value is None else f"{value:.1f}%"
        cy = y(value) if value is not None else y(0)
        tip = f"{p['run_id']} {p['started']}: {label} ({p['pass']}/{p['applicable']})"
        if value is not None:
            out.append(f'<circle cx="{cx:.1f}" cy="{cy:.1f}" r="4" fill="#fff" stroke="#0b3d91" stroke-width="2">'
                       f'<title>{e(tip)}</title></circle>')
        show = n <= 12 or i == n - 1 or i % step == 0
        hidden = "" if show else ' visibility="hidden"'
        data_value = "" if value is None else value
        out.append(f'<text class="trend-label" data-run-id="{e(p["run_id"])}" data-value="{data_value}" '
                   f'x="{cx:.1f}" y="{cy - 9:.1f}" text-anchor="middle"{hidden}>{e(label)}</text>')
        if i % step == 0 or i == n - 1:
            out.append(f'<text x="{cx:.1f}" y="{height - bottom + 16}" font-size="10" text-anchor="middle" '
                       f'fill="#5f6b7a">{e((p["started"] or "")[:10])}</text>')
    out.append(f'<text x="{left + pw / 2:.1f}" y="{height - 6}" font-size="10" text-anchor="middle" fill="#5f6b7a">'
               f'{e(tr("run", lang))} ({len(points)})</text>')
    out.append("</svg>")
    return "".join(out)


def _kpis(data: dict[str, Any], lang: str) -> str:
    t = data["totals"]
    out = [f'<div class="kpi main"><span class="num" id="pass-percent" data-value="{"" if t["pass_percent"] is None else t["pass_percent"]}">'
           f'{e(fmt_percent(t["pass_percent"]))}</span><span class="lbl">{e(tr("pass_percent", lang))} '
           f'({t["pass"]}/{t["applicable"]})</span></div>',
           f'<div class="kpi"><span class="num" id="host-count">{t["hosts"]}</span><span class="lbl">{e(tr("hosts", lang))}</span></div>',
           f'<div class="kpi"><span class="num" id="control-count">{t["controls"]}</span><span class="lbl">{e(tr("controls", lang))}</span></div>']
    for s in STATUS_ORDER:
        out.append(f'<div class="kpi" style="--c:{COLORS[s]}"><span class="num" data-count-status="{s}">{t["by_status"].get(s, 0)}</span>'
                   f'<span class="lbl">{e(status_label(s, lang))}</span></div>')
    return '<div class="kpis" id="kpis">' + "".join(out) + "</div>"


def _heatmap(data: dict[str, Any], lang: str) -> str:
    controls = data["controls"]
    head = ['<th></th>']
    for i, c in enumerate(controls):
        head.append(f'<th class="ctl" data-col="{i}" title="{e(c["id"] + " " + c["title"])}">{e(c["id"])}</th>')
    head.append(f'<th class="pct">{e(tr("pass_percent", lang))}</th>')
    rows = []
    unit = None
    for h in data["hosts"]:
        if (h["organisation"], h["branch"]) != unit:
            unit = (h["organisation"], h["branch"])
            rows.append(f'<tr class="unit"><th colspan="{len(controls) + 2}">{e(_unit(*unit))}</th></tr>')
        cells = []
        for i, (c, s) in enumerate(zip(controls, h["cells"])):
            tip = f'{h["host"]} · {c["id"]} {c["title"]}: {status_label(s, lang)}'
            cells.append(f'<td class="cell" data-status="{s}" data-col="{i}" style="background:{COLORS.get(s, "#fff")}" '
                         f'title="{e(tip)}">{SYMBOLS.get(s, "")}</td>')
        err = f' title="{e(h["error"])}"' if h["error"] else ""
        rows.append(f'<tr data-host="{e(h["host"])}"><th class="hn"{err}>{e(h["host"])}<span class="badge">{e(h["importance_class"])}</span>'
                    f'{"" if h["reachable"] else "<span class=badge>" + e(status_label("unreachable", lang)) + "</span>"}</th>'
                    + "".join(cells) + f'<td class="pct">{e(fmt_percent(h["pass_percent"]))}</td></tr>')
    legend = "".join(f'<button type="button" data-status="{s}" aria-pressed="false"><span class="sw" style="background:{COLORS[s]}"></span>'
                     f'{SYMBOLS[s]} {e(status_label(s, lang))}</button>' for s in STATUS_ORDER)
    return (f'<table class="heat" id="heatmap"><thead><tr>{"".join(head)}</tr></thead><tbody>{"".join(rows)}</tbody></table>'
            f'<div class="legend" aria-label="{e(tr("legend", lang))}">{legend}</div>')


def _controls_table(data: dict[str, Any], lang: str) -> str:
    rows = []
    for c in data["controls"]:
        src = "<br>".join(f'{e(s["document"])} {e(s["section"])} <code>{e(s["file"])}</code>' for s in c["sources"])
        rows.append(f'<tr><td><code>{e(c["id"])}</code></td><td>{e(c["title"])}</td>'
                    f'<td>{e(tr(c["severity"], lang) if c["severity"] else "")}</td><td>{e(",".join(c["classes"]))}</td>'
                    f'<td>{src}</td><td class="holds">{e(fmt_percent(c["pass_percent"]))}</td></tr>')
    head = "".join(f"<th>{e(tr(w, lang))}</th>" for w in ("control", "title", "severity", "class", "clause", "pass_percent"))
    return f'<table class="grid" id="controls"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _rollup(data: dict[str, Any], lang: str) -> str:
    if not data["clauses"]:
        return f'<p>{e(tr("none", lang))}</p>'
    head = f'<th>{e(tr("clause", lang))}</th><th>{e(tr("controls", lang))}</th>' + "".join(
        f'<th>{e(_unit(u["organisation"], u["branch"]))}</th>' for u in data["units"])
    rows = []
    for c in data["clauses"]:
        cells = []
        for u in c["units"]:
            b = u["by_status"]
            bad = sum(b.get(s, 0) for s in BAD) + b.get("missing", 0)
            counts = "" if u["holds"] == "n/a" else f' {b["pass"]}/{b["pass"] + b["waived"] + bad}'
            cells.append(f'<td class="holds" data-holds="{u["holds"]}" style="background:{HOLDS_COLORS[u["holds"]]}">'
                         f'{e(tr(u["holds"], lang))}{counts}</td>')
        rows.append(f'<tr><td>{e(c["document"])} {e(c["section"])}<br><code>{e(c["file"])}</code></td>'
                    f'<td><code>{e(", ".join(c["controls"]))}</code></td>{"".join(cells)}</tr>')
    return f'<table class="grid" id="rollup"><thead><tr>{head}</tr></thead><tbody>{"".join(rows)}</tbody></table>'


def _waivers(entries: list[dict[str, Any]], lang: str, table_id: str) -> str:
    if not entries:
        return f'<p id="{table_id}">{e(tr("none", lang))}</p>'
    head = "".join(f"<th>{e(tr(w, lang))}</th>" for w in ("host", "control", "status", "approver", "expires", "ticket", "justification"))
    rows = "".join(f'<tr><td>{e(w["host"])}</td><td><code>{e(w["control_id"])}</code></td><td>{e(status_label(w["status"], lang))}</td>'
                   f'<td>{e(w["approver"])}</td><td>{e(w["expires"])}</td><td>{e(w["ticket"])}</td><td>{e(w["justification"])}</td></tr>'
                   for w in entries)
    return f'<table class="grid" id="{table_id}"><thead><tr>{head}</tr></thead><tbody>{rows}</tbody></table>'


def render_html(data: dict[str, Any], lang: str = "en") -> str:
    run = data["run"]
    base = data["baseline"]
    title = tr("matrix_title", lang)
    meta = [(tr("run", lang), run["run_id"]), (tr("started", lang), run["started"]), (tr("finished", lang), run["finished"])]
    if base:
        meta.append((tr("baseline", lang), f'{base["id"]} {base["version"]}'))
    if run.get("sequence"):
        meta.append((tr("chain", lang), str(run["sequence"])))
    if run.get("signed_by"):
        meta.append((tr("signed_by", lang), run["signed_by"][:23] + "…"))
    if data.get("generated"):
        meta.append((tr("generated", lang), data["generated"]))
    notices = []
    if not run["complete"]:
        notices.append(tr("incomplete", lang))
    if base and not base["matches_run"]:
        notices.append(tr("baseline_mismatch", lang))
    f = data["filters"]
    if any(f.values()):
        notices.append(f"{tr('filters', lang)}: " + "; ".join(f"{k}={','.join(v)}" for k, v in f.items() if v))
    expired = data["waivers"]["expired"]
    parts = [
        "<!DOCTYPE html>",
        f'<html lang="{e(lang)}"><head><meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        # Nothing may load from anywhere: scripts and styles are inline, images are inline SVG.
        "<meta http-equiv=\"Content-Security-Policy\" content=\"default-src 'none'; style-src 'unsafe-inline'; "
        "script-src 'unsafe-inline'; img-src data:\">",
        f"<title>kijun — {e(title)} — {e(run['run_id'])}</title>",
        f"<style>{CSS}</style></head><body>",
        f'<header class="top"><div><h1>{e(title)}</h1><p class="sub">{e(base["title"] if base else "")}</p></div>',
        '<dl class="meta">' + "".join(f"<dt>{e(k)}</dt><dd>{e(v)}</dd>" for k, v in meta) + "</dl></header>",
        '<div class="notice" id="consistency" hidden>figures disagree with the embedded data: do not rely on this page</div>',
        "".join(f'<div class="notice">{e(n)}</div>' for n in notices),
        f'<section><h2>{e(tr("summary", lang))}</h2>{_kpis(data, lang)}</section>',
        f'<section><h2>{e(tr("trend", lang))}</h2><div class="panel">{trend_svg(data["trend"], lang)}</div></section>',
        f'<section><h2>{e(tr("heatmap", lang))}</h2><div class="panel">{_heatmap(data, lang)}</div></section>',
        f'<section><h2>{e(tr("rollup", lang))}</h2><div class="panel">{_rollup(data, lang)}</div></section>',
        f'<section><h2>{e(tr("waivers_expired", lang))} ({len(expired)})</h2><div class="panel">{_waivers(expired, lang, "waivers-expired")}</div></section>',
        f'<section><h2>{e(tr("waivers_active", lang))} ({len(data["waivers"]["active"])})</h2><div class="panel">'
        f'{_waivers(data["waivers"]["active"], lang, "waivers-active")}</div></section>',
        f'<section><h2>{e(tr("controls", lang))}</h2><div class="panel">{_controls_table(data, lang)}</div></section>',
        f'<footer><p>{e(tr("pass_definition", lang))}</p><p>kijun — <code>kijun matrix --run {e(run["run_id"])} --format json</code>; '
        f'<code>kijun verify</code></p></footer>',
        f'<script type="application/json" id="kijun-data">{embed_json(data)}</script>',
        f"<script>{JS}</script>",
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"
