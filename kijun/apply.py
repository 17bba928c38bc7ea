"""`kijun apply`: the baseline through pyinfra's Python API, with a dry run that names the drift.

Like Puppet's noop report, a dry run says per host and control what *would* change; a real run says
what *changed* and then re-verifies every host with the checker, so "applied" always means "verified".
"""

from __future__ import annotations

import os
from collections.abc import Callable
from dataclasses import dataclass, field

from kijun import ops
from kijun.inputs import InputError
from kijun.deploy import RUN_ID, host_calls
from kijun.inventory import check_connection, target_from_host
from kijun.model import Baseline

os.environ.setdefault("PYINFRA_PROGRESS", "off")  # the spinner hangs in non-interactive runs (FIELD-NOTES)


@dataclass
class OpOutcome:
    control_id: str
    name: str
    status: str  # would-change | unchanged | changed | failed
    detail: str = ""
    reason: str = ""  # why a change failed when kijun undid it, e.g. ops.REVERTED (an i18n word)


@dataclass
class HostApply:
    host: str
    reachable: bool
    error: str = ""
    ops: list[OpOutcome] = field(default_factory=list)

    def controls(self, status: str) -> list[str]:
        return sorted({o.control_id for o in self.ops if o.status == status})


def _make_state(inventory_path: str, limit: tuple[str, ...], parallel: int, fail_percent: int | None, tofu: bool):
    from pyinfra.api import Config, State
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_state
    from pyinfra_cli.inventory import make_inventory

    from kijun.inventory import load_error

    state = State(check_for_changes=True)
    try:
        with ctx_state.use(state):
            inventory = make_inventory(inventory_path, cwd=os.getcwd())
    except KeyboardInterrupt:
        raise
    except BaseException as exc:  # loaded fine by kijun a moment ago: the inventory's code changed its mind
        raise load_error(inventory_path, exc) from None
    for h in inventory:
        # pyinfra defaults to accept-new; kijun verifies host keys unless trust-on-first-use is asked for.
        if tofu:
            h.data.ssh_strict_host_key_checking = "accept-new"
        elif not h.data.get("ssh_strict_host_key_checking"):
            h.data.ssh_strict_host_key_checking = "yes"
    config = Config(PARALLEL=parallel, FAIL_PERCENT=fail_percent)
    limit_hosts = list(inventory)
    if limit:
        wanted = set(limit)
        limit_hosts = [h for h in inventory if h.name in wanted or wanted & set(h.groups) or h.data.get("kijun_name") in wanted]
        if not limit_hosts:
            raise InputError(inventory_path, "--limit", f"no host or group matches {', '.join(limit)}")
    # Validated before connecting: an `@local` or option-like host must never be connected to at all.
    rejected = {}
    for h in inventory:
        try:
            check_connection(inventory_path, h.name, h.data.dict())
            target_from_host(inventory_path, h.name, h.data.dict(), list(h.groups))
        except InputError as exc:
            rejected[h.name] = str(exc)
    if rejected:  # pyinfra type-checks the data of every host at init, even of hosts it never connects to
        with ctx_state.use(state):
            inventory = _without(inventory, set(rejected))
        limit_hosts = [h if h.name in rejected else inventory.get_host(h.name) for h in limit_hosts]
    state.init(inventory, config, initial_limit=[h for h in limit_hosts if h.name not in rejected])
    state.set_stage(StateStage.Connect)
    return state, limit_hosts, rejected


UNREACHABLE = "cannot connect (unreachable, auth or host key failure)"


