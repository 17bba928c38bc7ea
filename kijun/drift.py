"""Drift between two reports: what newly fails, what got fixed, what still fails, hosts in/out.

A host unreachable in a report tells nothing about its controls, so it is compared as one
pseudo-control HOST_CHECK (pass when reachable, unreachable when not); its controls are compared
only while it is reachable in the newer report.

A dry run as the older report is read as a prediction (docs/reports.md, "Drift"): a control with an
operation that would change is `fail` (it was not in the desired state), one whose operations are all
unchanged is `pass`, one whose dry run failed is `error`. So "would change" followed by a check's fail is
still failing (consistent), followed by pass is fixed, and "unchanged" followed by fail is new drift.
Controls a dry run does not cover (observe-only types have no operation) are left out of that comparison.
An apply report is read by its re-verification results, like a check.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from kijun.i18n import message
from kijun.model import BAD_STATUSES as BAD

EXIT_NO_DRIFT, EXIT_DRIFT, EXIT_ERROR = 0, 1, 2
HOST_CHECK = "(reachable)"


@dataclass
class Change:
    host: str
    control_id: str
    old_status: str | None  # None: not in the old report (new host, new control, host was unreachable)
    new_status: str
    old_observed: str = ""
    new_observed: str = ""
    reason: str = ""


@dataclass
class Drift:
    old_run: str
    new_run: str
    new_complete: bool = True
    new_failures: list[Change] = field(default_factory=list)
    fixed: list[Change] = field(default_factory=list)
    still_failing: list[Change] = field(default_factory=list)
    hosts_new: list[str] = field(default_factory=list)
    hosts_gone: list[str] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


PREDICTED = {"would-change": "fail", "failed": "error", "unchanged": "pass"}


def _predicted(host: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """A dry run's operations as control verdicts: the worst operation of each control decides."""
    order = ("pass", "fail", "error")
    out: dict[str, dict[str, Any]] = {}
    for c in host.get("changes") or []:
        status = PREDICTED.get(c.get("status"), "error")
        seen = out.get(c["control_id"])
        if seen is None or order.index(status) > order.index(seen["status"]):
            observed = {"fail": "would change: ", "error": "dry run failed: "}.get(status, "") + str(c.get("name", ""))
            out[c["control_id"]] = {"control_id": c["control_id"], "status": status, "observed": observed,
                                    "reason": c.get("detail", "")}
    return out


def _controls(host: dict[str, Any], kind: str = "check") -> dict[str, dict[str, Any]]:
    reachable = host.get("reachable", True)
    pseudo = {"control_id": HOST_CHECK, "status": "pass" if reachable else "unreachable",
              "observed": "" if reachable else (host.get("error") or "unreachable"), "reason": host.get("error", "")}
    out = {HOST_CHECK: pseudo}
    if reachable:
        out.update(_predicted(host) if kind == "dry-run" else {r["control_id"]: r for r in host.get("results") or []})
    return out


def fleet_key(report: dict[str, Any]) -> tuple[str, tuple[str, ...]]:
    """Runs are comparable when they cover the same inventory file and scope (--limit)."""
    inv = report.get("inventory") or {}
    scope = report.get("scope") or {}
    return str(inv.get("path", "")), tuple(sorted(scope.get("limit") or []))


def compare(old_report: dict[str, Any], new_report: dict[str, Any]) -> Drift:
    old_hosts = {h["host"]: h for h in old_report.get("hosts") or []}
    new_hosts = {h["host"]: h for h in new_report.get("hosts") or []}
    drift = Drift(
        old_run=old_report.get("run_id", ""),
        new_run=new_report.get("run_id", ""),
        new_complete=bool(new_report.get("complete", True)),
        hosts_new=sorted(new_hosts.keys() - old_hosts.keys()),
        hosts_gone=sorted(old_hosts.keys() - new_hosts.keys()),
    )
    old_kind, new_kind = old_report.get("kind", "check"), new_report.get("kind", "check")
    for name in sorted(new_hosts):
        old = _controls(old_hosts[name], old_kind) if name in old_hosts else {}
        for control_id, new in sorted(_controls(new_hosts[name], new_kind).items()):
            before = old.get(control_id)
            if before is None and old_kind == "dry-run" and name in old_hosts and old_hosts[name].get("reachable", True):
                continue  # the dry run made no prediction for this control (observe-only)
            change = Change(
                host=name, control_id=control_id,
                old_status=before["status"] if before else None, new_status=new["status"],
                old_observed=message(before, "observed") if before else "",
                new_observed=message(new, "observed"), reason=message(new, "reason"),
            )
            was_bad = change.old_status in BAD
            if new["status"] in BAD:
                (drift.still_failing if was_bad else drift.new_failures).append(change)
            elif was_bad:
                drift.fixed.append(change)
    return drift


def exit_code(drift: Drift) -> int:
    """0: nothing newly failing; 1: new drift. (2, for errors, is the caller's to return.)"""
    return EXIT_DRIFT if drift.new_failures else EXIT_NO_DRIFT
