"""Advisories: roll countermeasure information out to every system and confirm it (seed 000, 2(2)).

"When countermeasure information is obtained, take the required measures promptly on ALL information
systems of the ministry, regional branch offices and facilities included, and make sure they were
taken, e.g. by asking each unit to report." An advisory file carries the countermeasures as controls
in the baseline format plus an issue date and a deadline:

    advisory:
      id: NISC-2025-001
      title: {ja: ..., en: ...}
      issued: 2025-06-02
      deadline: 2025-06-16
      source: {document: ..., issuer: NISC, reference: JVNVU#..., quote: ...}
      controls: [ ...same format as baseline controls... ]

roll_out() applies the advisory's controls to hosts with kijun.apply.run, verifies every host with
kijun.fleet.check_fleet, stores the verification as a signed report of kind "advisory" and writes one
ledger row per host into tables of the result store:

    applied-and-verified   applied and verified: confirmed (who confirmed, when, which run)
    failed                 reached, but the verification found fail/error
    unreachable            not reached: still pending
    pending                never tried (e.g. a branch host not yet in any roll-out)

An unreachable host stays pending until a later roll-out reaches and verifies it; a confirmed host
stays confirmed when a later run cannot reach it (nothing new is known), but falls back to failed
when a later verification fails. status() lists every host of the inventory, so hosts never reached
show as pending, with the deadline and an overdue flag.

Every ledger row (advisory, host, event) is signed with the roll-out's key when written. A row whose
signature does not verify (edited in the database, e.g. one UPDATE marking every host confirmed)
never counts as confirmed: status() flags it, roll-outs do not build on it, verify_ledger() names it.
"""

from __future__ import annotations

import datetime as dt
import getpass
import hashlib
import json
import re
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from typing import Any

from kijun import baseline as baseline_mod
from kijun.baseline import InputError, json_path, line_of
from kijun.model import Baseline
from kijun.report import utc_now
from kijun.signing import record_problem, sign_record
from kijun.waivers import load_checked, parse_date

CONFIRMED, FAILED, UNREACHABLE, PENDING = "applied-and-verified", "failed", "unreachable", "pending"
STATES = (CONFIRMED, FAILED, UNREACHABLE, PENDING)
BAD = frozenset({"fail", "error", "unreachable"})


@dataclass
class Advisory:
    id: str
    title: dict[str, str]
    issued: str
    deadline: str
    source: dict[str, Any]
    baseline: Baseline
    path: str
    digest: str

    @property
    def deadline_date(self) -> dt.date:
        return dt.date.fromisoformat(self.deadline)


def baseline_id(advisory_id: str) -> str:
    return "advisory-" + re.sub(r"[^a-z0-9-]+", "-", advisory_id.lower()).strip("-")


def collect(path: str) -> tuple[Advisory | None, list[InputError]]:
    path = str(path)
    data, index, raw, errors = load_checked(path, "advisory", "advisory: {...}")
    if errors:
        return None, errors
    adv = data["advisory"]
    for key in ("issued", "deadline"):
        if parse_date(adv[key]) is None:
            errors.append(InputError(path, f"advisory.{key}", f"{adv[key]} is not a calendar date",
                                     line_of(index, ("advisory", key))))
    if not errors and adv["deadline"] < adv["issued"]:
        errors.append(InputError(path, "advisory.deadline", f"deadline {adv['deadline']} is before issued {adv['issued']}",
                                 line_of(index, ("advisory", "deadline"))))
    if errors:
        return None, errors
    # The controls are checked exactly like a baseline's: same schema, variables, lists, duplicates.
    doc = {"kijun": 1, "id": baseline_id(adv["id"]), "version": adv["issued"], "title": adv["title"],
           "controls": adv["controls"]}
    for key in ("variables", "lists"):
        if key in adv:
            doc[key] = adv[key]
    sub_index = {k[1:]: v for k, v in index.items() if k[:1] == ("advisory",)}
    base_errors = baseline_mod.collect_errors(path, doc, sub_index)
    if base_errors:
        return None, [InputError(e.file, f"advisory.{e.path}" if e.path not in ("", baseline_mod.DOCUMENT) else "advisory",
                                 e.reason, e.line)
                      for e in base_errors]
    base = baseline_mod._build(path, doc, sub_index, raw)
    base.ignore_foreign_variables = True
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return Advisory(adv["id"], adv["title"], adv["issued"], adv["deadline"], adv["source"], base, path, digest), []


