"""Runs: an intent (check, apply, dry run, rollback) becomes one report, signed and stored as it goes.

The CLI parses options, calls one of the run functions here and picks an output; the engine (plan,
probe, controls, ops, fleet, apply) does the work; the store signs and chains. Every host result is
written to the store, signed, as soon as it is known, so a killed run is recovered with what it had.

Apply-type reports keep Puppet's noop separation: each host has `changes` (per operation: would-change
in a dry run, changed / unchanged / failed in an apply, with the lock-out revert reason), and, after an
apply, `results` are the re-verification of the host by the checker, so "applied" means "verified".
"""

from __future__ import annotations

import datetime as dt
import logging
import threading
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from kijun.baseline import InputError

KEY_FILE_LIMIT = 64 * 1024  # PEM keys are a few hundred bytes
Say = Callable[[str], None]
log = logging.getLogger(__name__)


def _stderr(line: str) -> None:
    import click

    click.echo(line, err=True)


def signer(key_path: str | None):
    from kijun import signing
    from kijun.inputs import read_input

    path = Path(key_path).expanduser() if key_path else signing.default_key_path()
    if not path.exists():
        raise InputError(str(path), "", "no signing key: run `kijun keygen` first (or pass --key, or --no-store)")
    read_input(path, KEY_FILE_LIMIT)  # a regular, small file: a FIFO given as the key must not hang the run
    return signing.load_private(path)


def scope_of(limit: tuple[str, ...]) -> dict[str, list[str]]:
    """Which part of the inventory a run covered: drift compares runs of the same inventory and scope."""
    return {"limit": sorted(set(limit))}


class StopOnSignal:
    """Ctrl-C / SIGTERM during a fleet check: the first stops dispatching (hosts in flight end or time
    out), a second also cuts the hosts in flight. Handlers only set flags and write to fd 2."""

    def __init__(self):
        self.stop, self.abort = threading.Event(), threading.Event()
        self._old = {}

    def _handle(self, signum, frame) -> None:
        import os

        if self.stop.is_set():
            self.abort.set()
            msg = "kijun: stopping now: hosts in flight are cut off / 実行中のホストも中断します\n"
        else:
            self.stop.set()
            msg = ("kijun: interrupted: no new hosts; waiting for hosts in flight (again to cut them off) / "
                   "中断: 新しいホストは開始しません\n")
        os.write(2, msg.encode())

    def __enter__(self):
        import signal

        for sig in (signal.SIGINT, signal.SIGTERM):
            self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        import signal

        for sig, old in self._old.items():
            signal.signal(sig, old)


class RunKeeper:
    """Keeps every host result of a run: in the store, and when the store fails (disk full, database
    gone) in a spool file next to it, saying so at once with the run id. Nothing collected is lost."""

    def __init__(self, store, signer, store_url, run_id, base, inventory, kind: str = "check",
                 scope: dict | None = None, say: Say = _stderr):
        self.store, self.signer, self.store_url, self.run_id = store, signer, store_url, run_id
        self.base, self.inventory, self.kind, self.scope, self.say = base, inventory, kind, scope, say
        self.hosts = []
        self.failure = ""
        self.spool = None
        self.spool_error = ""
        self.stored = store is not None

    def add(self, res) -> None:
        from kijun.store import StoreError

        self.hosts.append(res)
        if self.stored:
            try:
                self.store.add_host_result(self.run_id, res, self.signer)
                return
            except StoreError as exc:
                self._fail(f"store failed during run {self.run_id}: {exc}")
        elif self.spool is not None:
            self._write_spool()

    def seal(self, complete: bool):
        from kijun.store import StoreError

        if self.stored:
            try:
                return self.store.finish_run(self.run_id, self.signer, complete=complete)
            except StoreError as exc:
                self._fail(f"store failed sealing run {self.run_id}: {exc}")
        return self._report(complete and not self.failure)

    def _report(self, complete: bool) -> dict:
        from kijun import report as report_mod

        return report_mod.build_report(self.kind, self.hosts, run_id=self.run_id, baseline=self.base,
                                       inventory=self.inventory, complete=complete, scope=self.scope)

    def _fail(self, what: str) -> None:
        self.stored = False
        self._write_spool()
        self.failure = (f"{what}; the {len(self.hosts)} host result(s) collected so far and the rest of this run "
                        f"are kept unsigned in {self.spool}" if self.spool else
                        f"{what}; could not spool the results either ({self.spool_error}): they are only in this output")
        self.say(f"kijun: error: {self.failure}")

    def _write_spool(self) -> None:
        from kijun import spool

        try:
            self.spool = spool.write(self._report(False), self.store_url, self.spool)
        except OSError as exc:
            self.spool_error = str(exc)


