"""What every run shares: the signing key, opening a run, keeping its host results (store or spool),
sealing it, stopping on a signal. Each run kind (kijun.runs.checking, .change, .rollout, .inspection)
opens its run with open_run() and ends with RunKeeper.seal(): one signed, chained report.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path

from kijun.inputs import InputError

KEY_FILE_LIMIT = 64 * 1024  # PEM keys are a few hundred bytes
Say = Callable[[str], None]


def _stderr(line: str) -> None:
    import click

    click.echo(line, err=True)


def key_file(key_path: str | None) -> Path:
    from kijun import signing

    return Path(key_path).expanduser() if key_path else signing.default_key_path()


def signer(key_path: str | None):
    """The Ed25519 private key that signs runs (--key, KIJUN_SIGNING_KEY, else the default path)."""
    from kijun import signing
    from kijun.inputs import read_input

    path = key_file(key_path)
    if not path.exists():
        raise InputError(str(path), "", "no signing key: run `kijun keygen` first (or pass --key, or --no-store)")
    read_input(path, KEY_FILE_LIMIT)  # a regular, small file: a FIFO given as the key must not hang the run
    return signing.load_private(path)  # SigningError names the file


def public_keys(pub_paths, key_path: str | None):
    """Trusted public keys: --pub files, else the .pub beside the signing key."""
    from kijun import signing
    from kijun.inputs import read_input

    paths = list(pub_paths) or [signing.public_path(key_file(key_path))]
    for p in paths:
        read_input(p, KEY_FILE_LIMIT)
    try:
        return signing.load_public_keys(paths)
    except Exception as exc:
        raise InputError(str(paths[0]), "", f"cannot load public key: {exc}") from None


def verify_store(store, public_keys) -> list[str]:
    """What none of public_keys signed: stored reports and chain links of every run kind, and rows of the
    advisory ledger; [] when everything verifies (for `kijun verify`)."""
    from kijun.store_ledger import verify_ledger

    return store.verify_chain(public_keys) + verify_ledger(store, public_keys)


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


def open_run(kind: str, base, inventory: dict | None, scope: dict | None, *, store_url, key_path, no_store: bool,
             run_id: str | None = None, say: Say = _stderr, store=None, sign_key=None) -> RunKeeper:
    """Start a run: recover runs whose process was killed, record this one as running (signed).
    A run that already opened the store and loaded the key (to read before it runs) passes them in."""
    if no_store:
        store = sign_key = None
    else:
        from kijun.store import Store

        sign_key = sign_key or signer(key_path)
        store = store or Store(store_url)
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


class sealed_on_error:
    """An error inside a run (bad --limit, pyinfra failing at start, a crash or Ctrl-C halfway): the opened
    run is sealed as incomplete at once, with the hosts it has, instead of waiting, running, for the next
    run to recover it."""

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