def load(path: str) -> Advisory:
    """Load an advisory file or raise its first problem as a one-line InputError (file:line: path: reason)."""
    adv, errors = collect(path)
    if errors:
        raise errors[0]
    assert adv is not None
    return adv


def validate(path: str) -> list[InputError]:
    return collect(path)[1]


# --- the ledger ------------------------------------------------------------------------------------

@dataclass
class LedgerRow:
    advisory_id: str
    host: str
    organisation: str = ""
    branch: str = ""
    importance_class: str = ""
    state: str = PENDING
    detail: str = ""
    run_id: str | None = None
    confirmed_by: str | None = None
    confirmed_at: str | None = None
    updated: str | None = None
    in_inventory: bool = True
    overdue: bool = False
    tampered: str | None = None  # why its signature does not verify: then it confirms nothing

    @property
    def confirmed(self) -> bool:
        return self.state == CONFIRMED and not self.tampered

    @property
    def pending(self) -> bool:
        """Not yet confirmed: never tried, or tried while unreachable."""
        return self.state in (PENDING, UNREACHABLE)

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "confirmed": self.confirmed, "pending": self.pending}


_COLUMNS = ("advisory_id", "host", "organisation", "branch", "importance_class", "state", "detail", "run_id",
            "confirmed_by", "confirmed_at", "updated")
_ADVISORY_COLUMNS = ("advisory_id", "title", "issued", "deadline", "source", "digest", "path", "inventory",
                     "registered", "updated")
_EVENT_COLUMNS = ("advisory_id", "host", "state", "detail", "run_id", "actor", "at")
# signing.sign_record kinds: the signature covers every column above of its row
ADVISORY_RECORD, HOST_RECORD, EVENT_RECORD = "advisory", "advisory-host", "advisory-event"


class LedgerTampered(InputError):
    """The advisory's own ledger row does not verify: no status can be given from it."""


