"""The baseline as pyinfra operations, shared by deploys/baseline.py (pyinfra CLI) and `kijun apply`."""

from __future__ import annotations

import os
import re
from typing import Any

from kijun import baseline as baseline_mod
from kijun import check, ops, plan
from kijun.controls import REGISTRY
from kijun.inventory import target_from_host
from kijun.model import Baseline, HostTarget

RUN_ID = re.compile(r"[0-9]{8}T[0-9]{6}Z-[0-9a-f]{6}")  # as kijun.report.new_run_id makes them


def new_run_id() -> str:
    from kijun.report import new_run_id as make

    return make()


def host_calls(base: Baseline, target: HostTarget, run_id: str) -> list[tuple[str, str, dict[str, Any]]]:
    """(control id, operation name, enforce kwargs) for every applicable item, in baseline order."""
    host_plan = plan.plan_host(base, target)
    probes = check.probes_for(host_plan, with_facts=False)  # all of them: one round trip judges the host
    items = [(pc, item) for pc in host_plan if pc.applicable for item in pc.items]
    calls = []
    for pc, item in sorted(items, key=lambda pair: REGISTRY[pair[1].type].stage):  # stable: baseline order within a stage
        name = f"{pc.control.id}: {REGISTRY[item.type].describe(item.params)}"
        calls.append((pc.control.id, name, {
            "item_type": item.type, "params": item.params, "control_id": pc.control.id,
            "run_id": run_id, "probes": probes,
        }))
    return calls


def deploy_current_host(baseline_path: str | None = None) -> None:
    """Body of deploys/baseline.py: runs inside the pyinfra CLI, once per host."""
    from pyinfra import host, state

    base = baseline_mod.load(baseline_path or os.environ.get("KIJUN_BASELINE", "baselines/nisc-core.yaml"))
    run_id = os.environ.get("KIJUN_RUN_ID") or getattr(state, "kijun_run_id", None)
    if run_id is not None and not RUN_ID.fullmatch(run_id):  # it names directories in root's shell on hosts
        raise baseline_mod.InputError("KIJUN_RUN_ID", "environment", f"{run_id!r} is not a kijun run id (like 20261129T194716Z-1a2b3c)")
    if run_id is None:
        run_id = state.kijun_run_id = new_run_id()
    target = target_from_host("inventory", host.name, host.data.dict(), list(host.groups))
    for _cid, name, kwargs in host_calls(base, target, run_id):
        # as in `kijun apply`: a control that cannot be applied must not stop the host's other controls
        ops.enforce(name=name, _ignore_errors=True, **kwargs)
