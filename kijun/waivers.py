"""Waivers: justified, approved, expiring exceptions to baseline controls.

A waiver file (schema: kijun/schemas/waivers.schema.json, guide: docs/reports-audit.md):

    waivers:
      - control: SSH-001
        hosts: [db-01]            # and/or
        groups: [kanto_branch]    # inventory groups
        justification: legacy batch job logs in as root until the migration (compensated by ...)
        approver: 情報システム課長 山田太郎   # head of the unit that accepts the risk
        expires: 2026-03-31       # last day the waiver holds
        ticket: RISK-1234         # optional

Missing approver or expiry, an expiry that is no calendar date, or a malformed entry, is rejected
with one line `file:line: path: reason`. An unknown control id or an expiry in the past loads, but is
reported (WaiverSet.notes); an expired waiver never waives anything.

apply() turns fail/error results covered by a valid waiver into `waived`, keeps the failure when the
waiver has expired (and records the expired waiver on the result so reports list it), and never
touches pass, not-applicable or unreachable results.
"""

from __future__ import annotations

import datetime as dt
import hashlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from kijun.inputs import (  # noqa: F401 (load_yaml_plain, schema_reason, schema_errors re-exported)
    InputError, json_path, line_of, load_checked, load_yaml_plain, parse_date, schema_errors, schema_reason,
    shipped_schema,
)
from kijun.model import Baseline

WAIVABLE = frozenset({"fail", "error"})
schema = shipped_schema  # the name older callers use


@dataclass(frozen=True)
class Waiver:
    control: str
    hosts: tuple[str, ...]
    groups: tuple[str, ...]
    justification: str
    approver: str
    expires: str  # as written, YYYY-MM-DD
    ticket: str | None = None
    index: int = 0
    line: int | None = None

    @property
    def expiry(self) -> dt.date | None:
        """The last valid day, or None for an impossible date (such a waiver never holds)."""
        return parse_date(self.expires)

    def expired(self, today: dt.date | None = None) -> bool:
        expiry = self.expiry
        return expiry is None or (today or dt.date.today()) > expiry

    def covers(self, host: Any) -> bool:
        name = _get(host, "host")
        groups = set(_get(host, "groups") or ())
        return name in self.hosts or bool(groups & set(self.groups))

    def record(self, expired: bool) -> dict[str, Any]:
        """What a ControlResult carries as its waiver."""
        out: dict[str, Any] = {"justification": self.justification, "approver": self.approver,
                               "expires": self.expires, "ticket": self.ticket}
        if expired:
            out["expired"] = True
        return out


@dataclass
class WaiverSet:
    path: str
    digest: str
    waivers: list[Waiver]
    notes: list[InputError] = field(default_factory=list)  # loaded, but worth a warning

    def for_control(self, control_id: str) -> list[Waiver]:
        return [w for w in self.waivers if w.control == control_id]

    def expired(self, today: dt.date | None = None) -> list[Waiver]:
        return [w for w in self.waivers if w.expired(today)]


def _get(obj: Any, name: str) -> Any:
    return obj.get(name) if isinstance(obj, dict) else getattr(obj, name)


def _set(obj: Any, name: str, value: Any) -> None:
    if isinstance(obj, dict):
        obj[name] = value
    else:
        setattr(obj, name, value)