class Ledger:
    """Advisory ledger tables in the result store's database (SQLite or PostgreSQL).

    Uses the store's connection and transaction so ledger writes serialise with run writes.
    """

    def __init__(self, store: Any):
        self.store = store
        id_column = store.dialect.id_column
        with store._transaction():
            for ddl in (
                """CREATE TABLE IF NOT EXISTS kijun_advisories (
                    advisory_id TEXT PRIMARY KEY,
                    title TEXT NOT NULL,
                    issued TEXT NOT NULL,
                    deadline TEXT NOT NULL,
                    source TEXT NOT NULL,
                    digest TEXT NOT NULL,
                    path TEXT NOT NULL,
                    inventory TEXT NOT NULL,
                    registered TEXT NOT NULL,
                    updated TEXT NOT NULL
                )""",
                """CREATE TABLE IF NOT EXISTS kijun_advisory_hosts (
                    advisory_id TEXT NOT NULL REFERENCES kijun_advisories(advisory_id),
                    host TEXT NOT NULL,
                    organisation TEXT NOT NULL,
                    branch TEXT NOT NULL,
                    importance_class TEXT NOT NULL,
                    state TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    run_id TEXT,
                    confirmed_by TEXT,
                    confirmed_at TEXT,
                    updated TEXT NOT NULL,
                    PRIMARY KEY (advisory_id, host)
                )""",
                f"""CREATE TABLE IF NOT EXISTS kijun_advisory_events (
                    id {id_column},
                    advisory_id TEXT NOT NULL,
                    host TEXT NOT NULL,
                    state TEXT NOT NULL,
                    detail TEXT NOT NULL,
                    run_id TEXT,
                    actor TEXT NOT NULL,
                    at TEXT NOT NULL
                )""",
            ):
                store._q(ddl)
            for table in ("kijun_advisories", "kijun_advisory_hosts", "kijun_advisory_events"):
                store.add_columns(table, (("signature", "TEXT"),))

    def _q(self, sql: str, params: tuple = ()) -> Any:
        return self.store._q(sql, params)

    def register(self, adv: Advisory, inventory_path: str, signer: Any) -> None:
        """Record (or update) the advisory and the inventory its status is judged against, signed."""
        now = utc_now()
        with self.store._transaction():
            found = self._q(f"SELECT {', '.join(_ADVISORY_COLUMNS)}, signature FROM kijun_advisories "
                            "WHERE advisory_id = ?", (adv.id,))
            registered = now  # kept from the old row only if this key signed it: never re-sign a stranger's value
            if found and record_problem(ADVISORY_RECORD, dict(zip(_ADVISORY_COLUMNS, found[0][:-1])), found[0][-1],
                                        [signer.public_key()]) is None:
                registered = found[0][_ADVISORY_COLUMNS.index("registered")]
            values = (adv.id, json.dumps(adv.title, ensure_ascii=False), adv.issued, adv.deadline,
                      json.dumps(adv.source, ensure_ascii=False), adv.digest, adv.path, str(inventory_path),
                      registered, now)
            signature = sign_record(ADVISORY_RECORD, dict(zip(_ADVISORY_COLUMNS, values)), signer)
            self._q(
                f"INSERT INTO kijun_advisories ({', '.join(_ADVISORY_COLUMNS)}, signature) "
                f"VALUES ({', '.join('?' * (len(_ADVISORY_COLUMNS) + 1))}) ON CONFLICT (advisory_id) DO UPDATE SET "
                "title = excluded.title, issued = excluded.issued, deadline = excluded.deadline, "
                "source = excluded.source, digest = excluded.digest, path = excluded.path, "
                "inventory = excluded.inventory, updated = excluded.updated, signature = excluded.signature",
                values + (signature,),
            )

    def advisory(self, advisory_id: str, public_keys: Any = None) -> dict[str, Any] | None:
        """The advisory's row; with public_keys, raise LedgerTampered unless one of them signed it."""
        rows = self._q(f"SELECT {', '.join(_ADVISORY_COLUMNS)}, signature FROM kijun_advisories WHERE advisory_id = ?",
                       (advisory_id,))
        if not rows:
            return None
        row = rows[0]
        if public_keys is not None:
            problem = record_problem(ADVISORY_RECORD, dict(zip(_ADVISORY_COLUMNS, row[:-1])), row[-1], public_keys)
            if problem:
                raise LedgerTampered(self.store.url, f"advisory {advisory_id}",
                                     f"ledger row {problem} (edited or forged): refusing to give a status")
        keys = ("id", "title", "issued", "deadline", "source", "digest", "path", "inventory", "registered", "updated")
        out = dict(zip(keys, row[:-1]))
        out["title"] = json.loads(out["title"])
        out["source"] = json.loads(out["source"])
        return out

    def advisories(self) -> list[str]:
        return [r[0] for r in self._q("SELECT advisory_id FROM kijun_advisories ORDER BY advisory_id")]

    def rows(self, advisory_id: str, public_keys: Any) -> dict[str, LedgerRow]:
        """Host rows by host name; a row none of public_keys signed carries .tampered (and confirms nothing)."""
        out = {}
        for r in self._q(f"SELECT {', '.join(_COLUMNS)}, signature FROM kijun_advisory_hosts WHERE advisory_id = ? "
                         "ORDER BY host", (advisory_id,)):
            fields = dict(zip(_COLUMNS, r[:-1]))
            row = LedgerRow(**fields)
            row.tampered = record_problem(HOST_RECORD, fields, r[-1], public_keys)
            out[row.host] = row
        return out

    def events(self, advisory_id: str, host: str | None = None) -> list[dict[str, Any]]:
        sql = "SELECT host, state, detail, run_id, actor, at FROM kijun_advisory_events WHERE advisory_id = ?"
        params: tuple = (advisory_id,)
        if host:
            sql += " AND host = ?"
            params += (host,)
        return [dict(zip(("host", "state", "detail", "run_id", "actor", "at"), r))
                for r in self._q(sql + " ORDER BY id", params)]

    def record(self, advisory_id: str, host: Any, outcome: str, detail: str, run_id: str | None, actor: str,
               at: str | None = None, *, signer: Any) -> LedgerRow:
        """Record one host's roll-out outcome, signed; return its new ledger row (see transition())."""
        at = at or utc_now()
        ours = [signer.public_key()]
        with self.store._transaction():
            found = self._q(f"SELECT {', '.join(_COLUMNS)}, signature FROM kijun_advisory_hosts "
                            "WHERE advisory_id = ? AND host = ?", (advisory_id, host.name))
            previous = None
            if found:
                fields = dict(zip(_COLUMNS, found[0][:-1]))
                # A row this key did not sign is not built on (a forged confirmation must not "stand").
                if record_problem(HOST_RECORD, fields, found[0][-1], ours) is None:
                    previous = LedgerRow(**fields)
            row = transition(previous, advisory_id, host, outcome, detail, run_id, actor, at)
            values = tuple(getattr(row, c) for c in _COLUMNS)
            self._q(
                f"INSERT INTO kijun_advisory_hosts ({', '.join(_COLUMNS)}, signature) "
                f"VALUES ({', '.join('?' * (len(_COLUMNS) + 1))}) "
                "ON CONFLICT (advisory_id, host) DO UPDATE SET organisation = excluded.organisation, "
                "branch = excluded.branch, importance_class = excluded.importance_class, state = excluded.state, "
                "detail = excluded.detail, run_id = excluded.run_id, confirmed_by = excluded.confirmed_by, "
                "confirmed_at = excluded.confirmed_at, updated = excluded.updated, signature = excluded.signature",
                values + (sign_record(HOST_RECORD, dict(zip(_COLUMNS, values)), signer),),
            )
            event = (advisory_id, host.name, outcome, detail, run_id, actor, at)
            self._q(f"INSERT INTO kijun_advisory_events ({', '.join(_EVENT_COLUMNS)}, signature) "
                    f"VALUES ({', '.join('?' * (len(_EVENT_COLUMNS) + 1))})",
                    event + (sign_record(EVENT_RECORD, dict(zip(_EVENT_COLUMNS, event)), signer),))
        return row

    def problems(self, public_keys: Any) -> list[str]:
        """Every ledger row none of public_keys signed, one line each naming it; [] when all verify."""
        out = []
        for r in self._q(f"SELECT {', '.join(_ADVISORY_COLUMNS)}, signature FROM kijun_advisories ORDER BY advisory_id"):
            problem = record_problem(ADVISORY_RECORD, dict(zip(_ADVISORY_COLUMNS, r[:-1])), r[-1], public_keys)
            if problem:
                out.append(f"advisory {r[0]}: ledger row {problem} (edited or forged)")
        for r in self._q(f"SELECT {', '.join(_COLUMNS)}, signature FROM kijun_advisory_hosts "
                         "ORDER BY advisory_id, host"):
            problem = record_problem(HOST_RECORD, dict(zip(_COLUMNS, r[:-1])), r[-1], public_keys)
            if problem:
                out.append(f"advisory {r[0]}: host {r[1]}: ledger row {problem} (edited or forged)")
        for r in self._q(f"SELECT id, {', '.join(_EVENT_COLUMNS)}, signature FROM kijun_advisory_events ORDER BY id"):
            problem = record_problem(EVENT_RECORD, dict(zip(_EVENT_COLUMNS, r[1:-1])), r[-1], public_keys)
            if problem:
                out.append(f"advisory {r[1]}: host {r[2]}: ledger event {r[0]} {problem} (edited or forged)")
        return out


