"""The result store: runs and host results in SQLite (default) or PostgreSQL, plus the report chain.

Every finished run's signed report is stored with a sequence number and the digest of the report
before it (chain). Host results are committed one by one, so a run killed halfway keeps the hosts
it finished; recover_incomplete() later seals such runs as complete=false reports.

A run's opening record and each host result are signed as they are written (signing.sign_record),
and sealing keeps only rows signed by the sealing key: whoever can write the store but lacks the
key cannot get a fabricated run or host result signed into the chain. What sealing leaves out is
kept in kijun_rejected, and verify_chain names it.
"""

from __future__ import annotations

import datetime as dt
import json
import os
import socket
import sqlite3
import stat
import sys
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from kijun.inputs import PASSWORD_FILE_ENV, InputError, url_has_password  # noqa: F401 (re-exported)
from kijun.inputs import redact_url as _redact
from kijun.report import (
    KINDS, build_report, digest, dumps, full_bytes, host_dict, host_errors, load_report, report_errors, utc_now,
    new_run_id,
)
from kijun.signing import (
    PublicKeys, SignatureError, key_id, record_problem, sign, sign_record, verify_signature,
)

DEFAULT_STORE_PATH = Path("~/.local/share/kijun/results.db")
STORE_ENV = "KIJUN_STORE"  # the store URL when none is given (same variable as the CLI's --store)
BUSY_TIMEOUT_S = 30.0
STALE_AFTER_S = 6 * 3600  # a run with no host result for this long is abandoned

RUNNING, FINISHED, REJECTED = "running", "finished", "rejected"  # rejected: not ours, never sealed
RUN_RECORD, HOST_RECORD = "run", "host-result"  # signing.sign_record kinds of the rows below


class StoreError(Exception):
    """The store cannot do what was asked. str() is one line."""


class ForeignRunError(StoreError):
    """A run in the store was not opened with the sealing key: it is set aside, never signed."""


@dataclass(frozen=True)
class _Dialect:
    name: str
    id_column: str
    begin_exclusive: tuple[str, ...]  # statements that start a transaction serialising chain writers

    def sql(self, text: str) -> str:
        return text if self.name == "sqlite" else text.replace("?", "%s")


SQLITE = _Dialect("sqlite", "INTEGER PRIMARY KEY AUTOINCREMENT", ("BEGIN IMMEDIATE",))
POSTGRES = _Dialect(
    "postgresql",
    "BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY",
    # An advisory lock, not LOCK TABLE: it also serialises the first CREATE TABLEs of concurrent writers.
    ("BEGIN", "SELECT pg_advisory_xact_lock(4242161)"),
)


def _ddl(d: _Dialect) -> list[str]:
    return [
        """CREATE TABLE IF NOT EXISTS kijun_runs (
            run_id TEXT PRIMARY KEY,
            kind TEXT NOT NULL,
            started TEXT NOT NULL,
            state TEXT NOT NULL,
            owner TEXT NOT NULL,
            updated TEXT NOT NULL,
            meta TEXT NOT NULL,
            finished TEXT,
            complete INTEGER NOT NULL DEFAULT 0,
            sequence BIGINT UNIQUE,
            digest TEXT,
            summary TEXT,
            report TEXT
        )""",
        f"""CREATE TABLE IF NOT EXISTS kijun_host_results (
            id {d.id_column},
            run_id TEXT NOT NULL REFERENCES kijun_runs(run_id),
            host TEXT NOT NULL,
            result TEXT NOT NULL,
            UNIQUE (run_id, host)
        )""",
        "CREATE INDEX IF NOT EXISTS kijun_runs_kind ON kijun_runs(kind, sequence)",
        # Rows sealing left out because the sealing key did not sign them (host '' : the run itself).
        f"""CREATE TABLE IF NOT EXISTS kijun_rejected (
            id {d.id_column},
            run_id TEXT NOT NULL,
            host TEXT NOT NULL,
            reason TEXT NOT NULL,
            result TEXT,
            at TEXT NOT NULL
        )""",
    ]


# Columns added after the first release: stores made before get them on opening.
_ADDED_COLUMNS = {"kijun_runs": (("signature", "TEXT"),),
                  "kijun_host_results": (("idx", "INTEGER"), ("signature", "TEXT"))}


def _run_fields(run_id: str, kind: str, started: str, meta_text: str) -> dict[str, Any]:
    return {"run_id": run_id, "kind": kind, "started": started, "meta": meta_text}


def _host_fields(run_id: str, idx: Any, result_text: str) -> dict[str, Any]:
    return {"run_id": run_id, "index": idx, "result": result_text}