def _connect(state) -> dict[str, str]:
    """Connect to the hosts in the limit side by side; returns why each failed one failed. pyinfra's
    connect_all stops at the first host whose connection raises (a missing key file), leaving the hosts
    after it unconnected, and gevent prints that exception's traceback: each host is on its own here."""
    import gevent
    from pyinfra.api.exceptions import PyinfraError

    def connect(host) -> str:
        try:
            host.connect(show_errors=False, raise_exceptions=True)
        except Exception as exc:  # ConnectError, PyinfraError ("No such private key file"), paramiko's
            return " ".join(f"cannot connect: {exc}".split())[:300]
        return "" if host.connected else UNREACHABLE

    hosts = [h for h in state.inventory if state.is_host_in_limit(h)]
    jobs = {h: state.pool.spawn(connect, h) for h in hosts}
    gevent.joinall(list(jobs.values()))
    reasons = {h.name: job.value or UNREACHABLE for h, job in jobs.items() if not h.connected}
    for h in hosts:
        if h.connected:
            state.activate_host(h)
    try:
        state.fail_hosts({h for h in hosts if not h.connected}, activated_count=len(hosts))
    except PyinfraError:  # "No hosts remaining!": every host failed to connect; each is reported unreachable
        pass
    return reasons


def _without(inventory, names: set[str]):
    from pyinfra.api import Inventory

    keep = [h for h in inventory if h.name not in names]
    groups: dict[str, list[str]] = {}
    for h in keep:
        for g in h.groups:
            groups.setdefault(g, []).append(h.name)
    return Inventory(([(h.name, h.data.dict()) for h in keep], {}), **{g: (n, {}) for g, n in groups.items()})


def display_name(h) -> str:
    name = str(h.data.get("kijun_name") or h.name)
    return name if name.isprintable() else repr(name)


def run(base: Baseline, inventory_path: str, run_id: str, dry: bool = False, limit: tuple[str, ...] = (),
        parallel: int = 10, fail_percent: int | None = None, tofu: bool = False,
        progress: Callable[[str], None] = lambda s: None, keep_backups: int = ops.KEEP_BACKUPS) -> list[HostApply]:
    import gevent
    from pyinfra.api.connect import disconnect_all
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage
    from pyinfra.context import ctx_host, ctx_state

    ops.DRY_RUN = dry
    ops.KEEP_BACKUPS = keep_backups
    state, hosts, rejected = _make_state(inventory_path, limit, parallel, fail_percent, tofu)
    results: dict[str, HostApply] = {h.name: HostApply(display_name(h), False, rejected[h.name]) for h in hosts if h.name in rejected}
    why = _connect(state)
    for h in hosts:
        if h.name not in results and h not in state.active_hosts:
            results[h.name] = HostApply(display_name(h), False, why.get(h.name, UNREACHABLE))
            progress(f"{display_name(h)}: unreachable")
    state.set_stage(StateStage.Prepare)
    metas: dict[str, list[tuple[str, str, object]]] = {}

    def prepare(h) -> None:
        try:
            target = target_from_host(inventory_path, h.name, h.data.dict(), list(h.groups))
            calls = host_calls(base, target, run_id)
            # _ignore_errors: one control that cannot be applied must not stop the host's other controls
            metas[h.name] = [(cid, name, add_op(state, ops.enforce, host=h, name=name, _ignore_errors=True, **kw)[h])
                             for cid, name, kw in calls]
            results[h.name] = HostApply(display_name(h), True)
        except InputError as exc:
            results[h.name] = HostApply(display_name(h), True, str(exc))
        except Exception as exc:  # one host's failure must not abort the others
            results[h.name] = HostApply(display_name(h), True, f"{type(exc).__name__}: {exc}")
            state.fail_hosts({h})

    # Hosts are prepared side by side: preparing runs each host's fact commands, and pyinfra's add_op
    # loop would wait for them host after host (200 hosts x 6 commands x 2 round trips at 100 ms = 240 s).
    # Each host's operations are still added in order by its own greenlet; op order is per host in pyinfra.
    # ctx_state is process-wide in pyinfra (ctx_host is per greenlet): set it around all of them, or the first
    # add_op to finish would unset it under the others.
    with ctx_state.use(state):
        gevent.joinall([state.pool.spawn(prepare, h) for h in hosts if h.name not in results])
    metas = {h.name: metas[h.name] for h in hosts if h.name in metas}  # inventory order for the report
    by_name = {h.name: h for h in hosts}
    for name, items in metas.items():
        if not dry:  # judged at execution, against the host as the earlier operations left it
            results[name].ops = [OpOutcome(cid, opname, "pending") for cid, opname, _ in items]
            continue
        with ctx_state.use(state), ctx_host.use(by_name[name]):
            for cid, opname, meta in items:
                try:
                    change = meta.will_change
                except Exception as exc:
                    results[name].ops.append(OpOutcome(cid, opname, "failed", f"{type(exc).__name__}: {exc}"))
                    continue
                results[name].ops.append(OpOutcome(cid, opname, "would-change" if change else "unchanged"))
        progress(f"{results[name].host}: {len(results[name].controls('would-change'))} control(s) drifted")
    if not dry:
        state.set_stage(StateStage.Execute)
        try:
            run_ops(state)
        except Exception as exc:  # pyinfra raises when too many hosts failed; per-host results still stand
            progress(f"pyinfra stopped: {exc}")
        for name, items in metas.items():
            outcomes = []
            for (cid, opname, meta), planned in zip(items, results[name].ops):
                reason, detail = ops.OUTCOMES.get((f"{id(state)}:{name}", opname), ("", ""))
                if reason:  # the change was undone: a fresh SSH login failed after it
                    status = "failed"
                elif meta.is_complete():
                    status = "changed" if meta.did_change() else ("unchanged" if meta.did_succeed() else "failed")
                    detail = "" if meta.did_succeed() else "\n".join((meta.stderr_lines or [])[-3:])
                else:
                    status, detail = "failed", planned.detail or "not executed (host failed earlier)"
                outcomes.append(OpOutcome(cid, opname, status, detail, reason))
            results[name].ops = outcomes
            progress(f"{results[name].host}: {len(results[name].controls('changed'))} control(s) changed, "
                     f"{len(results[name].controls('failed'))} failed")
    state.set_stage(StateStage.Disconnect)
    disconnect_all(state)
    return [results[h.name] for h in hosts if h.name in results]


