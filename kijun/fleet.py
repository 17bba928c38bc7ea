"""Check many hosts in parallel; hand each host's result over as soon as it is finished.

Hosts are dispatched no faster than they are worked on, so a stop (Ctrl-C, SIGTERM) leaves the rest
undispatched: they are recorded as not checked, while hosts in flight end or hit their deadline.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import FIRST_COMPLETED, Future, ThreadPoolExecutor, wait

from kijun import check, plan, probe
from kijun.inputs import InputError
from kijun.model import Baseline, ControlResult, HostResult, HostTarget
from kijun.msg import Msg
from kijun.remote import Unreachable, runner_for

NOT_CHECKED = Msg("not checked: run interrupted")
log = logging.getLogger(__name__)


def failed_host(base: Baseline, target: HostTarget, error: str, started: str) -> HostResult:
    """A host kijun could not judge (bad host data, a bug): every control is an error, never a pass."""
    res = check.unreachable_host([], target, error, started)
    res.reachable = True
    res.results = [ControlResult(c.id, "error", "", "", error, **check.about(c)) for c in base.controls]
    return res


def not_checked(base: Baseline, target: HostTarget) -> HostResult:
    try:
        host_plan = plan.plan_host(base, target)
    except InputError:
        res = failed_host(base, target, NOT_CHECKED, check.now())
        res.reachable = False
        return res
    return check.errored_host(host_plan, target, NOT_CHECKED, check.now(), reachable=False)


def check_one(base: Baseline, target: HostTarget, connect_timeout: int = 10,
              host_timeout: float = probe.DEFAULT_HOST_TIMEOUT, max_output: int = probe.DEFAULT_MAX_OUTPUT,
              abort: threading.Event | None = None) -> HostResult:
    started = check.now()
    log.info("%s: checking", target.name)
    try:
        host_plan = plan.plan_host(base, target)
    except InputError as exc:
        return failed_host(base, target, str(exc), started)
    try:
        return check.check_host(host_plan, target, runner_for(target, connect_timeout, host_timeout, max_output, abort))
    except Unreachable as exc:
        return check.unreachable_host(host_plan, target, str(exc), started)


def check_fleet(base: Baseline, targets: list[HostTarget], parallel: int = 32, connect_timeout: int = 10,
                on_result: Callable[[HostResult], None] = lambda r: None,
                host_timeout: float = probe.DEFAULT_HOST_TIMEOUT, max_output: int = probe.DEFAULT_MAX_OUTPUT,
                stop: threading.Event | None = None, abort: threading.Event | None = None) -> list[HostResult]:
    """stop: dispatch no more hosts (the rest are recorded as not checked); abort: also cut hosts in flight."""
    stop = stop or threading.Event()
    workers = max(1, parallel)
    queue = list(targets)
    results: list[HostResult] = []
    running: dict[Future, HostTarget] = {}

    def finish(res: HostResult) -> None:
        on_result(res)
        results.append(res)

    with ThreadPoolExecutor(max_workers=workers) as pool:
        while queue or running:
            while queue and len(running) < workers and not stop.is_set():
                t = queue.pop(0)
                running[pool.submit(check_one, base, t, connect_timeout, host_timeout, max_output, abort)] = t
            if stop.is_set():
                while queue:
                    finish(not_checked(base, queue.pop(0)))
            # A short wait, not a blocking one: a stop must be seen while hosts are still in flight.
            done, _ = wait(running, timeout=0.2, return_when=FIRST_COMPLETED)
            for fut in done:
                target = running.pop(fut)
                try:
                    res = fut.result()
                except Exception as exc:  # a bug for one host must not lose the others
                    res = failed_host(base, target, f"{type(exc).__name__}: {exc}", check.now())
                finish(res)
    order = {t.name: i for i, t in enumerate(targets)}
    return sorted(results, key=lambda r: order.get(r.host, 0))