def _owner() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def _owner_gone(owner: str, updated: str, stale_after: float) -> bool:
    host, _, pid = owner.rpartition(":")
    if host == socket.gethostname() and pid.isdigit():
        try:
            os.kill(int(pid), 0)
        except ProcessLookupError:
            return True
        except PermissionError:  # alive, owned by another user
            pass
    # Other machines' processes cannot be asked, and a pid may be reused: long silence also counts.
    try:
        age = dt.datetime.now(dt.timezone.utc) - dt.datetime.fromisoformat(str(updated).replace("Z", "+00:00"))
    except (ValueError, TypeError):  # not a time kijun wrote: nothing live vouches for the run
        return True
    return age.total_seconds() > stale_after


PG_LIVENESS = {"connect_timeout": 15, "keepalives": 1, "keepalives_idle": 30, "keepalives_interval": 10,
               "keepalives_count": 3}


def _password_from_file() -> str | None:
    """The store password from KIJUN_STORE_PASSWORD_FILE (never from the command line: `ps` shows it)."""
    path = os.environ.get(PASSWORD_FILE_ENV)
    if not path:
        return None
    from kijun.inputs import decode_utf8, read_input

    try:
        text = decode_utf8(read_input(path, limit=4096), path)
    except InputError as exc:
        raise StoreError(str(exc)) from None
    _warn_if_shared(path, "password file")
    return text.rstrip("\r\n")


def _warn_if_shared(path: str, what: str) -> None:
    """One warning line when others may read a file that holds host facts or a password."""
    try:
        mode = os.stat(path).st_mode
    except OSError:
        return
    if stat.S_ISREG(mode) and mode & 0o077:
        print(f"kijun: warning: {path}: {what} is readable by others (mode {stat.S_IMODE(mode):04o}): "
              f"chmod 600 {path}", file=sys.stderr)


def _sqlite_path(url: str) -> str:
    # sqlite:///relative.db and sqlite:////absolute.db, as in SQLAlchemy; or a plain path.
    path = url[len("sqlite:///"):] if url.startswith("sqlite:///") else url
    return path if path == ":memory:" else str(Path(path).expanduser())


