"""Drift (kijun.drift.compare) as a terminal table; JSON is the Drift itself (kijun.present.json_out)."""

from __future__ import annotations

from kijun import i18n
from kijun.drift import Change, Drift
from kijun.present.grid import grid

LABELS = {
    "en": {
        "title": "Drift {old} -> {new}",
        "incomplete": "note: the newer run is incomplete; missing hosts may only be unfinished",
        "new_failures": "New failures", "fixed": "Fixed", "still_failing": "Still failing",
        "hosts_new": "New hosts", "hosts_gone": "Hosts gone", "none": "none",
        "cols": ("Host", "Control", "Before", "Now", "Observed before", "Observed now"),
        "verdict_drift": "result: new drift ({n} new failure(s))", "verdict_ok": "result: no new drift",
        "absent": "-",
    },
    "ja": {
        "title": "差分 {old} -> {new}",
        "incomplete": "注意: 新しい実行は未完了です。消えたホストは未実施の可能性があります",
        "new_failures": "新たな不適合", "fixed": "是正済み", "still_failing": "継続中の不適合",
        "hosts_new": "新規ホスト", "hosts_gone": "消えたホスト", "none": "なし",
        "cols": ("ホスト", "項目ID", "前回", "今回", "前回の観測値", "今回の観測値"),
        "verdict_drift": "結果: 新たな逸脱あり (新たな不適合 {n} 件)", "verdict_ok": "結果: 新たな逸脱なし",
        "absent": "-",
    },
}


def render_table(drift: Drift, lang: str = "en") -> str:
    if lang not in LABELS:
        raise ValueError(f"unknown language {lang!r} (ja or en)")
    t = LABELS[lang]

    def status(s: str | None) -> str:
        return t["absent"] if s is None else i18n.t(s, lang)

    out = [t["title"].format(old=drift.old_run, new=drift.new_run)]
    if not drift.new_complete:
        out.append(t["incomplete"])
    for key in ("new_failures", "fixed", "still_failing"):
        changes: list[Change] = getattr(drift, key)
        out += ["", f"{t[key]} ({len(changes)})"]
        if changes:
            rows = [(c.host, c.control_id, status(c.old_status), status(c.new_status),
                     c.old_observed, c.new_observed) for c in changes]
            out.append(grid(t["cols"], rows, wrap=(4, 5)))
    for key in ("hosts_new", "hosts_gone"):
        hosts = getattr(drift, key)
        out += ["", f"{t[key]} ({len(hosts)}): {', '.join(hosts) if hosts else t['none']}"]
    n = len(drift.new_failures)
    out += ["", t["verdict_drift"].format(n=n) if n else t["verdict_ok"]]
    return "\n".join(out) + "\n"
