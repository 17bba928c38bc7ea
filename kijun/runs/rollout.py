"""The advisory roll-out run (seed 000, 2(2)): apply an advisory to every host, verify each one, store
the run as one signed report of kind "advisory", and record each host's outcome in the ledger.

"When countermeasure information is obtained, take the required measures promptly on ALL information
systems ... and make sure they were taken." The apply is kijun.apply.run, the verification
kijun.fleet.check_fleet; each report host entry carries the apply's `changes` and the verification's
`results`, like an apply report. The ledger (kijun.store_ledger) keeps one signed row per host.

An unreachable host stays pending until a later roll-out reaches and verifies it; a confirmed host
stays confirmed when a later run cannot reach it (nothing new is known), but falls back to failed
when a later verification fails. status() lists every host of the inventory, so hosts never reached
show as pending, with the deadline and an overdue flag.
"""

from __future__ import annotations

import datetime as dt
import getpass
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kijun.inputs import InputError
from kijun.model import BAD_STATUSES as BAD
from kijun.runs.change import host_entry, target_for
from kijun.runs.keeper import RunKeeper, Say, _stderr, open_run, scope_of, sealed_on_error, signer
from kijun.store_ledger import CONFIRMED, FAILED, STATES, UNREACHABLE, Ledger, LedgerRow