class Store:
    def __init__(self, url: str | Path | None = None, *, timeout: float = BUSY_TIMEOUT_S, create: bool = True):
        """create=False (commands that only read): a SQLite store that does not exist is an error, not a new file."""
        url = str(url or os.environ.get(STORE_ENV) or DEFAULT_STORE_PATH.expanduser())
        self.url = _redact(url)  # for messages; a password never reaches a log
        self._lock = threading.RLock()  # one connection; runners may report hosts from threads
        self._errors: tuple[type[Exception], ...] = (sqlite3.Error,)
        if url.startswith(("postgresql://", "postgres://")):
            self.dialect = POSTGRES
            self._conn = self._connect_postgres(url)
            import psycopg  # type: ignore[import-not-found]

            self._errors = (psycopg.Error,)
        elif "://" in url and not url.startswith("sqlite:///"):
            raise StoreError(f"{_redact(url)}: unsupported store URL (use a path, sqlite:///path or postgresql://...)")
        else:
            self.dialect = SQLITE
            path = _sqlite_path(url)
            if not create and path != ":memory:" and not os.path.lexists(path):
                raise StoreError(f"no store at {path}: nothing has been recorded there (a check, apply or advisory "
                                 "run creates it; or give --store / KIJUN_STORE)")
            self._conn = self._connect_sqlite(path, timeout)
        self._check_tables()
        try:
            with self._transaction():
                for statement in _ddl(self.dialect):
                    self._q(statement)
                for table, columns in _ADDED_COLUMNS.items():
                    self.add_columns(table, columns)
        except StoreError as exc:
            self._conn.close()
            if ": store is corrupted: " in str(exc):  # already says where and what
                raise
            reason = str(exc).split(": ", 1)[-1]
            raise StoreError(f"{self.url}: not a usable kijun store: {reason}") from None

    @staticmethod
    def _connect_sqlite(path: str, timeout: float) -> sqlite3.Connection:
        if path != ":memory:":
            from kijun.inputs import file_kind

            p = Path(path)
            try:
                mode = p.stat().st_mode
            except FileNotFoundError:
                mode = None
            except OSError as exc:
                raise StoreError(f"{path}: cannot open store: {exc.strerror}") from None
            if mode is not None and not stat.S_ISREG(mode):  # a FIFO or device would block or never end
                raise StoreError(f"{path}: cannot open store: not a regular file ({file_kind(mode)})")
            p.parent.mkdir(parents=True, exist_ok=True)
            if mode is None:  # host facts are not for everyone's eyes
                os.close(os.open(p, os.O_CREAT | os.O_WRONLY, 0o600))
            _warn_if_shared(path, "store")
        try:
            conn = sqlite3.connect(path, timeout=timeout, isolation_level=None, check_same_thread=False)
            conn.execute(f"PRAGMA busy_timeout = {int(timeout * 1000)}")
            conn.execute("PRAGMA journal_mode = WAL")
            conn.execute("PRAGMA foreign_keys = ON")
            tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot open store: {exc}") from None
        if tables and not any(t.startswith("kijun_") for t in tables):  # never write into another program's data
            conn.close()
            raise StoreError(f"{path}: not a kijun store (it holds table(s) {', '.join(sorted(tables)[:5])}): "
                             "give the path of a kijun store or of a new file")
        return conn

    def _check_tables(self) -> None:
        """A kijun_* table of another shape (an old or foreign schema) is one clear line, not an SQL error later."""
        if self.dialect is not SQLITE:
            return
        wanted = {"kijun_runs": ("run_id", "kind", "state", "owner", "updated", "meta", "sequence", "digest", "report"),
                  "kijun_host_results": ("run_id", "host", "result")}
        for table, columns in wanted.items():
            have = {r[1] for r in self._q(f"PRAGMA table_info({table})")}
            missing = [c for c in columns if c not in have]
            if have and missing:
                raise StoreError(f"{self.url}: {table}: not a kijun store: table {table} has no column(s) "
                                 f"{', '.join(missing)}")

    @staticmethod
    def _connect_postgres(url: str) -> Any:
        try:
            import psycopg  # type: ignore[import-not-found]
        except ImportError:
            raise StoreError("a postgresql:// store needs psycopg: pip install 'kijun[postgres]'") from None
        password = None
        try:
            # A server or link that dies mid-query must end in an error, not a run that waits forever:
            # keepalives find a dead peer; the URL's own settings win over these defaults.
            given = psycopg.conninfo.conninfo_to_dict(url)
            extra = {k: v for k, v in PG_LIVENESS.items() if k not in given}
            password = _password_from_file()
            if password is not None:
                extra["password"] = password
            return psycopg.connect(url, autocommit=True, **extra)
        except psycopg.Error as exc:
            text = " ".join(str(exc).split())
            for secret in filter(None, (urlsplit(url).password, password)):
                text = text.replace(secret, "***")
            raise StoreError(f"{_redact(url)}: cannot open store: {_redact(text)}") from None

    def close(self) -> None:
        self._conn.close()

    def __enter__(self) -> Store:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()

    # --- low level -------------------------------------------------------------------------------

    def _q(self, sql: str, params: tuple = ()) -> list[tuple]:
        """Run one statement and return all its rows (fetched under the lock, so threads can share)."""
        with self._lock:
            try:
                cursor = self._conn.execute(self.dialect.sql(sql), params)
                return cursor.fetchall() if cursor.description else []
            except self._errors as exc:
                text = " ".join(str(exc).split())
                if text in ("database disk image is malformed", "file is not a database"):
                    raise StoreError(f"{_redact(self.url)}: store is corrupted: {text} "
                                     "(restore it from a backup)") from None
                raise StoreError(f"{_redact(self.url)}: {text}") from None

    def _loads(self, text: str, run_id: str, what: str) -> Any:
        """A JSON column read back; an edited or corrupted row is one line naming the run, not a traceback."""
        try:
            data = json.loads(text)
        except (TypeError, ValueError):
            data = None
        if not isinstance(data, dict):
            raise StoreError(f"{self.url}: run {run_id}: stored {what} is not a JSON object (edited or corrupted; "
                             "run `kijun verify`)")
        return data

    def _transaction(self) -> _Transaction:
        return _Transaction(self)

    # --- for tables kept beside the runs (kijun.store_ledger) -----------------------------------

    def query(self, sql: str, params: tuple = ()) -> list[tuple]:
        """One statement (`?` placeholders, either dialect) and all its rows; errors are StoreError."""
        return self._q(sql, params)

    def transaction(self) -> _Transaction:
        """An exclusive write transaction: `with store.transaction(): ...` commits or rolls back."""
        return _Transaction(self)

    def add_columns(self, table: str, columns: Iterable[tuple[str, str]]) -> None:
        """Add columns a table made by an older kijun lacks (inside a write transaction)."""
        if self.dialect is POSTGRES:
            for name, kind in columns:
                self._q(f"ALTER TABLE {table} ADD COLUMN IF NOT EXISTS {name} {kind}")
            return
        have = {row[1] for row in self._q(f"PRAGMA table_info({table})")}
        for name, kind in columns:
            if name not in have:
                self._q(f"ALTER TABLE {table} ADD COLUMN {name} {kind}")

    def integrity_problems(self) -> list[str]:
        """The database's own consistency check: [] when sound (SQLite PRAGMA integrity_check).

        PostgreSQL checksums its pages itself (and reports damage on read), so there is nothing to run.
        """
        if self.dialect is POSTGRES:
            return []
        try:
            rows = self._q("PRAGMA integrity_check")
        except StoreError as exc:  # damage bad enough that the check itself stops
            return [str(exc).removeprefix(f"{self.url}: ")]
        if [r[0] for r in rows] == ["ok"]:
            return []
        lines = [" ".join(line.split()) for r in rows for line in str(r[0]).splitlines()]
        return [line for line in lines if line and not line.startswith("***")] or ["integrity check failed"]

    def _run_row(self, run_id: str) -> tuple:
        rows = self._q("SELECT state, meta, started, kind FROM kijun_runs WHERE run_id = ?", (run_id,))
        if not rows:
            raise StoreError(f"unknown run {run_id}")
        return rows[0]

    # --- writing a run ---------------------------------------------------------------------------

    def begin_run(self, meta: dict[str, Any], signer: Ed25519PrivateKey) -> str:
        """Record a new, running run, signed. meta: kind, and optionally baseline, inventory, run_id, started."""
        kind = meta.get("kind")
        if kind not in KINDS:
            raise StoreError(f"unknown run kind {kind!r} (one of {', '.join(KINDS)})")
        run_id = meta.get("run_id") or new_run_id()
        started = meta.get("started") or utc_now()
        stored_meta = {k: meta.get(k) for k in ("baseline", "inventory", "version", "scope")}
        # Normalise now so a bad baseline/inventory fails at the start of a run, not at its end.
        probe = build_report(kind, [], run_id=run_id, started=started, baseline=stored_meta["baseline"],
                             inventory=stored_meta["inventory"], version=stored_meta["version"],
                             scope=stored_meta["scope"])
        errors = report_errors(probe, "run meta")
        if errors:
            raise StoreError(str(errors[0]))
        stored_meta.update(baseline=probe["baseline"], inventory=probe["inventory"], version=probe["tool"]["version"],
                           scope=probe.get("scope"))
        meta_text = json.dumps(stored_meta)
        signature = sign_record(RUN_RECORD, _run_fields(run_id, kind, started, meta_text), signer)
        with self._transaction():
            self._q(
                "INSERT INTO kijun_runs (run_id, kind, started, state, owner, updated, meta, signature) "
                "VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                (run_id, kind, started, RUNNING, _owner(), utc_now(), meta_text, signature),
            )
        return run_id

    def add_host_result(self, run_id: str, host_result: Any, signer: Ed25519PrivateKey) -> None:
        """Store one host's result, signed, committed at once (a later crash keeps it).

        The signature covers the run id, the result and its index (the order hosts were written in; a
        host written again keeps its index), so a row cannot move to another run and a removed one leaves
        a gap.
        """
        host = host_dict(host_result)
        problems = host_errors(host)
        if problems:
            raise StoreError(f"run {run_id}: host result {host.get('host', '?')}: {problems[0]}")
        text = full_bytes(host).decode("utf-8")
        with self._transaction():
            if self._run_row(run_id)[0] != RUNNING:
                raise StoreError(f"run {run_id} is already finished")
            found = self._q("SELECT idx FROM kijun_host_results WHERE run_id = ? AND host = ?", (run_id, host["host"]))
            if found and isinstance(found[0][0], int):
                idx = found[0][0]
            else:
                idx = self._q("SELECT COALESCE(MAX(idx), -1) + 1 FROM kijun_host_results WHERE run_id = ?",
                              (run_id,))[0][0]
            signature = sign_record(HOST_RECORD, _host_fields(run_id, idx, text), signer)
            self._q("UPDATE kijun_runs SET updated = ? WHERE run_id = ?", (utc_now(), run_id))
            self._q(
                "INSERT INTO kijun_host_results (run_id, host, result, idx, signature) VALUES (?, ?, ?, ?, ?) "
                "ON CONFLICT (run_id, host) DO UPDATE SET result = excluded.result, idx = excluded.idx, "
                "signature = excluded.signature",
                (run_id, host["host"], text, idx, signature),
            )

    def finish_run(self, run_id: str, signer: Ed25519PrivateKey, complete: bool = True) -> dict[str, Any]:
        """Seal a run: assemble, chain, sign and store its report; return the signed report."""
        return self._finish(run_id, signer, complete, finished=utc_now())

    def _finish(self, run_id: str, signer: Ed25519PrivateKey, complete: bool, finished: str | None) -> dict[str, Any]:
        # One exclusive transaction from reading the chain head to writing the new one: two
        # writers can never both take the same sequence number or the same previous digest.
        ours = {key_id(signer.public_key()): signer.public_key()}
        with self._transaction():
            state, meta_text, started, kind = self._run_row(run_id)
            if state != RUNNING:
                raise StoreError(f"run {run_id} is already finished")
            signature = self._q("SELECT signature FROM kijun_runs WHERE run_id = ?", (run_id,))[0][0]
            problem = record_problem(RUN_RECORD, _run_fields(run_id, kind, started, meta_text), signature, ours)
            if problem is None:
                signed = self._seal(run_id, signer, ours, complete, finished, kind, started, self._loads(meta_text, run_id, "meta"))
            else:  # never sign what this controller did not open: set it aside (committed, then raised)
                self._q("UPDATE kijun_runs SET state = ?, updated = ? WHERE run_id = ?", (REJECTED, utc_now(), run_id))
                self._reject(run_id, "", f"run record {problem}", None)
        if problem is not None:
            raise ForeignRunError(f"run {run_id}: not produced by this controller (run record {problem}); "
                                  "left out of the chain")
        return signed

    def _seal(self, run_id: str, signer: Ed25519PrivateKey, ours: PublicKeys, complete: bool, finished: str | None,
              kind: str, started: str, meta: dict[str, Any]) -> dict[str, Any]:
        hosts, left_out = self._own_hosts(run_id, ours)
        complete = complete and not left_out  # a host result of ours edited or removed: the run is not whole
        report = build_report(kind, hosts, run_id=run_id, started=started, finished=finished,
                              complete=complete, baseline=meta.get("baseline"),
                              inventory=meta.get("inventory"), version=meta.get("version"),
                              scope=meta.get("scope"))
        head = self.head()
        sequence, previous = (head[0] + 1, head[1]) if head else (1, None)
        report["chain"] = {"sequence": sequence, "previous": previous}
        signed = sign(report, signer)
        # Hosts were validated one by one on the way in; check the envelope (cheap under the lock).
        errors = report_errors({**signed, "hosts": []}, f"run {run_id}")
        if errors:  # a bug, not user input: never store a report that would not load back
            raise StoreError(str(errors[0]))
        self._q(
            "UPDATE kijun_runs SET state = ?, finished = ?, complete = ?, sequence = ?, digest = ?, "
            "summary = ?, report = ?, updated = ? WHERE run_id = ?",
            (FINISHED, finished, int(complete), sequence, digest(signed), json.dumps(signed["summary"]),
             full_bytes(signed).decode("utf-8"), utc_now(), run_id),
        )
        return signed

    def _reject(self, run_id: str, host: str, reason: str, result: str | None) -> None:
        self._q("INSERT INTO kijun_rejected (run_id, host, reason, result, at) VALUES (?, ?, ?, ?, ?)",
                (run_id, host, reason, result, utc_now()))

    def _own_hosts(self, run_id: str, ours: PublicKeys) -> tuple[list[dict[str, Any]], list[str]]:
        """The run's host results signed by `ours`; the others move to kijun_rejected (their names returned)."""
        hosts: list[dict[str, Any]] = []
        left_out: list[str] = []
        seen: set[int] = set()
        last = -1
        for host, idx, text, signature in self._q(
                "SELECT host, idx, result, signature FROM kijun_host_results WHERE run_id = ? ORDER BY host", (run_id,)):
            problem = record_problem(HOST_RECORD, _host_fields(run_id, idx, text), signature, ours)
            if problem is None:
                result = json.loads(text)
                if result.get("host") != host:
                    problem = f"filed under host {host!r} but is the result of {result.get('host')!r}"
                elif idx in seen:
                    problem = f"index {idx} used twice (copied row)"
            if isinstance(idx, int) and not isinstance(idx, bool):
                seen.add(idx)
            if problem is not None:
                self._reject(run_id, host, f"host result {problem}", text)
                self._q("DELETE FROM kijun_host_results WHERE run_id = ? AND host = ?", (run_id, host))
                left_out.append(host)
                continue
            hosts.append(result)
            last = max(last, idx)
        # Indices run 0..n-1 in writing order: a hole below our last row is a host result removed from
        # the store. Walk the holes, not the range: a planted index of 10**15 must not cost memory.
        below = sorted(i for i in seen if i <= last)
        for lo, hi in zip([-1] + below, below):
            if hi > lo + 1:
                where = f"#{lo + 1}" if hi == lo + 2 else f"#{lo + 1}-{hi - 1}"
                self._reject(run_id, where, "host result removed from the store", None)
                left_out.append(where)
        return hosts, left_out

    def recover_incomplete(self, signer: Ed25519PrivateKey, stale_after: float = STALE_AFTER_S,
                           warn: Callable[[str], None] | None = None) -> list[str]:
        """Seal runs whose writer died as complete=false reports; return their run ids.

        A writer is gone when its pid no longer exists on this machine, or when its run has had
        no new host result for more than stale_after seconds (other machines, reused pids).
        Only what `signer` signed is sealed: a run it did not open is set aside (warn gets one line),
        and host results it did not write are left out (kijun_rejected; verify_chain names them).
        """
        rows = self._q("SELECT run_id, owner, updated FROM kijun_runs WHERE state = ? ORDER BY run_id", (RUNNING,))
        recovered = []
        for run_id, owner, updated in rows:
            if _owner_gone(owner, updated, stale_after):
                try:
                    self._finish(run_id, signer, complete=False, finished=None)
                except ForeignRunError as exc:
                    if warn:
                        warn(str(exc))
                    continue
                except StoreError:  # sealed meanwhile by another recoverer
                    continue
                recovered.append(run_id)
                for r in self.rejected(run_id):
                    if warn:
                        warn(_rejected_line(r))
        return recovered

    def rejected(self, run_id: str | None = None) -> list[dict[str, Any]]:
        """What sealing left out because the sealing key had not signed it (host '': the whole run)."""
        sql = "SELECT run_id, host, reason, at FROM kijun_rejected"
        params: tuple = ()
        if run_id:
            sql += " WHERE run_id = ?"
            params = (run_id,)
        return [dict(zip(("run_id", "host", "reason", "at"), r)) for r in self._q(sql + " ORDER BY id", params)]

    # --- reading ---------------------------------------------------------------------------------

    def runs(self, kind: str | None = None) -> list[dict[str, Any]]:
        """One summary per run in chain order; unsealed (running) runs last, with sequence None."""
        sql = ("SELECT run_id, kind, started, finished, state, complete, sequence, summary, "
               "(SELECT COUNT(*) FROM kijun_host_results h WHERE h.run_id = r.run_id) FROM kijun_runs r")
        params: tuple = ()
        if kind:
            sql += " WHERE kind = ?"
            params = (kind,)
        out = []
        for run_id, k, started, finished, state, complete, sequence, summary_text, n_hosts in self._q(
                sql + " ORDER BY sequence IS NULL, sequence, started, run_id", params):
            summary = self._loads(summary_text, run_id, "summary") if summary_text else None
            if summary is not None and not isinstance(summary.get("by_status") if isinstance(summary, dict) else None, dict):
                raise StoreError(f"{self.url}: run {run_id}: stored summary is malformed (edited or corrupted; "
                                 "run `kijun verify`)")
            out.append({
                "run_id": run_id, "kind": k, "started": started, "finished": finished, "state": state,
                "complete": bool(complete), "sequence": sequence, "hosts": n_hosts,
                "by_status": summary["by_status"] if summary else None,
            })
        return out

    def host_results(self, run_id: str) -> list[dict[str, Any]]:
        self._run_row(run_id)
        return [self._loads(r[0], run_id, "host result") for r in self._q(
            "SELECT result FROM kijun_host_results WHERE run_id = ? ORDER BY host", (run_id,))]

    def get_report(self, run_id: str) -> dict[str, Any]:
        state = self._run_row(run_id)[0]
        if state != FINISHED:
            raise StoreError(f"run {run_id} is not finished (still running, or recover it)")
        text = self._q("SELECT report FROM kijun_runs WHERE run_id = ?", (run_id,))[0][0]
        return self._loads(text, run_id, "report")

    def latest(self, n: int = 2, kind: str | None = "check", complete_only: bool = True) -> list[dict[str, Any]]:
        """The last n sealed reports, newest first (so `new, old = store.latest()`)."""
        sql = "SELECT report FROM kijun_runs WHERE sequence IS NOT NULL"
        params: list[Any] = []
        if kind:
            sql += " AND kind = ?"
            params.append(kind)
        if complete_only:
            sql += " AND complete = 1"
        sql += " ORDER BY sequence DESC LIMIT ?"
        params.append(n)
        rows = self._q(sql.replace("SELECT report", "SELECT report, run_id"), tuple(params))
        return [self._loads(r[0], r[1], "report") for r in rows]

    def pick(self, run_id: str | None = None, kind: str = "check") -> dict[str, Any]:
        """The given run's report, or the latest complete run of kind (what reports are read from)."""
        if run_id:
            return self.get_report(run_id)
        latest = self.latest(1, kind=kind, complete_only=True)
        if not latest:
            raise InputError(self.url, "", f"no complete {kind} run stored yet (run `kijun check -i INVENTORY` first)")
        return latest[0]

    def previous_of_fleet(self, report: dict[str, Any], kind: str = "check") -> dict[str, Any] | None:
        """The newest complete sealed run of `kind` before `report` that covered the same inventory and
        scope (drift.fleet_key): a store shared by two fleets never pairs one fleet's run with the other's."""
        from kijun.drift import fleet_key

        want = fleet_key(report)
        seq = (report.get("chain") or {}).get("sequence")
        for run_id, meta_text in self._q(
                "SELECT run_id, meta FROM kijun_runs WHERE sequence IS NOT NULL AND complete = 1 AND kind = ? "
                "AND sequence < ? ORDER BY sequence DESC", (kind, seq if isinstance(seq, int) else 2**62)):
            meta = self._loads(meta_text, run_id, "meta")
            if isinstance(meta, dict) and fleet_key(meta) == want:
                return self.get_report(run_id)
        return None

    def head(self) -> tuple[int, str] | None:
        """(sequence, digest) of the newest sealed report: record it elsewhere to detect truncation."""
        rows = self._q("SELECT sequence, digest FROM kijun_runs WHERE sequence IS NOT NULL "
                       "ORDER BY sequence DESC LIMIT 1")
        return (rows[0][0], rows[0][1]) if rows else None

    def export(self, run_id: str, path: str | Path) -> Path:
        path = Path(path)
        if path.is_dir():
            path = path / f"{run_id}.json"
        path.write_text(dumps(self.get_report(run_id)), encoding="utf-8")
        return path

    def verify_chain(self, public_keys: PublicKeys) -> list[str]:
        """Problems in the stored chain, each naming a run; [] when every report is intact and linked."""
        entries = []
        sealed: dict[str, dict[str, Any]] = {}
        for run_id, sequence, stored_digest, text in self._q(
                "SELECT run_id, sequence, digest, report FROM kijun_runs WHERE sequence IS NOT NULL "
                "ORDER BY sequence"):
            try:
                report = json.loads(text)
            except (TypeError, ValueError):
                entries.append(ChainEntry(f"run {run_id}", None, sequence, stored_digest, "stored report is not valid JSON"))
                continue
            problem = None
            if report.get("run_id") != run_id:
                problem = f"stored report belongs to run {report.get('run_id')} (swapped)"
            entries.append(ChainEntry(f"run {run_id}", report, sequence, stored_digest, problem))
            sealed[run_id] = report
        return (check_chain(entries, public_keys) + self._host_row_problems(sealed, public_keys)
                + self._unsealed_problems(public_keys))

    def _host_row_problems(self, sealed: dict[str, dict[str, Any]], public_keys: PublicKeys) -> list[str]:
        """Host rows of sealed runs that are not in the signed report (added or edited after sealing)."""
        signed: dict[str, set[str] | None] = {}  # None: the report itself is bad (the chain check names it)
        problems = []
        for run_id, host, text in self._q(
                "SELECT h.run_id, h.host, h.result FROM kijun_host_results h JOIN kijun_runs r ON r.run_id = h.run_id "
                "WHERE r.state = ? ORDER BY h.run_id, h.host", (FINISHED,)):
            if run_id not in signed:
                signed[run_id] = _signed_hosts(sealed.get(run_id), public_keys)
            if signed[run_id] is not None and text not in signed[run_id]:
                problems.append(f"run {run_id}: host {host}: stored host result is not the one in its signed report "
                                "(added or edited after sealing)")
        return problems

    def _unsealed_problems(self, public_keys: PublicKeys) -> list[str]:
        """Rows outside the chain that kijun did not write: set aside at sealing, or in runs still open."""
        problems = [_rejected_line(r) for r in self.rejected()]
        for run_id, kind, started, meta_text, signature in self._q(
                "SELECT run_id, kind, started, meta, signature FROM kijun_runs WHERE state = ? ORDER BY run_id",
                (RUNNING,)):
            problem = record_problem(RUN_RECORD, _run_fields(run_id, kind, started, meta_text), signature, public_keys)
            if problem:
                problems.append(f"run {run_id} (unsealed): run record {problem}: not produced by kijun")
            for host, idx, text, sig in self._q("SELECT host, idx, result, signature FROM kijun_host_results "
                                                "WHERE run_id = ? ORDER BY host", (run_id,)):
                problem = record_problem(HOST_RECORD, _host_fields(run_id, idx, text), sig, public_keys)
                if problem:
                    problems.append(
                        f"run {run_id} (unsealed): host {host}: host result {problem}: not produced by kijun")
        return problems


