"""What every output class shares: the Output base (one class per format, one method per view) and
RunView, the reading of a run report (check, apply, dry run, rollback) that the human formats show.

Views: run (a report dict as stored, kijun/schemas/report.schema.json), matrix (kijun.matrix.build),
inspect (kijun.inspect_report.build), drift (kijun.drift.Drift). A format without a view's method
cannot render it: the CLI says so in one line before it runs anything.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from kijun.i18n import t
from kijun.model import STATUSES
from kijun.present import when
from kijun.present.text import finding, one_line, severity_of, title_of

VIEWS = ("run", "matrix", "inspect", "drift")
APPLY_KINDS = ("apply", "dry-run", "rollback")
STATUS_ORDER = ("pass", "waived", "fail", "error", "unreachable", "not-applicable")
CHANGE_ORDER = ("would-change", "changed", "failed", "unchanged")
MAX_NAMED_HOSTS = 5


class Output:
    """One output format. Subclasses set `name` and implement the views they can show."""

    name = ""
    machine = False  # machine formats carry ISO times with offsets and no decoration
    suffix = ".txt"

    def __init__(self, lang: str = "en", *, baseline: Any = None, notes: tuple[str, ...] = (), view_option: str = ""):
        self.lang = lang
        self.baseline = baseline  # kijun.model.Baseline, for reports whose results lack titles
        self.notes = tuple(notes)  # lines the caller wants above the table (e.g. a defaulted class)
        self.view_option = view_option  # csv: which table of a matrix (hosts, clauses, trend)

    @classmethod
    def views(cls) -> tuple[str, ...]:
        return tuple(v for v in VIEWS if callable(getattr(cls, v, None)))

    def render(self, view: str, data: Any) -> str:
        return getattr(self, view)(data)


@dataclass
class Row:
    """One control result of one host, as a reader sees it."""

    host: str
    control_id: str
    title: str
    classes: str
    severity: str
    status: str  # the status as stored
    status_label: str  # translated, with the expired waiver if any
    observed: str
    expected: str
    reason: str
    result: dict[str, Any] = field(repr=False, default_factory=dict)


class RunView:
    """A run report read for people: header facts, result rows, waivers, changes, summary."""

    def __init__(self, report: dict[str, Any], lang: str, baseline: Any = None, notes: tuple[str, ...] = ()):
        self.report, self.lang, self.baseline, self.notes = report, lang, baseline, notes
        self.hosts = [h for h in report.get("hosts") or [] if isinstance(h, dict)]
        self.kind = report.get("kind", "check")

    # --- header -----------------------------------------------------------------------------
    def header(self) -> list[tuple[str, str]]:
        """(label, value) pairs: baseline (id, version), importance class, host(s), run, times."""
        lang = self.lang
        base = self.report.get("baseline") or {}
        out = []
        if base:
            out.append((t("baseline", lang), f"{base.get('id', '')} {base.get('version', '')}".strip()))
        classes = sorted({h.get("importance_class", "") for h in self.hosts} - {""})
        if classes:
            out.append((t("class", lang), ", ".join(classes)))
        names = [one_line(h.get("host", "")) for h in self.hosts]
        shown = ", ".join(names[:MAX_NAMED_HOSTS]) + (", …" if len(names) > MAX_NAMED_HOSTS else "")
        out.append((t("host", lang), shown if len(names) == 1 else f"{len(names)} ({shown})"))
        out.append((t("run", lang), f"{self.report.get('run_id', '')} ({t(self.kind, lang)})"))
        out.append((t("started", lang), when.human(self.report.get("started"))))
        if self.report.get("finished"):
            out.append((t("finished", lang), when.human(self.report.get("finished"))))
        inv = self.report.get("inventory") or {}
        if inv.get("path"):
            out.append((t("inventory", lang), one_line(inv["path"])))
        return out

    def warnings(self) -> list[str]:
        lines = list(self.notes)
        if not self.report.get("complete", True):
            lines.append(t("incomplete", self.lang))
        return lines

    def overrides(self) -> list[str]:
        """Which numbers are the organisation's own (kijun_vars); the rest are the baseline's."""
        return [f"{one_line(h['host'])}: " + ", ".join(f"{k}={one_line(v)}" for k, v in sorted(h["overrides"].items()))
                for h in self.hosts if h.get("overrides")]

    # --- results ------------------------------------------------------------------------------
    def _classes(self, control_id: str) -> str:
        if self.baseline is None:
            return ""
        try:
            return ",".join(self.baseline.control(control_id).classes)
        except KeyError:
            return ""

    def status_label(self, r: dict[str, Any]) -> str:
        label = t(r.get("status", ""), self.lang)
        w = r.get("waiver")
        if isinstance(w, dict) and w.get("expired"):  # its date is in the waiver list below
            label += f" ({t('expired-waiver', self.lang)})"
        return label

    def rows(self) -> list[Row]:
        lang = self.lang
        out = []
        for h in self.hosts:
            for r in h.get("results") or []:
                out.append(Row(
                    host=one_line(h.get("host", "")), control_id=r.get("control_id", ""),
                    title=title_of(r, lang, self.baseline), classes=self._classes(r.get("control_id", "")),
                    severity=severity_of(r, self.baseline), status=r.get("status", ""), status_label=self.status_label(r),
                    observed=finding(r, "observed", lang), expected=finding(r, "expected", lang),
                    reason=finding(r, "reason", lang), result=r))
        return out

    def waivers(self) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
        """(active, expired) waivers: host, control, status, approver, expires, ticket, justification."""
        active, expired = [], []
        for h in self.hosts:
            for r in h.get("results") or []:
                w = r.get("waiver")
                if not isinstance(w, dict):
                    continue
                entry = {"host": h.get("host", ""), "control_id": r.get("control_id", ""), "status": r.get("status", ""),
                         "approver": w.get("approver", ""), "expires": str(w.get("expires", "")),
                         "ticket": w.get("ticket") or "", "justification": w.get("justification") or w.get("reason") or ""}
                (expired if w.get("expired") else active).append(entry)
        return active, expired

    def waiver_headers(self) -> list[str]:
        return [t(w, self.lang) for w in ("host", "control", "status", "approver", "expires", "ticket", "justification")]

    def waiver_cells(self, w: dict[str, Any]) -> list[str]:
        return [w["host"], w["control_id"], t(w["status"], self.lang), w["approver"], w["expires"], w["ticket"],
                w["justification"]]

    # --- apply, dry run, rollback ---------------------------------------------------------------
    @property
    def is_apply(self) -> bool:
        return self.kind in APPLY_KINDS

    def change_rows(self) -> list[list[str]]:
        """Host, operation, change, reason: what changed or would change; hosts in the desired state as one row."""
        lang = self.lang
        rows = []
        for h in self.hosts:
            name = one_line(h.get("host", ""))
            changes = h.get("changes") or []
            if not h.get("reachable", True) or (h.get("error") and not h.get("results")):
                rows.append([name, "", t("unreachable" if not h.get("reachable", True) else "error", lang),
                             one_line(h.get("error", ""))])
                continue
            moved = [c for c in changes if c.get("status") != "unchanged"]
            for c in moved:
                detail = finding(c, "detail", lang)
                why = f"{t(c['reason'], lang)}: {detail}" if c.get("reason") else detail
                rows.append([name, c.get("name", ""), t(c.get("status", ""), lang), why])
            if not moved:
                rows.append([name, "", t("unchanged", lang), t("in-desired-state", lang).format(n=len(changes))])
        return rows

    def change_headers(self) -> list[str]:
        return [t(w, self.lang) for w in ("host", "operation", "change", "reason")]

    # --- summary ------------------------------------------------------------------------------
    def counts(self) -> Counter:
        return Counter(r.get("status") for h in self.hosts for r in h.get("results") or [])

    def change_counts(self) -> Counter:
        return Counter(c.get("status") for h in self.hosts for c in h.get("changes") or [])

    def summary(self) -> str:
        lang = self.lang
        counts, changes = self.counts(), self.change_counts()
        parts = [f"{t(s, lang)}: {counts[s]}" for s in STATUS_ORDER if counts[s]]
        parts += [f"{t(s, lang)}: {changes[s]}" for s in CHANGE_ORDER if changes[s]]
        unreachable = sum(not h.get("reachable", True) for h in self.hosts)
        hosts = f"{t('hosts', lang)}: {len(self.hosts)}" + (f" ({t('unreachable', lang)} {unreachable})" if unreachable else "")
        return f"{t('summary', lang)} — {hosts}" + ("; " + ", ".join(parts) if parts else "")

    @property
    def with_classes(self) -> bool:
        """The controls' classes column: only when the baseline is there to say them."""
        return self.baseline is not None

    def result_headers(self, multi: bool) -> list[str]:
        words = ("control", "title") + (("class",) if self.with_classes else ()) + ("severity", "status", "observed", "expected")
        return ([t("host", self.lang)] if multi else []) + [t(w, self.lang) for w in words]

    def result_cells(self, row: Row, multi: bool) -> list[str]:
        detail = row.observed or row.reason
        return (([row.host] if multi else []) + [row.control_id, row.title] + ([row.classes] if self.with_classes else [])
                + [t(row.severity, self.lang), row.status_label, detail, row.expected])

    def result_wrap(self, multi: bool) -> tuple[int, ...]:
        """Which columns of the result table wrap: title, observed, expected."""
        n = len(self.result_headers(multi))
        return (int(multi) + 1, n - 2, n - 1)

    @property
    def multi(self) -> bool:
        return len(self.hosts) > 1


assert set(STATUS_ORDER) == set(STATUSES)