def transition(previous: LedgerRow | None, advisory_id: str, host: Any, outcome: str, detail: str,
               run_id: str | None, actor: str, at: str) -> LedgerRow:
    """The ledger row after one roll-out outcome (applied-and-verified, failed or unreachable).

    A confirmed host that a later run cannot reach stays confirmed (nothing new is known about it);
    anything else takes the new outcome. Confirmation names who confirmed it and when.
    """
    if outcome not in (CONFIRMED, FAILED, UNREACHABLE):
        raise ValueError(f"unknown roll-out outcome {outcome!r}")
    base = dict(advisory_id=advisory_id, host=host.name, organisation=host.organisation, branch=host.branch,
                importance_class=host.importance_class, updated=at)
    if outcome == UNREACHABLE and previous is not None and previous.state == CONFIRMED:
        note = f"confirmed {previous.confirmed_at}; unreachable on {at}: the confirmation stands"
        return LedgerRow(**{**asdict(previous), **base, "detail": note})
    if outcome == CONFIRMED:
        return LedgerRow(**base, state=CONFIRMED, detail=detail, run_id=run_id, confirmed_by=actor, confirmed_at=at)
    return LedgerRow(**base, state=outcome, detail=detail, run_id=run_id)


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


# --- rolling out ---------------------------------------------------------------------------------

@dataclass
class RollOut:
    advisory: Advisory
    run_id: str | None
    report: dict[str, Any] | None
    rows: list[LedgerRow] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # already confirmed (with --pending-only)
    inventory_errors: list[InputError] = field(default_factory=list)

    @property
    def all_confirmed(self) -> bool:
        return all(r.confirmed for r in self.rows)


def _match(outcome_host: str, targets: list[Any]) -> Any | None:
    for t in targets:
        if outcome_host == t.name or outcome_host == t.ssh.get("hostname"):
            return t
    return None


