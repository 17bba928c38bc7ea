"""The check run: verify hosts read-only (a fleet over SSH, or this machine with --local)."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from kijun.inputs import InputError
from kijun.runs.keeper import (
    RunKeeper, Say, StopOnSignal, _stderr, apply_waivers, open_run, scope_of, sealed_on_error,
)

log = logging.getLogger(__name__)


@dataclass
class CheckRun:
    hosts: list
    report: dict
    keeper: RunKeeper
    interrupted: bool
    input_errors: list = field(default_factory=list)

    @property
    def not_checked(self) -> int:
        """Hosts an interrupted run never started."""
        from kijun import fleet

        return sum(h.error == fleet.NOT_CHECKED for h in self.hosts)


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


def check_local(base, importance_class: str, *, host_timeout: float, max_output: int, store_url=None,
                key_path=None, no_store: bool = True, waiver_set=None, say: Say = _stderr) -> CheckRun:
    """Check this machine (no SSH, read-only); stored and signed like a fleet check unless no_store.
    The inventory of a local run is `local:HOSTNAME`, so drift compares a machine's local runs."""
    import socket

    from kijun import check as check_mod
    from kijun import plan, probe
    from kijun.model import HostTarget

    name = socket.gethostname()
    target = HostTarget(name=name, importance_class=importance_class)
    planned = plan.plan_host(base, target)  # bad kijun params fail here, before a run is opened
    keeper = open_run("check", base, {"path": f"local:{name}", "digest": ""}, scope_of(()), store_url=store_url,
                      key_path=key_path, no_store=no_store, say=say)
    runner = probe.make_local_runner(host_timeout, max_output)
    with sealed_on_error(keeper):  # Ctrl-C during the probe: the opened run is sealed as incomplete
        hosts = [check_mod.check_host(planned, target, runner)]
        apply_waivers(waiver_set, hosts)
        for h in hosts:
            keeper.add(h)
    return CheckRun(hosts, keeper.seal(complete=True), keeper, False)