def _rejected_line(r: dict[str, Any]) -> str:
    """One line for a kijun_rejected row: the whole run (host ''), a hole in the indices ('#N'), or a host."""
    if not r["host"]:
        return f"run {r['run_id']}: not produced by this controller ({r['reason']}); left out of the chain"
    if r["host"].startswith("#"):
        return f"run {r['run_id']}: {r['reason']} (index {r['host'][1:]}); sealed as incomplete"
    return (f"run {r['run_id']}: host {r['host']}: not produced by this controller ({r['reason']}); "
            "left out of its signed report")


def _signed_hosts(report: Any, public_keys: PublicKeys) -> set[str] | None:
    """The canonical host results of a report whose signature holds; None for a bad report."""
    if not isinstance(report, dict) or not isinstance(report.get("hosts"), list):
        return None
    try:
        verify_signature(report, public_keys)
    except SignatureError:
        return None
    return {full_bytes(h).decode("utf-8") for h in report["hosts"] if isinstance(h, dict)}


class _Transaction:
    """An exclusive write transaction (serialises writers across processes, and threads via the lock)."""

    def __init__(self, store: Store):
        self.store = store

    def __enter__(self) -> None:
        self.store._lock.acquire()
        try:
            for statement in self.store.dialect.begin_exclusive:
                self.store._q(statement)
        except Exception:
            self.store._lock.release()
            raise

    def __exit__(self, exc_type: Any, *exc: Any) -> None:
        try:
            if exc_type is None:
                try:
                    self.store._q("COMMIT")
                    return
                except StoreError:
                    self._rollback()
                    raise
            self._rollback()
        finally:
            self.store._lock.release()

    def _rollback(self) -> None:
        try:
            self.store._q("ROLLBACK")
        except StoreError:  # nothing to roll back; keep the original error
            pass


