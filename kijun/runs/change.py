"""Runs that change hosts: apply, dry run, rollback. Each is stored and signed like a check.

Apply-type reports keep Puppet's noop separation: each host has `changes` (per operation: would-change
in a dry run, changed / unchanged / failed in an apply, with the lock-out revert reason), and, after an
apply, `results` are the re-verification of the host by the checker, so "applied" means "verified".
"""

from __future__ import annotations

import datetime as dt
from dataclasses import asdict, dataclass
from typing import Any

from kijun.model import BAD_STATUSES
from kijun.inputs import InputError
from kijun.runs.keeper import RunKeeper, Say, _stderr, open_run, scope_of, sealed_on_error


@dataclass
class ApplyRun:
    kind: str  # apply | dry-run | rollback
    outcomes: list  # kijun.apply.HostApply
    verified: list  # HostResult of the re-verification (apply with --verify)
    report: dict
    keeper: RunKeeper

    @property
    def run_id(self) -> str:
        return self.keeper.run_id

    @property
    def failed(self) -> bool:
        return (any((not o.reachable) or o.error or o.controls("failed") for o in self.outcomes)
                or any(r.status in BAD_STATUSES for h in self.verified for r in h.results)
                or any(not h.reachable for h in self.verified))


def refuse_invalid_hosts(path: str, limit: tuple[str, ...]):
    """apply changes hosts: any invalid host (no hosts, duplicate names, bad port or class) stops it before
    any host is contacted. Unlike check it cannot leave one out: pyinfra builds every host's connection at
    start and dies on one bad port with a traceback. Returns the loaded inventory and its errors."""
    from kijun import inventory as inventory_mod

    inv = inventory_mod.load(path, limit)
    return inv, list(inv.errors)


def _now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def target_for(targets, name: str):
    for t in targets:
        if t.name == name or t.ssh.get("hostname") == name:
            return t
    return None


def host_entry(outcome, target, verified=None) -> dict[str, Any]:
    """One host of an apply-type report: its changes, and (after apply) the re-verification's results."""
    from kijun.report import CHANGE_STATUSES

    # an operation left "pending" (pyinfra stopped before it) did not happen: it is on record as failed
    changes = [{"control_id": op.control_id, "name": op.name,
                "status": op.status if op.status in CHANGE_STATUSES else "failed",
                "detail": op.detail or ("" if op.status in CHANGE_STATUSES else "not executed"),
                "reason": op.reason} for op in outcome.ops]
    if verified is not None:
        entry = asdict(verified)
        entry["changes"] = changes
        if outcome.error and not entry.get("error"):
            entry["error"] = outcome.error
        return entry
    now = _now()
    return {
        "host": outcome.host, "importance_class": target.importance_class if target else "III",
        "organisation": target.organisation if target else "", "branch": target.branch if target else "",
        "role": target.role if target else "", "groups": list(target.groups) if target else [],
        "reachable": outcome.reachable, "error": outcome.error, "started": now, "finished": now,
        "facts": {}, "results": [], "changes": changes,
    }


def apply(base, inv, limit: tuple[str, ...], *, dry: bool, parallel: int, fail_percent, tofu: bool, verify: bool,
          keep_backups: int, host_timeout: float, max_output: int, store_url, key_path, no_store: bool,
          progress: Say, say: Say = _stderr) -> ApplyRun:
    """Apply (or dry-run) the baseline to a loaded inventory (refuse_invalid_hosts), store and sign it."""
    from kijun import apply as apply_mod
    from kijun import fleet
    from kijun.deploy import new_run_id

    kind = "dry-run" if dry else "apply"
    inv_ref = {"path": inv.path, "digest": inv.digest}
    keeper = open_run(kind, base, inv_ref, scope_of(limit), store_url=store_url, key_path=key_path,
                      no_store=no_store, run_id=new_run_id(), say=say)
    say(f"run {keeper.run_id}: {'dry run' if dry else 'apply'} of {base.id}"
        + ("" if dry else f" (rollback with --rollback {keeper.run_id})"))
    with sealed_on_error(keeper):
        outcomes = apply_mod.run(base, inv.path, keeper.run_id, dry=dry, limit=tuple(limit), parallel=parallel,
                                 fail_percent=fail_percent, tofu=tofu, progress=progress, keep_backups=keep_backups)
    verified = []
    pending = {o.host: o for o in outcomes}
    if not dry and verify:
        reachable = [o for o in outcomes if o.reachable]
        by_target = {}
        for o in reachable:
            t = target_for(inv.targets, o.host)
            if t is not None:
                by_target[t.name] = (t, o)

        def done(res):
            t, o = by_target[res.host]
            pending.pop(o.host, None)
            keeper.add(host_entry(o, t, res))

        verified = fleet.check_fleet(base, [t for t, _ in by_target.values()], parallel=max(parallel, 1),
                                     host_timeout=host_timeout, max_output=max_output, on_result=done)
    for o in outcomes:
        if o.host in pending:
            keeper.add(host_entry(o, target_for(inv.targets, o.host)))
    report = keeper.seal(complete=True)
    return ApplyRun(kind, outcomes, verified, report, keeper)


def rollback(inv, rollback_id: str, limit: tuple[str, ...], *, parallel: int, tofu: bool, store_url, key_path,
             no_store: bool, say: Say = _stderr) -> ApplyRun:
    """Restore the files an earlier apply replaced; the rollback is a stored, signed run of its own."""
    from kijun import apply as apply_mod
    from kijun import ops

    if not ops.RUN_ID.fullmatch(rollback_id):  # before the run is opened: no empty run for a typo
        raise InputError("--rollback", "", f"{rollback_id!r} is not a kijun run id (like 20260101T000000Z-0a1b2c)")
    inv_ref = {"path": inv.path, "digest": inv.digest}
    keeper = open_run("rollback", None, inv_ref, scope_of(limit), store_url=store_url, key_path=key_path,
                      no_store=no_store, say=say)
    with sealed_on_error(keeper):
        outcomes = apply_mod.rollback(inv.path, rollback_id, tuple(limit), parallel, tofu)
    for o in outcomes:
        keeper.add(host_entry(o, target_for(inv.targets, o.host)))
    return ApplyRun("rollback", outcomes, [], keeper.seal(complete=True), keeper)
