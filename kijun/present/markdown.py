"""Markdown (GitHub tables) for tickets and wikis: the same reading as the table, times local."""

from __future__ import annotations

from typing import Any

from kijun.i18n import t
from kijun.present.base import Output, RunView
from kijun.present.grid import md_table
from kijun.present.text import one_line


def _md(value: Any) -> str:
    return one_line(value).replace("|", "\\|")


class Markdown(Output):
    name = "markdown"
    suffix = ".md"

    def run(self, report: dict[str, Any]) -> str:
        v = RunView(report, self.lang, self.baseline, self.notes)
        lang = self.lang
        out = [f"# kijun {t(v.kind, lang)} — {report.get('run_id', '')}", ""]
        out += [f"- {k}: {_md(val)}" for k, val in v.header()] + [f"- {_md(n)}" for n in v.warnings()]
        own = v.overrides()
        if own:
            out.append(f"- {t('overrides', lang)}: {_md('; '.join(own))}")
        if v.is_apply:
            out += ["", f"## {t('change', lang)}", "", md_table(v.change_headers(), v.change_rows())]
        rows = v.rows()
        if rows or not v.is_apply:
            out += ["", f"## {t('results', lang)}", "",
                    md_table(v.result_headers(True), [v.result_cells(r, True) for r in rows])]
        active, expired = v.waivers()
        for word, entries in (("waivers_expired", expired), ("waivers_active", active)):
            out += ["", f"## {t(word, lang)} ({len(entries)})", ""]
            out.append(md_table(v.waiver_headers(), [v.waiver_cells(w) for w in entries]) if entries else t("none", lang))
        out += ["", v.summary()]
        return "\n".join(out) + "\n"

    def matrix(self, data: dict[str, Any]) -> str:
        from kijun.present.matrix_view import render_markdown

        return render_markdown(data, self.lang)

    def inspect(self, data: dict[str, Any]) -> str:
        from kijun.present.inspect_view import render_markdown

        return render_markdown(data, self.lang)