def _unreachable_result(base: Baseline, target: Any, error: str) -> Any:
    from kijun import check, fleet, plan

    started = check.now()
    try:
        return check.unreachable_host(plan.plan_host(base, target), target, error, started)
    except InputError as exc:
        return fleet.failed_host(base, target, str(exc), started)


def roll_out(adv: Advisory, inventory_path: str, store: Any, signer: Any, *, confirmed_by: str | None = None,
             pending_only: bool = False, limit: tuple[str, ...] = (), parallel: int = 10, connect_timeout: int = 10,
             tofu: bool = False, progress: Callable[[str], None] = lambda s: None,
             apply_fn: Callable[..., list[Any]] | None = None, check_fn: Callable[..., list[Any]] | None = None,
             inventory: Any = None, host_timeout: float = 120, max_output: int = 16 * 1024 * 1024) -> RollOut:
    """Apply the advisory to hosts, verify them, store a signed "advisory" report and update the ledger.

    apply_fn / check_fn default to kijun.apply.run and kijun.fleet.check_fleet (tests pass fakes);
    inventory defaults to kijun.inventory.load(inventory_path, limit).
    """
    from kijun import inventory as inventory_mod
    from kijun.report import new_run_id

    if apply_fn is None:
        from kijun.apply import run as apply_fn  # noqa: PLW0127
    if check_fn is None:
        from kijun.fleet import check_fleet as check_fn
    actor = confirmed_by or getpass.getuser()
    inv = inventory if inventory is not None else inventory_mod.load(inventory_path, limit)
    ledger = Ledger(store)
    ledger.register(adv, inv.path, signer)
    targets = list(inv.targets)
    skipped = []
    if pending_only:
        rows = ledger.rows(adv.id, [signer.public_key()])  # a forged confirmation does not skip a host
        skipped = [t.name for t in targets if t.name in rows and rows[t.name].confirmed]
        targets = [t for t in targets if t.name not in skipped]
    result = RollOut(adv, None, None, skipped=skipped, inventory_errors=list(inv.errors))
    if not targets:
        progress("nothing to do: every selected host is already confirmed")
        return result
    run_id = new_run_id()
    result.run_id = run_id
    store.begin_run({"kind": "advisory", "run_id": run_id, "baseline": adv.baseline,
                     "inventory": {"path": inv.path, "digest": inv.digest}}, signer)
    verified: dict[str, Any] = {}
    outcomes: dict[str, Any] = {}
    try:
        names = tuple(t.name for t in targets)
        applied = apply_fn(adv.baseline, inventory_path, run_id, dry=False, limit=names, parallel=parallel,
                           tofu=tofu, progress=progress)
        for o in applied:
            t = _match(o.host, targets)
            if t is not None:
                outcomes[t.name] = o
        reachable = [t for t in targets if t.name in outcomes and outcomes[t.name].reachable]
        if reachable:
            for res in check_fn(adv.baseline, reachable, parallel=max(parallel, 1), connect_timeout=connect_timeout,
                                host_timeout=host_timeout, max_output=max_output):
                verified[res.host] = res
        for t in targets:
            if t.name not in verified:
                o = outcomes.get(t.name)
                error = o.error if o is not None and not o.reachable else "not reached by the roll-out"
                verified[t.name] = _unreachable_result(adv.baseline, t, error)
            store.add_host_result(run_id, verified[t.name], signer)
    except BaseException:
        store.finish_run(run_id, signer, complete=False)
        raise
    result.report = store.finish_run(run_id, signer, complete=True)
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
        result.rows.append(ledger.record(adv.id, t, o_state, detail, run_id, actor, now, signer=signer))
        progress(f"{t.name}: {o_state}")
    return result


# --- status --------------------------------------------------------------------------------------

def verify_ledger(store: Any, public_keys: Any) -> list[str]:
    """Ledger rows in the store that none of public_keys signed (for `kijun verify`)."""
    return Ledger(store).problems(public_keys)


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


# --- rendering -----------------------------------------------------------------------------------

def _words():
    from kijun.matrix import markdown_table, tr

    return markdown_table, tr


