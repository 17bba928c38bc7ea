"""The advisory ledger: tables beside the runs in the result store (SQLite or PostgreSQL).

One row per advisory (what was issued, the deadline, the inventory its status is judged against), one
row per advisory and host (its state), and an append-only event per roll-out outcome:

    applied-and-verified   applied and verified: confirmed (who confirmed, when, which run)
    failed                 reached, but the verification found fail/error
    unreachable            not reached: still pending
    pending                never tried (e.g. a branch host not yet in any roll-out)

Every row is signed with the roll-out's key when written (signing.sign_record). A row whose signature
does not verify (edited in the database, e.g. one UPDATE marking every host confirmed) never counts as
confirmed, is never built on by a later roll-out, and verify_ledger() names it. The ledger uses only the
store's public methods (query, transaction, add_columns), so its writes serialise with run writes.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from kijun.inputs import InputError
from kijun.report import utc_now
from kijun.signing import record_problem, sign_record

CONFIRMED, FAILED, UNREACHABLE, PENDING = "applied-and-verified", "failed", "unreachable", "pending"
STATES = (CONFIRMED, FAILED, UNREACHABLE, PENDING)


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
    """Advisory ledger tables in the result store's database (kijun.store.Store)."""

    def __init__(self, store: Any):
        self.store = store
        id_column = store.dialect.id_column
        with store.transaction():
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
                store.query(ddl)
            for table in ("kijun_advisories", "kijun_advisory_hosts", "kijun_advisory_events"):
                store.add_columns(table, (("signature", "TEXT"),))

    def _q(self, sql: str, params: tuple = ()) -> Any:
        return self.store.query(sql, params)

    def register(self, adv: Any, inventory_path: str, signer: Any) -> None:
        """Record (or update) the advisory (kijun.advisory.Advisory) and the inventory its status is judged
        against, signed."""
        now = utc_now()
        with self.store.transaction():
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
        with self.store.transaction():
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


def verify_ledger(store: Any, public_keys: Any) -> list[str]:
    """Ledger rows in the store that none of public_keys signed (for `kijun verify`)."""
    return Ledger(store).problems(public_keys)
