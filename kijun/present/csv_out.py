"""CSV for spreadsheets and scripts: one row per control result (and per operation of an apply-type
run); column names are stable English keys, statuses their codes, times ISO 8601 with the offset.
A matrix keeps its own tables (--view hosts, clauses, trend)."""

from __future__ import annotations

import csv
import io
import json
from typing import Any

from kijun.present import when
from kijun.present.base import Output
from kijun.present.text import finding, severity_of, title_of

RUN_COLUMNS = ("run_id", "kind", "host", "importance_class", "control_id", "title", "severity", "status",
               "observed", "expected", "reason", "items", "waiver_expires", "waiver_expired", "operation", "change",
               "detail", "started", "finished")


def _items(result: dict[str, Any]) -> str:
    return "; ".join(f"{i.get('type')} {json.dumps(i.get('params') or {}, ensure_ascii=False, sort_keys=True)}"
                     for i in result.get("items") or [] if isinstance(i, dict) and i.get("type"))


def _safe(value: Any) -> str:
    """A cell a spreadsheet will not run as a formula (host text may start with = + - @)."""
    text = "" if value is None else str(value)
    return "'" + text if text[:1] in ("=", "+", "-", "@", "\t", "\r") else text


class Csv(Output):
    name = "csv"
    machine = True
    suffix = ".csv"

    def run(self, report: dict[str, Any]) -> str:
        lang = self.lang
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        w.writerow(RUN_COLUMNS)
        common = {"run_id": report.get("run_id", ""), "kind": report.get("kind", "")}
        for h in report.get("hosts") or []:
            host = {**common, "host": h.get("host", ""), "importance_class": h.get("importance_class", ""),
                    "started": when.machine(h.get("started")), "finished": when.machine(h.get("finished"))}
            for r in h.get("results") or []:
                waiver = r.get("waiver") if isinstance(r.get("waiver"), dict) else {}
                row = {**host, "control_id": r.get("control_id", ""), "title": title_of(r, lang, self.baseline),
                       "severity": severity_of(r, self.baseline), "status": r.get("status", ""),
                       "observed": finding(r, "observed", lang), "expected": finding(r, "expected", lang),
                       "reason": finding(r, "reason", lang), "items": _items(r),
                       "waiver_expires": str(waiver.get("expires", "")) if waiver else "",
                       "waiver_expired": ("yes" if waiver.get("expired") else "no") if waiver else ""}
                w.writerow([_safe(row.get(c, "")) for c in RUN_COLUMNS])
            for c in h.get("changes") or []:
                row = {**host, "control_id": c.get("control_id", ""), "operation": c.get("name", ""),
                       "change": c.get("status", ""), "detail": finding(c, "detail", lang),
                       "reason": c.get("reason") or ""}
                w.writerow([_safe(row.get(col, "")) for col in RUN_COLUMNS])
            if not h.get("reachable", True) and not h.get("results"):
                w.writerow([_safe({**host, "status": "unreachable", "reason": h.get("error", "")}.get(col, ""))
                            for col in RUN_COLUMNS])
        return buf.getvalue()

    def matrix(self, data: dict[str, Any]) -> str:
        from kijun.present.matrix_view import render_csv

        return render_csv(data, self.lang, self.view_option or "hosts")