def _status_rows(data: dict[str, Any], lang: str) -> tuple[list[str], list[list[Any]]]:
    _, tr = _words()
    headers = [tr(w, lang) for w in ("host", "organisation", "branch", "class", "state", "confirmed_by", "updated",
                                     "run", "overdue", "detail")]
    rows = []
    for r in data["hosts"]:
        state = tr(r["state"], lang) + ("" if r["in_inventory"] else " *") + (" !" if r["tampered"] else "")
        rows.append([r["host"], r["organisation"], r["branch"], r["importance_class"], state,
                     r["confirmed_by"] or "" if r["confirmed"] else "", r["confirmed_at"] or r["updated"] or "",
                     r["run_id"] or "", tr("overdue", lang) if r["overdue"] else "", _cut(r["detail"])])
    return headers, rows


def _cut(text: str, n: int = 70) -> str:
    text = " ".join(str(text or "").split())
    return text if len(text) <= n else text[: n - 1] + "…"


def _status_header(data: dict[str, Any], lang: str) -> list[str]:
    _, tr = _words()
    adv = data["advisory"]
    s = data["summary"]
    days = data["days_left"]
    when = (f"{days} day(s) left" if days >= 0 else f"{-days} day(s) past") if lang == "en" else (
        f"残り{days}日" if days >= 0 else f"{-days}日超過")
    lines = [f"{adv['id']}: {adv['title'].get(lang, adv['title']['en'])}",
             f"{tr('deadline', lang)}: {adv['deadline']} ({when}); {adv['source'].get('document', '')}",
             f"{tr('hosts', lang)}: {s['hosts']}, {tr('applied-and-verified', lang)}: {s['confirmed']}, "
             f"{tr('pending', lang)}: {s['pending']}, {tr('failed', lang)}: {s['by_state'][FAILED]}, "
             f"{tr('overdue', lang)}: {s['overdue']}"]
    return lines


def render_status(data: dict[str, Any], fmt: str = "table", lang: str = "en") -> str:
    from tabulate import tabulate

    markdown_table, tr = _words()
    if fmt == "json":
        return json.dumps(data, ensure_ascii=False, indent=2) + "\n"
    headers, rows = _status_rows(data, lang)
    unit_headers = [tr("organisation", lang), tr("branch", lang), tr("hosts", lang), tr("applied-and-verified", lang),
                    tr("pending", lang)]
    unit_rows = [[u["organisation"], u["branch"], u["hosts"], u["confirmed"], u["outstanding"]] for u in data["units"]]
    head = _status_header(data, lang)
    if fmt == "markdown":
        out = [f"# {head[0]}", ""] + [f"- {x}" for x in head[1:]]
        out += ["", markdown_table(unit_headers, unit_rows), "", markdown_table(headers, rows)]
    elif fmt == "table":
        out = head + ["", tabulate(unit_rows, headers=unit_headers), "", tabulate(rows, headers=headers)]
    else:
        raise ValueError(f"unknown format {fmt!r} (table, json or markdown)")
    if any(not r["in_inventory"] for r in data["hosts"]):
        out.append("* " + ("not in the inventory any more" if lang == "en" else "インベントリにないホスト"))
    if data["tampered"]:
        out.append("! " + ("ledger row not signed by a trusted key (edited or forged): not counted as confirmed"
                           if lang == "en" else "台帳の行の署名が検証できない(改ざんまたは偽造): 確認済みとして数えない"))
    for err in data["inventory_errors"]:
        out.append(f"inventory: {err}")
    return "\n".join(out) + "\n"


def render_rollout(result: RollOut, fmt: str = "table", lang: str = "en") -> str:
    from tabulate import tabulate

    _, tr = _words()
    if fmt == "json":
        return json.dumps({"advisory": result.advisory.id, "run_id": result.run_id,
                           "hosts": [r.to_dict() for r in result.rows], "skipped": result.skipped,
                           "all_confirmed": result.all_confirmed}, ensure_ascii=False, indent=2) + "\n"
    rows = [[r.host, r.organisation, r.branch, tr(r.state, lang), r.confirmed_by or "", _cut(r.detail)] for r in result.rows]
    out = [f"{result.advisory.id}: run {result.run_id or '-'}"]
    if rows:
        out.append(tabulate(rows, headers=[tr(w, lang) for w in ("host", "organisation", "branch", "state",
                                                                 "confirmed_by", "detail")]))
    if result.skipped:
        out.append(f"{tr('applied-and-verified', lang)} ({len(result.skipped)}): {', '.join(result.skipped)}")
    return "\n".join(out) + "\n"


__all__ = ["Advisory", "Ledger", "LedgerRow", "RollOut", "load", "validate", "roll_out", "status", "judge",
           "transition", "render_status", "render_rollout", "json_path", "STATES"]