def rollback(inventory_path: str, run_id: str, limit: tuple[str, ...] = (), parallel: int = 10,
             tofu: bool = False) -> list[HostApply]:
    from pyinfra.api.connect import disconnect_all
    from pyinfra.api.operation import add_op
    from pyinfra.api.operations import run_ops
    from pyinfra.api.state import StateStage

    if not RUN_ID.fullmatch(run_id):
        raise InputError("--rollback", "", f"{run_id!r} is not a kijun run id (like 20260101T000000Z-0a1b2c)")
    state, hosts, rejected = _make_state(inventory_path, limit, parallel, None, tofu)
    why = _connect(state)
    results = {h.name: HostApply(display_name(h), False, rejected.get(h.name, why.get(h.name, "cannot connect")))
               for h in hosts if h not in state.active_hosts}
    state.set_stage(StateStage.Prepare)
    metas = {}
    by_name = {h.name: h for h in hosts}
    for h in hosts:
        if h.name not in results:
            metas[h.name] = add_op(state, ops.rollback, host=h, name=f"rollback {run_id}", run_id=run_id)[h]
    state.set_stage(StateStage.Execute)
    try:
        run_ops(state)
    except Exception:
        pass
    for name, meta in metas.items():
        ok = meta.is_complete() and meta.did_succeed()
        detail = "" if ok else "\n".join((meta.stderr_lines if meta.is_complete() else [])[-3:]) or "not executed"
        results[name] = HostApply(display_name(by_name[name]), True, "" if ok else detail, [OpOutcome("", f"rollback {run_id}", "changed" if ok else "failed", detail)])
    disconnect_all(state)
    return [results[h.name] for h in hosts]