@dataclass
class RollOut:
    advisory: Any  # kijun.advisory.Advisory
    run_id: str | None
    report: dict[str, Any] | None
    rows: list[LedgerRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already confirmed (with --pending-only)
    inventory_errors: list[InputError] = field(default_factory=list)
    keeper: RunKeeper | None = None

    @property
    def all_confirmed(self) -> bool:
        return all(r.confirmed for r in self.rows)


def judge(apply_outcome: Any | None, verified: Any | None) -> tuple[str, str]:
    """(outcome, detail) of one host from its apply outcome (kijun.apply.HostApply) and check (HostResult)."""
    if apply_outcome is not None and not apply_outcome.reachable:
        return UNREACHABLE, apply_outcome.error or "unreachable"
    if verified is None:
        return FAILED, "applied but not verified"
    if not verified.reachable:
        return UNREACHABLE, verified.error or "unreachable"
    bad = [r for r in verified.results if r.status in BAD]
    if bad:
        return FAILED, "; ".join(f"{r.control_id} {r.status}: {r.observed or r.reason}".strip() for r in bad)[:500]
    applicable = [r for r in verified.results if r.status != "not-applicable"]
    notes = []
    if apply_outcome is not None:
        changed = apply_outcome.controls("changed")
        if changed:
            notes.append("changed " + ", ".join(changed))
        if apply_outcome.error:
            notes.append(f"apply: {apply_outcome.error}")
    if not applicable:
        notes.append(f"no control applies to class {verified.importance_class}")
    else:
        notes.append(f"verified {len(applicable)} control(s)")
    return CONFIRMED, "; ".join(notes)[:500]


def _unreachable_result(base: Any, target: Any, error: str) -> Any:
    from kijun import check, fleet, plan

    started = check.now()
    try:
        return check.unreachable_host(plan.plan_host(base, target), target, error, started)
    except InputError as exc:
        return fleet.failed_host(base, target, str(exc), started)


def roll_out(adv: Any, inventory_path: str, *, store_url: str | None = None, key_path: str | None = None,
             confirmed_by: str | None = None, pending_only: bool = False, limit: tuple[str, ...] = (),
             parallel: int = 10, connect_timeout: int = 10, tofu: bool = False, host_timeout: float = 120,
             max_output: int = 16 * 1024 * 1024, progress: Callable[[str], None] = lambda s: None,
             say: Say = _stderr, inventory: Any = None, store: Any = None, sign_key: Any = None,
             apply_fn: Callable[..., list[Any]] | None = None,
             check_fn: Callable[..., list[Any]] | None = None) -> RollOut:
    """Apply the advisory to hosts, verify them, store a signed "advisory" report and update the ledger.

    The store is opened from store_url (or an open one is passed as store), the key from key_path (or
    sign_key). apply_fn / check_fn default to kijun.apply.run and kijun.fleet.check_fleet; inventory
    defaults to kijun.inventory.load(inventory_path, limit).
    """
    if store is None:
        from kijun.store import Store

        sign_key = sign_key or signer(key_path)
        with Store(store_url) as opened:
            return roll_out(adv, inventory_path, store_url=store_url, confirmed_by=confirmed_by,
                            pending_only=pending_only, limit=limit, parallel=parallel,
                            connect_timeout=connect_timeout, tofu=tofu, host_timeout=host_timeout,
                            max_output=max_output, progress=progress, say=say, inventory=inventory, store=opened,
                            sign_key=sign_key, apply_fn=apply_fn, check_fn=check_fn)
    from kijun import inventory as inventory_mod
    from kijun.report import new_run_id, utc_now

    if apply_fn is None:
        from kijun.apply import run as apply_fn  # noqa: PLW0127
    if check_fn is None:
        from kijun.fleet import check_fleet as check_fn
    sign_key = sign_key or signer(key_path)
    actor = confirmed_by or getpass.getuser()
    inv = inventory if inventory is not None else inventory_mod.load(inventory_path, limit)
    ledger = Ledger(store)
    ledger.register(adv, inv.path, sign_key)
    targets = list(inv.targets)
    skipped = []
    if pending_only:
        rows = ledger.rows(adv.id, [sign_key.public_key()])  # a forged confirmation does not skip a host
        skipped = [t.name for t in targets if t.name in rows and rows[t.name].confirmed]
        targets = [t for t in targets if t.name not in skipped]
    result = RollOut(adv, None, None, skipped=skipped, inventory_errors=list(inv.errors))
    if not targets:
        progress("nothing to do: every selected host is already confirmed")
        return result
    keeper = open_run("advisory", adv.baseline, {"path": inv.path, "digest": inv.digest}, scope_of(limit),
                      store_url=store_url or store.url, key_path=None, no_store=False, run_id=new_run_id(), say=say,
                      store=store, sign_key=sign_key)
    result.run_id, result.keeper = keeper.run_id, keeper
    verified: dict[str, Any] = {}
    outcomes: dict[str, Any] = {}
    with sealed_on_error(keeper):
        names = tuple(t.name for t in targets)
        applied = apply_fn(adv.baseline, inventory_path, keeper.run_id, dry=False, limit=names, parallel=parallel,
                           tofu=tofu, progress=progress)
        for o in applied:
            t = target_for(targets, o.host)
            if t is not None:
                outcomes[t.name] = o
        reachable = [t for t in targets if t.name in outcomes and outcomes[t.name].reachable]
        if reachable:
            for res in check_fn(adv.baseline, reachable, parallel=max(parallel, 1), connect_timeout=connect_timeout,
                                host_timeout=host_timeout, max_output=max_output):
                verified[res.host] = res
        for t in targets:
            o = outcomes.get(t.name)
            if t.name not in verified:
                error = o.error if o is not None and not o.reachable else "not reached by the roll-out"
                verified[t.name] = _unreachable_result(adv.baseline, t, error)
            keeper.add(host_entry(o, t, verified[t.name]) if o is not None else verified[t.name])
    result.report = keeper.seal(complete=True)
    now = utc_now()
    for t in targets:
        o = outcomes.get(t.name)
        v = verified.get(t.name)
        if o is None and v is not None and v.reachable:
            o_state, detail = FAILED, "apply did not reach this host, so it was not applied"
            if not any(r.status in BAD for r in v.results):
                o_state, detail = judge(None, v)  # already in the desired state: verified all the same
        elif o is None:
            o_state, detail = UNREACHABLE, v.error if v is not None else "not reached"
        else:
            o_state, detail = judge(o, v)
        result.rows.append(ledger.record(adv.id, t, o_state, detail, keeper.run_id, actor, now, signer=sign_key))
        progress(f"{t.name}: {o_state}")
    return result


def status(store: Any, advisory_id: str, inventory_path: str | None = None, today: dt.date | None = None,
           inventory: Any = None, *, public_keys: Any) -> dict[str, Any]:
    """Every host of the inventory (and any host in the ledger) with its state, deadline and overdue flag.

    Only rows signed by one of public_keys count; the others are listed under "tampered" and confirm nothing.
    """
    from kijun import inventory as inventory_mod

    ledger = Ledger(store)
    meta = ledger.advisory(advisory_id, public_keys)
    if meta is None:
        known = ", ".join(ledger.advisories()) or "none"
        raise InputError(store.url, "advisory", f"unknown advisory {advisory_id!r} (known: {known}); "
                                                "roll it out with `kijun advisory apply` first")
    today = today or dt.date.today()
    deadline = dt.date.fromisoformat(meta["deadline"])
    inv = inventory if inventory is not None else inventory_mod.load(inventory_path or meta["inventory"])
    rows = ledger.rows(advisory_id, public_keys)
    out: list[LedgerRow] = []
    for t in inv.targets:
        row = rows.pop(t.name, None) or LedgerRow(advisory_id, t.name, detail="never reached by a roll-out")
        row.organisation, row.branch, row.importance_class = t.organisation, t.branch, t.importance_class
        out.append(row)
    for row in rows.values():  # in the ledger, no longer in the inventory
        row.in_inventory = False
        out.append(row)
    for row in out:
        row.overdue = not row.confirmed and today > deadline
    out.sort(key=lambda r: (r.organisation, r.branch, r.host))
    by_state = {s: sum(r.state == s for r in out) for s in STATES}
    units: dict[tuple[str, str], dict[str, Any]] = {}
    for r in out:
        u = units.setdefault((r.organisation, r.branch), {"organisation": r.organisation, "branch": r.branch,
                                                          "hosts": 0, "confirmed": 0, "outstanding": 0})
        u["hosts"] += 1
        u["confirmed" if r.confirmed else "outstanding"] += 1
    late = [r.host for r in out if r.confirmed and r.confirmed_at and r.confirmed_at[:10] > meta["deadline"]]
    return {
        "advisory": meta,
        "today": today.isoformat(),
        "deadline": meta["deadline"],
        "days_left": (deadline - today).days,
        "hosts": [r.to_dict() for r in out],
        "units": sorted(units.values(), key=lambda u: (u["organisation"], u["branch"])),
        "summary": {"hosts": len(out), "confirmed": sum(r.confirmed for r in out),
                    "outstanding": sum(not r.confirmed for r in out), "pending": sum(r.pending for r in out),
                    "overdue": sum(r.overdue for r in out), "by_state": by_state, "confirmed_late": late},
        "inventory_errors": [str(e) for e in inv.errors],
        "tampered": [f"advisory {advisory_id}: host {r.host}: ledger row {r.tampered} (edited or forged)"
                     for r in out if r.tampered],
        "all_confirmed": bool(out) and all(r.confirmed for r in out),
    }
