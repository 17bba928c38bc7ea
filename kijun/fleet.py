"""Check many hosts in parallel; hand each host's result over as soon as it is finished."""

from __future__ import annotations

from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor, as_completed

from kijun import check, plan
from kijun.baseline import InputError
from kijun.model import Baseline, ControlResult, HostResult, HostTarget
from kijun.remote import Unreachable, runner_for


def failed_host(base: Baseline, target: HostTarget, error: str, started: str) -> HostResult:
    """A host kijun could not judge (bad host data, a bug): every control is an error, never a pass."""
    res = check.unreachable_host([], target, error, started)
    res.reachable = True
    res.results = [ControlResult(c.id, "error", "", "", error) for c in base.controls]
    return res


def check_one(base: Baseline, target: HostTarget, connect_timeout: int = 10) -> HostResult:
    started = check.now()
    try:
        host_plan = plan.plan_host(base, target)
    except InputError as exc:
        return failed_host(base, target, str(exc), started)
    try:
        return check.check_host(host_plan, target, runner_for(target, connect_timeout))
    except Unreachable as exc:
        return check.unreachable_host(host_plan, target, str(exc), started)


def check_fleet(base: Baseline, targets: list[HostTarget], parallel: int = 32, connect_timeout: int = 10,
                on_result: Callable[[HostResult], None] = lambda r: None) -> list[HostResult]:
    results: list[HostResult] = []
    with ThreadPoolExecutor(max_workers=max(1, parallel)) as pool:
        futures = {pool.submit(check_one, base, t, connect_timeout): t for t in targets}
        for fut in as_completed(futures):
            target = futures[fut]
            try:
                res = fut.result()
            except Exception as exc:  # a bug for one host must not lose the others
                res = failed_host(base, target, f"{type(exc).__name__}: {exc}", check.now())
            on_result(res)
            results.append(res)
    order = {t.name: i for i, t in enumerate(targets)}
    return sorted(results, key=lambda r: order.get(r.host, 0))
