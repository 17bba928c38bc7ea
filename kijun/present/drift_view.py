"""Drift (kijun.drift.compare) as a terminal table; JSON is the Drift itself (kijun.present.json_out)."""

from __future__ import annotations

from kijun import i18n
from kijun.drift import Change, Drift
from kijun.msg import LANGS
from kijun.present.grid import grid

def render_table(drift: Drift, lang: str = "en") -> str:
    if lang not in LANGS:
        raise ValueError(f"unknown language {lang!r} (ja or en)")

    def t(key: str) -> str:
        return i18n.t(key, lang)

    def status(s: str | None) -> str:
        return "-" if s is None else t(s)

    cols = [t(k) for k in ("host", "control", "before", "now", "observed_before", "observed_now")]
    out = [t("drift_title").format(old=drift.old_run, new=drift.new_run)]
    if not drift.new_complete:
        out.append(t("drift_incomplete"))
    for key in ("new_failures", "fixed", "still_failing"):
        changes: list[Change] = getattr(drift, key)
        out += ["", f"{t(key)} ({len(changes)})"]
        if changes:
            rows = [(c.host, c.control_id, status(c.old_status), status(c.new_status),
                     i18n.render(c.old_observed, lang), i18n.render(c.new_observed, lang)) for c in changes]
            out.append(grid(cols, rows, wrap=(4, 5)))
    for key in ("hosts_new", "hosts_gone"):
        hosts = getattr(drift, key)
        out += ["", f"{t(key)} ({len(hosts)}): {', '.join(hosts) if hosts else t('none')}"]
    n = len(drift.new_failures)
    out += ["", t("verdict_drift").format(n=n) if n else t("verdict_ok")]
    return "\n".join(out) + "\n"
