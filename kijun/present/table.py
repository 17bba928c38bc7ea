"""The terminal table: a header naming baseline, class and hosts, results wrapped and aligned by
display width, waivers and expired waivers, a summary line. Times in the operator's zone."""

from __future__ import annotations

from typing import Any

from kijun.i18n import t
from kijun.present.base import Output, RunView
from kijun.present.grid import grid, terminal_columns, width


def _fit(parts: list[str], sep: str = " / ") -> list[str]:
    """Header facts on as few lines as fit the terminal."""
    limit, lines = terminal_columns(), []
    for part in parts:
        if lines and width(lines[-1] + sep + part) <= limit:
            lines[-1] += sep + part
        else:
            lines.append(part)
    return lines


class Table(Output):
    name = "table"

    def run(self, report: dict[str, Any]) -> str:
        v = RunView(report, self.lang, self.baseline, self.notes)
        lang = self.lang
        out = _fit([f"{k}: {val}" for k, val in v.header()])
        out += v.warnings()
        own = v.overrides()
        if own:
            out.append(f"{t('overrides', lang)}: " + "; ".join(own))
        if v.is_apply:
            out += ["", grid(v.change_headers(), v.change_rows(), wrap=(1, 3))]
        rows = v.rows()
        if rows or not v.is_apply:
            out += ["", grid(v.result_headers(v.multi), [v.result_cells(r, v.multi) for r in rows], wrap=v.result_wrap(v.multi))]
        active, expired = v.waivers()
        for word, entries in (("waivers_expired", expired), ("waivers_active", active)):
            if entries:
                out += ["", f"{t(word, lang)} ({len(entries)})",
                        grid(v.waiver_headers(), [v.waiver_cells(w) for w in entries], wrap=(6,))]
        out += ["", v.summary()]
        return "\n".join(out) + "\n"

    def matrix(self, data: dict[str, Any]) -> str:
        from kijun.present.matrix_view import render_table

        return render_table(data, self.lang)

    def inspect(self, data: dict[str, Any]) -> str:
        from kijun.present.inspect_view import render_table

        return render_table(data, self.lang)

    def drift(self, drift: Any) -> str:
        from kijun.present.drift_view import render_table

        return render_table(drift, self.lang)