def open_run(kind: str, base, inventory: dict, scope: dict, *, store_url, key_path, no_store: bool,
             run_id: str | None = None, say: Say = _stderr) -> RunKeeper:
    """Start a run: recover runs whose process was killed, record this one as running (signed)."""
    store = sign_key = None
    if not no_store:
        from kijun.store import Store

        sign_key = signer(key_path)
        store = Store(store_url)
        # Runs whose process was killed: seal what they kept, but only what this key signed as it went.
        for stale in store.recover_incomplete(sign_key, warn=lambda line: say(f"kijun: warning: {line}")):
            say(f"kijun: run {stale} was interrupted; sealed as incomplete with the hosts it had checked")
        run_id = store.begin_run({"kind": kind, "baseline": base, "inventory": inventory, "scope": scope,
                                  "run_id": run_id}, sign_key)
    return RunKeeper(store, sign_key, store_url, run_id, base, inventory, kind, scope, say)


def load_waivers(path, base):
    if not path:
        return None
    from kijun import waivers

    return waivers.load(path, base)


def apply_waivers(waiver_set, hosts) -> None:
    if waiver_set is not None:
        from kijun import waivers

        waivers.apply(waiver_set, hosts)


# --- check ---------------------------------------------------------------------------------------

@dataclass
class CheckRun:
    hosts: list
    report: dict
    keeper: RunKeeper
    interrupted: bool
    input_errors: list = field(default_factory=list)


def load_fleet(base, inventory: str, limit: tuple[str, ...]):
    """The inventory's hosts that can be checked; hosts whose kijun_vars break a parameter are left
    out, each with its own error line (inv.errors)."""
    from kijun import inventory as inventory_mod
    from kijun import plan

    inv = inventory_mod.load(inventory, tuple(limit))
    for target in list(inv.targets):
        try:
            plan.plan_host(base, target)
        except InputError as exc:
            inv.errors.append(exc)
            inv.targets.remove(target)
    return inv


def check(base, inv, limit: tuple[str, ...], *, parallel: int, connect_timeout: int, host_timeout: float,
          max_output: int, store_url, key_path, no_store: bool, waiver_set=None, say: Say = _stderr,
          on_host: Callable[[Any], None] | None = None) -> CheckRun:
    """Check a loaded fleet (load_fleet); each host result is stored, signed, as it arrives (then on_host(result),
    e.g. a progress display; each host's end is logged at INFO)."""
    from kijun import fleet
    from kijun.termsafe import clean

    inv_ref = {"path": inv.path, "digest": inv.digest}
    keeper = open_run("check", base, inv_ref, scope_of(limit), store_url=store_url, key_path=key_path,
                      no_store=no_store, say=say)
    if keeper.stored:
        say(f"run {keeper.run_id}: checking {len(inv.targets)} host(s)")

    def done(res):
        apply_waivers(waiver_set, [res])
        keeper.add(res)
        bad = sum(r.status in ("fail", "error") for r in res.results)
        if res.error == fleet.NOT_CHECKED:
            line = res.error
        elif not res.reachable:
            line = "unreachable: " + res.error
        elif res.error:
            line = f"error: {res.error}"
        else:
            line = f"{bad} failing control(s)"
        log.info("%s", clean(f"{res.host}: {line}"))
        if on_host is not None:
            on_host(res)

    with StopOnSignal() as sig:
        hosts = fleet.check_fleet(base, inv.targets, parallel=parallel, connect_timeout=connect_timeout, on_result=done,
                                  host_timeout=host_timeout, max_output=max_output, stop=sig.stop, abort=sig.abort)
        report = keeper.seal(complete=not sig.stop.is_set())
    return CheckRun(hosts, report, keeper, sig.stop.is_set(), list(inv.errors))


# --- apply, dry run, rollback ----------------------------------------------------------------------

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
        bad = {"fail", "error", "unreachable"}
        return (any((not o.reachable) or o.error or o.controls("failed") for o in self.outcomes)
                or any(r.status in bad for h in self.verified for r in h.results)
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


def _target_for(targets, name: str):
    for t in targets:
        if t.name == name or t.ssh.get("hostname") == name:
            return t
    return None


class _sealed_on_error:
    """An error before any host result (bad --limit, pyinfra failing at start): the opened run is sealed
    as incomplete at once instead of waiting, running, for the next run to recover it."""

    def __init__(self, keeper: RunKeeper):
        self.keeper = keeper

    def __enter__(self):
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        if exc_type is not None and self.keeper.stored:
            try:
                self.keeper.seal(complete=False)
            except Exception:  # the original error is the one to report
                pass


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
    with _sealed_on_error(keeper):
        outcomes = apply_mod.run(base, inv.path, keeper.run_id, dry=dry, limit=tuple(limit), parallel=parallel,
                                 fail_percent=fail_percent, tofu=tofu, progress=progress, keep_backups=keep_backups)
    verified = []
    pending = {o.host: o for o in outcomes}
    if not dry and verify:
        reachable = [o for o in outcomes if o.reachable]
        by_target = {}
        for o in reachable:
            t = _target_for(inv.targets, o.host)
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
            keeper.add(host_entry(o, _target_for(inv.targets, o.host)))
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
    with _sealed_on_error(keeper):
        outcomes = apply_mod.rollback(inv.path, rollback_id, tuple(limit), parallel, tofu)
    for o in outcomes:
        keeper.add(host_entry(o, _target_for(inv.targets, o.host)))
    return ApplyRun("rollback", outcomes, [], keeper.seal(complete=True), keeper)