def collect(path: str | Path, baseline: Baseline | None = None, today: dt.date | None = None
            ) -> tuple[WaiverSet | None, list[InputError]]:
    """(waiver set or None, errors). Errors reject the file; the set's notes only warn."""
    path = str(path)
    data, index, raw, errors = load_checked(path, "waivers", "waivers: [...]")
    if errors:
        return None, errors
    today = today or dt.date.today()
    known = {c.id for c in baseline.controls} if baseline is not None else None
    waivers: list[Waiver] = []
    notes: list[InputError] = []
    for i, w in enumerate(data["waivers"]):
        at = ("waivers", i)
        waiver = Waiver(
            control=w["control"], hosts=tuple(w.get("hosts") or ()), groups=tuple(w.get("groups") or ()),
            justification=w["justification"].strip(), approver=w["approver"].strip(), expires=w["expires"],
            ticket=w.get("ticket"), index=i, line=line_of(index, at),
        )
        waivers.append(waiver)
        if known is not None and waiver.control not in known:
            notes.append(InputError(path, json_path(at + ("control",)),
                                    f"unknown control {waiver.control} (not in baseline {baseline.id}): waives nothing",
                                    line_of(index, at + ("control",))))
        if waiver.expiry is None:
            errors.append(InputError(path, json_path(at + ("expires",)), f"{waiver.expires} is not a calendar date",
                                     line_of(index, at + ("expires",))))
        elif waiver.expired(today):
            notes.append(InputError(path, json_path(at + ("expires",)),
                                    f"expired on {waiver.expires}: the failure stands until it is renewed or fixed",
                                    line_of(index, at + ("expires",))))
    if errors:
        return None, errors
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return WaiverSet(path, digest, waivers, notes), []


def load(path: str | Path, baseline: Baseline | None = None, today: dt.date | None = None) -> WaiverSet:
    """Load a waiver file or raise its first problem as a one-line InputError."""
    waiver_set, errors = collect(path, baseline, today)
    if errors:
        raise errors[0]
    assert waiver_set is not None
    return waiver_set


def validate(path: str | Path, baseline: Baseline | None = None, today: dt.date | None = None
             ) -> tuple[list[InputError], list[InputError]]:
    """(errors, warnings) of a waiver file, for `kijun waivers check`."""
    waiver_set, errors = collect(path, baseline, today)
    return errors, (waiver_set.notes if waiver_set else [])


def apply(waiver_set: WaiverSet | None, hosts: list[Any], today: dt.date | None = None) -> list[Any]:
    """Apply waivers in place to HostResult objects (or host dicts); return the hosts.

    fail/error covered by a valid waiver -> waived (result.waiver = the waiver's record).
    Covered only by expired waivers -> status unchanged, result.waiver = record with expired: true.
    pass / not-applicable / waived / unreachable results, and unreachable hosts, are left alone.
    """
    if waiver_set is None:
        return hosts
    today = today or dt.date.today()
    for host in hosts:
        if not _get(host, "reachable"):
            continue
        for result in _get(host, "results") or []:
            if _get(result, "status") not in WAIVABLE:
                continue
            covering = [w for w in waiver_set.for_control(_get(result, "control_id")) if w.covers(host)]
            if not covering:
                continue
            valid = [w for w in covering if not w.expired(today)]
            if valid:
                best = max(valid, key=lambda w: (w.expiry, -w.index))
                _set(result, "status", "waived")
                _set(result, "waiver", best.record(expired=False))
            else:
                # The most recently expired one is what an auditor wants to see (and renew).
                last = max(covering, key=lambda w: (w.expiry or dt.date.min, -w.index))
                _set(result, "waiver", last.record(expired=True))
    return hosts


def expired_in_report(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every result in a stored report whose waiver had expired: host, control, status, waiver."""
    out = []
    for h in report.get("hosts") or []:
        for r in h.get("results") or []:
            w = r.get("waiver")
            if isinstance(w, dict) and w.get("expired"):
                out.append({"host": h["host"], "control_id": r["control_id"], "status": r["status"], **w})
    return out


def waived_in_report(report: dict[str, Any]) -> list[dict[str, Any]]:
    """Every waived result in a stored report, with its waiver."""
    out = []
    for h in report.get("hosts") or []:
        for r in h.get("results") or []:
            w = r.get("waiver")
            if r.get("status") == "waived" and isinstance(w, dict):
                out.append({"host": h["host"], "control_id": r["control_id"], **w})
    return out
