"""Verify a host: one probe script, evaluated locally against the plan.

Used by `kijun check --local`, by `kijun check -i` over SSH and by the testinfra modules in checks/,
so all three judge with the same code.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime, timezone

from kijun import probe
from kijun.controls import REGISTRY
from kijun.facts import host_facts
from kijun.msg import Msg, join
from kijun.model import (
    ControlResult,
    HostResult,
    HostTarget,
    ProbeOutput,
    Verdict,
    worst,
)
from kijun.plan import PlannedControl, PlannedItem


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def probes_for(plan: list[PlannedControl], with_facts: bool = True) -> dict[str, str]:
    sets: list[Mapping[str, str]] = [probe.HOST_FACT_PROBES] if with_facts else []
    sets += [REGISTRY[i.type].probes(i.params) for pc in plan if pc.applicable for i in pc.items]
    return probe.merge(sets)


def evaluate_item(item: PlannedItem, out: Mapping[str, ProbeOutput]) -> Verdict:
    ctype = REGISTRY[item.type]
    keys = ctype.probes(item.params)
    lost = [k for k in keys if k not in out]
    if lost:
        return Verdict("error", reason=Msg("probe output missing for {keys} (run interrupted?)", keys=lost))
    try:
        v = ctype.evaluate(item.params, out)
    except Exception as exc:  # a parser bug must show as an error on this item, never as a pass
        return Verdict("error", reason=Msg("{type}: cannot evaluate: {exc}", type=item.type, exc=repr(exc)))
    if not v.evidence:
        v.evidence = "; ".join(keys.values())
    if v.status != "pass" and not v.reason:
        # An auditor must read why from the verdict itself, not reconstruct it.
        v.reason = Msg("{item}: observed {observed}, expected {expected}", item=ctype.describe(item.params),
                       observed=v.observed or Msg("nothing"), expected=v.expected or "?")
    garbled = [k for k in keys if out[k].bad_utf8]
    if garbled and v.status not in ("pass", "not-applicable"):
        note = Msg("output of {keys} was not valid UTF-8 (bad bytes read as U+FFFD)", keys=garbled)
        v.reason = join("; ", [v.reason, note])
    return v


def evaluate_control(pc: PlannedControl, out: Mapping[str, ProbeOutput]) -> ControlResult:
    """A control passes only when every item that proves its measure passes.

    An item that could not be observed (not-applicable) leaves the control not-applicable, never a
    pass beside a passing item (an installed package does not prove a running daemon); fail and error
    still win over not-applicable.
    """
    if not pc.applicable:
        return ControlResult(pc.control.id, "not-applicable", "", "", pc.reason, **about(pc.control))
    verdicts = [evaluate_item(i, out) for i in pc.items]
    for item, v in zip(pc.items, verdicts):  # which item, with this host's values ("which sysctl?")
        v.type, v.params = item.type, dict(item.params)
    status = worst([v.status for v in verdicts])
    shown = [v for v in verdicts if v.status == status] or verdicts
    return ControlResult(
        control_id=pc.control.id,
        status=status,
        observed=join("; ", [v.observed for v in shown]),
        expected=join("; ", [v.expected for v in shown]),
        reason=join("; ", [v.reason for v in shown]),
        evidence="; ".join(dict.fromkeys(v.evidence for v in shown if v.evidence)),
        items=verdicts,
        **about(pc.control),
    )


def about(control) -> dict:
    """What a result carries of its control so that a report reads without the baseline."""
    return {"title": dict(control.title), "severity": control.severity}


def check_host(plan: list[PlannedControl], target: HostTarget, runner: probe.Runner) -> HostResult:
    started = now()
    probes = probes_for(plan)
    try:
        out = probe.run_probes(probes, runner)
    except probe.ProbeError as exc:  # deadline or output cap: judged nothing, so every control is an error
        return errored_host(plan, target, str(exc), started)
    results = [evaluate_control(pc, out) for pc in plan]
    return HostResult(
        host=target.name,
        importance_class=target.importance_class,
        organisation=target.organisation,
        branch=target.branch,
        role=target.role,
        groups=list(target.groups),
        reachable=True,
        error="",
        started=started,
        finished=now(),
        facts=host_facts(out),
        results=results,
        commands=1,
        overrides=dict(target.variables),
    )


def unreachable_host(plan: list[PlannedControl], target: HostTarget, error: str, started: str) -> HostResult:
    """Every control of an unreachable host is 'unreachable': never compliant, never silently absent."""
    results = [
        ControlResult(pc.control.id, "unreachable" if pc.applicable else "not-applicable", "", "",
                      error if pc.applicable else pc.reason, **about(pc.control))
        for pc in plan
    ]
    return HostResult(
        host=target.name, importance_class=target.importance_class, organisation=target.organisation,
        branch=target.branch, role=target.role, groups=list(target.groups), reachable=False, error=error,
        started=started, finished=now(), facts={}, results=results, commands=0, overrides=dict(target.variables),
    )


def errored_host(plan: list[PlannedControl], target: HostTarget, error: str, started: str,
                 reachable: bool = True) -> HostResult:
    """A host kijun could not judge (timed out, sent too much, not checked): every applicable control
    is an error, never a pass."""
    res = unreachable_host(plan, target, error, started)
    res.reachable = reachable
    for r in res.results:
        if r.status == "unreachable":
            r.status = "error"
    return res