# --- chain verification (shared by the store and exported files) --------------------------------

@dataclass
class ChainEntry:
    label: str  # "run <id>" or "<file> (run <id>)": what a problem message names
    report: dict[str, Any] | None
    position: int | None  # where it is kept (store sequence column); None: take the signed one
    stored_digest: str | None = None
    problem: str | None = None  # found while loading


def _sequence(report: dict[str, Any]) -> int | None:
    chain = report.get("chain")
    seq = chain.get("sequence") if isinstance(chain, dict) else None
    return seq if isinstance(seq, int) else None


def check_chain(entries: list[ChainEntry], public_keys: PublicKeys) -> list[str]:
    """Signature, stored digest, position and link of each entry (entries in kept order)."""
    problems: list[str] = []
    by_signed_seq: dict[int, ChainEntry] = {}
    for e in entries:
        if e.report is not None and _sequence(e.report) is not None:
            by_signed_seq.setdefault(_sequence(e.report), e)
    prev_pos: int | None = None
    prev_label = ""
    for e in entries:
        if e.problem:
            problems.append(f"{e.label}: {e.problem}")
        pos = e.position if e.position is not None else (_sequence(e.report) if e.report else None)
        if e.report is not None:
            problems += _check_entry(e, pos, by_signed_seq, public_keys)
        # Gaps and duplicates by kept position: a removed report leaves a hole here.
        if pos is not None:
            if prev_pos is None and pos != 1:
                problems.append(f"{e.label}: chain starts at sequence {pos}: report(s) 1..{pos - 1} missing (removed)")
            elif prev_pos is not None and pos == prev_pos:
                problems.append(f"{e.label}: sequence {pos} used twice (also {prev_label}): forked chain")
            elif prev_pos is not None and pos != prev_pos + 1:
                problems.append(f"{e.label}: sequence {pos} follows {prev_pos}: report(s) "
                                f"{prev_pos + 1}..{pos - 1} missing (removed)")
            prev_pos, prev_label = pos, e.label
    return problems


