"""Terminal tables of check results (tabulate), in Japanese or English."""

from __future__ import annotations

from collections import Counter

from tabulate import tabulate

from kijun.i18n import render, t
from kijun.model import Baseline, HostResult
from kijun.termsafe import clean

MAX_CELL = 60


def _cut(text: str) -> str:
    text = clean(text)  # host-supplied: no escape sequences reach the terminal
    return text if len(text) <= MAX_CELL else text[: MAX_CELL - 1] + "…"


def results_table(baseline: Baseline, hosts: list[HostResult], lang: str = "en") -> str:
    controls = {c.id: c for c in baseline.controls}
    multi = len(hosts) > 1
    rows = []
    for h in hosts:
        for r in h.results:
            c = controls[r.control_id]
            detail_obs = r.observed or r.reason
            row = [r.control_id, _cut(c.title[lang]), ",".join(c.classes), t(c.severity, lang), t(r.status, lang),
                   _cut(render(detail_obs, lang)), _cut(render(r.expected, lang))]
            rows.append(([clean(h.host)] if multi else []) + row)
    headers = ([t("host", lang)] if multi else []) + [t(w, lang) for w in ("control", "title", "class", "severity", "status", "observed", "expected")]
    return overrides_line(hosts, lang) + tabulate(rows, headers=headers, tablefmt="simple")


def overrides_line(hosts: list[HostResult], lang: str = "en") -> str:
    """Which numbers are the organisation's own (kijun_vars), above the table; the rest are the baseline's."""
    own = [f"{h.host}: " + ", ".join(f"{k}={v}" for k, v in sorted(h.overrides.items())) for h in hosts if getattr(h, "overrides", None)]
    if not own:
        return ""
    head = t("overrides_head", lang)
    return f"{head}: " + "; ".join(own) + "\n"



def summary_line(hosts: list[HostResult], lang: str = "en") -> str:
    counts = Counter(r.status for h in hosts for r in h.results)
    parts = [f"{t(s, lang)}: {counts[s]}" for s in ("pass", "fail", "error", "unreachable", "waived", "not-applicable") if counts[s]]
    return f"{t('summary', lang)} — " + ", ".join(parts)
