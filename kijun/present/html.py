"""HTML: one self-contained page per report (inline CSS, JS and SVG; no network, no fonts), rendered
by Jinja2 from the templates shipped in kijun/present/templates (autoescaped: host text is data).

The matrix page embeds its data verbatim as <script type="application/json" id="kijun-data">; its
small script cross-checks the figures shown against it (root attribute data-kijun-consistent="1"/"0")
and adds hover and legend filtering. Times are shown in the operator's zone.
"""

from __future__ import annotations

import json
from functools import lru_cache
from importlib import resources
from typing import Any

import jinja2
from markupsafe import Markup

from kijun.i18n import t
from kijun.present import when
from kijun.present.base import Output, RunView

COLORS = {
    "pass": "#2e7d32", "waived": "#6f5bd6", "fail": "#c62828", "error": "#e46a00",
    "unreachable": "#37474f", "not-applicable": "#e4e7eb", "missing": "#ffffff",
}
SYMBOLS = {"pass": "✓", "waived": "W", "fail": "✗", "error": "!", "unreachable": "?", "not-applicable": "·",
           "missing": " "}
HOLDS_COLORS = {"holds": "#c8e6c9", "holds-waived": "#ddd7fb", "gaps": "#ffcdd2", "n/a": "#eceff1"}


def _asset(name: str) -> Markup:
    """A shipped CSS or JS file, inlined as is (it is ours, not data)."""
    return Markup(resources.files("kijun.present").joinpath("templates", name).read_text(encoding="utf-8"))


def embed_json(data: dict[str, Any]) -> Markup:
    """JSON safe inside <script>: no '</script>', no HTML comment openers, no U+2028/9 surprises."""
    text = json.dumps(data, ensure_ascii=False, separators=(",", ":"))
    for a, b in (("<", "\\u003c"), (">", "\\u003e"), ("&", "\\u0026"), ("\u2028", "\\u2028"), ("\u2029", "\\u2029")):
        text = text.replace(a, b)
    return Markup(text)


@lru_cache(maxsize=1)
def environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.PackageLoader("kijun.present", "templates"), autoescape=True,
                             undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True,
                             keep_trailing_newline=True)
    env.globals.update(asset=_asset, local_time=when.human, colors=COLORS, symbols=SYMBOLS, holds_colors=HOLDS_COLORS)
    env.filters["or_blank"] = lambda v: "" if v is None else v
    return env


def render_template(name: str, **context: Any) -> str:
    return environment().get_template(name).render(**context)


# --- the matrix page ---------------------------------------------------------------------------------

def _unit(org: str, branch: str) -> str:
    return " / ".join(p for p in (org, branch) if p) or "—"


def trend_chart(points: list[dict[str, Any]], lang: str, width: int = 760, height: int = 240) -> dict[str, Any]:
    """The geometry of the trend line chart (% pass per run, oldest left); the template draws it."""
    from kijun.matrix import NONE_LABEL

    left, right, top, bottom = 44, 20, 22, 42
    pw, ph = width - left - right, height - top - bottom
    n = len(points)

    def x(i: int) -> float:
        return left + (pw / 2 if n == 1 else pw * i / (n - 1))

    def y(v: float) -> float:
        return top + ph * (1 - v / 100.0)

    grid = [{"v": v, "y": f"{y(v):.1f}", "ty": f"{y(v) + 4:.1f}", "dashed": v not in (0, 100)} for v in (0, 25, 50, 75, 100)]
    coords = [(x(i), y(p["pass_percent"])) for i, p in enumerate(points) if p["pass_percent"] is not None]
    line = area = ""
    if len(coords) > 1:
        line = " ".join(f"{cx:.1f},{cy:.1f}" for cx, cy in coords)
        area = f"{coords[0][0]:.1f},{y(0):.1f} {line} {coords[-1][0]:.1f},{y(0):.1f}"
    step = max(1, (n + 7) // 8)  # at most ~8 date labels on the axis
    marks = []
    for i, p in enumerate(points):
        value = p["pass_percent"]
        label = NONE_LABEL if value is None else f"{value:.1f}%"
        cy = y(value) if value is not None else y(0)
        local = when.human(p["started"])
        marks.append({
            "x": f"{x(i):.1f}", "y": f"{cy:.1f}", "label_y": f"{cy - 9:.1f}", "value": "" if value is None else value,
            "has_value": value is not None, "label": label, "run_id": p["run_id"],
            "tip": f"{p['run_id']} {local}: {label} ({p['pass']}/{p['applicable']})",
            "shown": n <= 12 or i == n - 1 or i % step == 0,
            "date": local[:10] if (i % step == 0 or i == n - 1) else "",
        })
    return {"width": width, "height": height, "left": left, "right": right, "axis_y": height - bottom + 16,
            "caption_x": f"{left + pw / 2:.1f}", "caption_y": height - 6, "grid": grid, "line": line, "area": area,
            "marks": marks, "caption": f"{t('run', lang)} ({len(points)})"}


def matrix_page(data: dict[str, Any], lang: str = "en") -> str:
    from kijun.matrix import BAD, STATUS_ORDER, fmt_percent, tr

    def bad_count(by_status: dict[str, int]) -> int:
        return sum(by_status.get(s, 0) for s in BAD) + by_status.get("missing", 0)

    return render_template("matrix.html.j2", data=data, lang=lang, tr=tr, pct=fmt_percent, statuses=STATUS_ORDER,
                           bad_count=bad_count, unit=_unit, trend=trend_chart(data["trend"], lang), embedded=embed_json(data))


# --- a run report page -----------------------------------------------------------------------------

class Html(Output):
    name = "html"
    suffix = ".html"

    def run(self, report: dict[str, Any]) -> str:
        v = RunView(report, self.lang, self.baseline, self.notes)
        rows = v.rows()
        active, expired = v.waivers()
        return render_template("run.html.j2", t=t, lang=self.lang, report=report, view=v, rows=rows,
                               multi=v.multi, active=active, expired=expired, counts=v.counts(),
                               change_counts=v.change_counts(), statuses=("pass", "waived", "fail", "error",
                                                                          "unreachable", "not-applicable"))

    def matrix(self, data: dict[str, Any]) -> str:
        return matrix_page(data, self.lang)