def _check_entry(e: ChainEntry, pos: int | None, by_signed_seq: dict[int, ChainEntry],
                 public_keys: PublicKeys) -> list[str]:
    assert e.report is not None
    problems = []
    try:
        verify_signature(e.report, public_keys)
    except SignatureError as exc:
        problems.append(f"{e.label}: {exc} (edited or forged)")
    if e.stored_digest is not None and e.stored_digest != digest(e.report):
        problems.append(f"{e.label}: report does not match its stored digest (edited)")
    signed_seq = _sequence(e.report)
    if signed_seq is None:
        return problems + [f"{e.label}: report has no chain sequence"]
    if pos != signed_seq:
        problems.append(f"{e.label}: kept at sequence {pos} but signed as sequence {signed_seq} (reordered)")
    # The link follows the signed sequence, so one misplaced report is not blamed on its neighbours.
    previous = e.report["chain"].get("previous")
    if signed_seq == 1:
        if previous is not None:
            problems.append(f"{e.label}: first report names a previous report (chain cut at the start)")
        return problems
    before = by_signed_seq.get(signed_seq - 1)
    if before is not None and before.report is not None and previous != digest(before.report):
        problems.append(f"{e.label}: previous digest does not match {before.label} "
                        "(that report was edited, replaced or re-signed)")
    return problems


def verify_files(paths: Iterable[str | Path], public_keys: PublicKeys,
                 bad_input: list[InputError] | None = None) -> list[str]:
    """Verify exported report files (files or directories of *.json) as one chain, naming files.

    Files that are no report at all (unreadable, not JSON, wrong schema) go to bad_input when it is
    given, else into the problems; a directory without reports is such a problem too."""
    files: list[Path] = []
    problems: list[str] = []
    unreadable: list[InputError] = []
    for p in paths:
        p = Path(p)
        found = sorted(p.glob("*.json")) if p.is_dir() else [p]
        if not found:
            unreadable.append(InputError(str(p), "", "no report files (*.json) in this directory: nothing to verify"))
        files += found
    entries: list[ChainEntry] = []
    for f in files:
        try:
            report = load_report(f)
        except InputError as exc:
            unreadable.append(exc)
            continue
        entries.append(ChainEntry(f"{f} (run {report['run_id']})", report, None))
    entries.sort(key=lambda e: (_sequence(e.report) or 0, e.label))
    if bad_input is None:
        problems += [str(e) for e in unreadable]
    else:
        bad_input += unreadable
    return problems + check_chain(entries, public_keys)
