"""kijun command line. Exit codes: 0 compliant / ok, 1 failures or drift, 2 usage or input error."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click

from kijun import baseline as baseline_mod
from kijun.baseline import InputError
from kijun.cli_bounds import host_bounds
from kijun.inputs import store_option

DEFAULT_BASELINE = "baselines/nisc-core.yaml"
KEY_FILE_LIMIT = 64 * 1024  # PEM keys are a few hundred bytes
LANGS = click.Choice(["ja", "en"])


def default_baseline() -> str:
    """The repository's baseline when run from a checkout, else the copy shipped in the package."""
    if Path(DEFAULT_BASELINE).exists():
        return DEFAULT_BASELINE
    from importlib import resources

    return str(resources.files("kijun.data").joinpath("nisc-core.yaml"))


def fail_input(exc: Exception) -> None:
    click.echo(f"kijun: error: {exc}", err=True)
    sys.exit(2)


class KijunGroup(click.Group):
    """Turn bad input into one line on stderr and exit 2, wherever it is detected."""

    def invoke(self, ctx):
        from kijun.signing import SignatureError, SigningError
        from kijun.store import StoreError

        try:
            return super().invoke(ctx)
        except (InputError, StoreError, SigningError, SignatureError) as exc:
            fail_input(exc)


@click.group(cls=KijunGroup)
@click.version_option(package_name="kijun")
def main() -> None:
    """kijun (基準): Japanese government security baselines for Linux fleets."""


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def validate(files: tuple[str, ...]) -> None:
    """Validate baseline files: one line per error (file:line: path: reason)."""
    from kijun.cli_reports import report_validation

    report_validation([e for f in files for e in baseline_mod.validate(f)], len(files), "baseline")


@main.command()
@click.option("--write", is_flag=True, help="Regenerate the shipped schema file.")
def schema(write: bool) -> None:
    """Print the baseline JSON Schema (generated from the control types); --write also writes the clause-map schema."""
    from kijun.clauses import clauses_schema
    from kijun.schema import baseline_schema, render

    text = render(baseline_schema())
    if write:
        schemas = Path(__file__).with_name("schemas")
        schemas.joinpath("baseline.schema.json").write_text(text, encoding="utf-8")
        schemas.joinpath("clauses.schema.json").write_text(render(clauses_schema()), encoding="utf-8")
    else:
        click.echo(text, nl=False)


def _emit(baseline, hosts, fmt: str, lang: str, report: dict | None = None) -> None:
    from kijun import render

    if fmt == "json":
        click.echo(json.dumps(report, ensure_ascii=False, indent=2))
    elif fmt == "junit":
        from kijun.junit import to_junit

        click.echo(to_junit(report))
    else:
        click.echo(render.results_table(baseline, hosts, lang))
        click.echo(render.summary_line(hosts, lang))


def exit_for(hosts) -> None:
    bad = {"fail", "error", "unreachable"}
    sys.exit(1 if any(r.status in bad for h in hosts for r in h.results) or any(not h.reachable for h in hosts) else 0)


def _signer(key_path: str | None):
    from kijun import signing
    from kijun.inputs import read_input

    path = Path(key_path).expanduser() if key_path else signing.default_key_path()
    if not path.exists():
        raise InputError(str(path), "", "no signing key: run `kijun keygen` first (or pass --key, or --no-store)")
    read_input(path, KEY_FILE_LIMIT)  # a regular, small file: a FIFO given as the key must not hang the run
    return signing.load_private(path)


key_option = click.option("--key", "key_path", default=None, envvar="KIJUN_SIGNING_KEY", help="Ed25519 signing key (PEM).")
lang_option = click.option("--lang", type=LANGS, default="en", show_default=True)
inventory_option = click.option("-i", "--inventory", required=True, type=click.Path(), help="pyinfra inventory file.")
limit_option = click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
baseline_option = click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None, help="Baseline YAML file.")


class StopOnSignal:
    """Ctrl-C / SIGTERM during a fleet check: the first stops dispatching (hosts in flight end or time
    out), a second also cuts the hosts in flight. Handlers only set flags and write to fd 2."""

    def __init__(self):
        import threading

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


@main.command()
@click.option("--local", "local", is_flag=True, help="Check this machine (read-only, no SSH).")
@click.option("-i", "--inventory", type=click.Path(), help="pyinfra inventory file to check over SSH.")
@baseline_option
@click.option("--class", "importance_class", type=click.Choice(["I", "II", "III", "IV"]), default="I",
              show_default=True, help="Importance class of this machine (with --local).")
@limit_option
@click.option("--parallel", default=32, show_default=True, help="Hosts checked at once.")
@click.option("--connect-timeout", default=10, show_default=True, help="Seconds before a host counts as unreachable.")
@host_bounds
@store_option
@key_option
@click.option("--no-store", is_flag=True, help="Do not record the run (inventory checks are stored and signed by default).")
@click.option("--waivers", type=click.Path(), default=None, help="Waiver file (justified, approved, expiring exceptions).")
@lang_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit"]), default="table", show_default=True)
def check(local, inventory, baseline_path, importance_class, limit, parallel, connect_timeout, host_timeout, max_output,
          store_url, key_path, no_store, waivers, lang, fmt) -> None:
    """Verify hosts against the baseline (read-only). Exit 0 compliant, 1 not, 2 input error, interrupted or store failure."""
    from kijun import check as check_mod
    from kijun import plan, probe
    from kijun import report as report_mod
    from kijun.model import HostTarget
    from kijun.termsafe import clean

    if local == bool(inventory):
        raise click.UsageError("give exactly one of --local or -i INVENTORY")
    base = baseline_mod.load(baseline_path or default_baseline())
    waiver_set = _load_waivers(waivers, base)
    if local:
        target = HostTarget(name=socket.gethostname(), importance_class=importance_class)
        runner = probe.make_local_runner(host_timeout, max_output)
        hosts = [check_mod.check_host(plan.plan_host(base, target), target, runner)]
        _apply_waivers(waiver_set, hosts)
        report = report_mod.build_report("check", hosts, baseline=base, inventory={"path": "local", "digest": ""})
        _emit(base, hosts, fmt, lang, report)
        exit_for(hosts)
    from kijun import fleet
    from kijun import inventory as inventory_mod

    inv = inventory_mod.load(inventory, tuple(limit))
    for target in list(inv.targets):  # kijun_vars that break a parameter's kind: that host is skipped, with its line
        try:
            plan.plan_host(base, target)
        except InputError as exc:
            inv.errors.append(exc)
            inv.targets.remove(target)
    for err in inv.errors:
        click.echo(f"kijun: error: {err}", err=True)
    if not inv.targets:  # every host was rejected: nothing to check, and no empty run to sign
        sys.exit(2)
    store = signer = run_id = None
    if not no_store:
        from kijun.store import Store

        signer = _signer(key_path)
        store = Store(store_url)
        # Runs whose process was killed: seal what they kept, but only what this key signed as it went.
        for stale in store.recover_incomplete(signer, warn=lambda line: click.echo(f"kijun: warning: {line}", err=True)):
            click.echo(f"kijun: run {stale} was interrupted; sealed as incomplete with the hosts it had checked", err=True)
        run_id = store.begin_run(
            {"kind": "check", "baseline": base, "inventory": {"path": inv.path, "digest": inv.digest}}, signer)
        click.echo(f"run {run_id}: checking {len(inv.targets)} host(s)", err=True)
    inv_ref = {"path": inv.path, "digest": inv.digest}
    keeper = _RunKeeper(store, signer, store_url, run_id, base, inv_ref)

    def done(res):
        _apply_waivers(waiver_set, [res])
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
        click.echo(clean(f"  {res.host}: {line}"), err=True)

    with StopOnSignal() as sig:
        hosts = fleet.check_fleet(base, inv.targets, parallel=parallel, connect_timeout=connect_timeout, on_result=done,
                                  host_timeout=host_timeout, max_output=max_output, stop=sig.stop, abort=sig.abort)
        report = keeper.seal(complete=not sig.stop.is_set())
    _emit(base, hosts, fmt, lang, report)
    if sig.stop.is_set():
        not_checked = sum(h.error == fleet.NOT_CHECKED for h in hosts)
        where = f"run {run_id} sealed as incomplete (interrupted)" if keeper.stored else "run interrupted"
        click.echo(f"kijun: {where}: {len(hosts) - not_checked} host(s) checked, {not_checked} not checked", err=True)
    if keeper.failure:
        click.echo(f"kijun: error: {keeper.failure}", err=True)
    if inv.errors or keeper.failure or sig.stop.is_set():
        sys.exit(2)
    exit_for(hosts)


class _RunKeeper:
    """Keeps every host result of a run: in the store, and when the store fails (disk full, database
    gone) in a spool file next to it, saying so at once with the run id. Nothing collected is lost."""

    def __init__(self, store, signer, store_url, run_id, base, inventory):
        self.store, self.signer, self.store_url, self.run_id = store, signer, store_url, run_id
        self.base, self.inventory = base, inventory
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
        from kijun import report as report_mod
        from kijun.store import StoreError

        if self.stored:
            try:
                return self.store.finish_run(self.run_id, self.signer, complete=complete)
            except StoreError as exc:
                self._fail(f"store failed sealing run {self.run_id}: {exc}")
        return report_mod.build_report("check", self.hosts, run_id=self.run_id, baseline=self.base,
                                       inventory=self.inventory, complete=complete and not self.failure)

    def _fail(self, what: str) -> None:
        self.stored = False
        self._write_spool()
        self.failure = (f"{what}; the {len(self.hosts)} host result(s) collected so far and the rest of this run "
                        f"are kept unsigned in {self.spool}" if self.spool else
                        f"{what}; could not spool the results either ({self.spool_error}): they are only in this output")
        click.echo(f"kijun: error: {self.failure}", err=True)

    def _write_spool(self) -> None:
        from kijun import report as report_mod
        from kijun import spool

        report = report_mod.build_report("check", self.hosts, run_id=self.run_id, baseline=self.base,
                                         inventory=self.inventory, complete=False)
        try:
            self.spool = spool.write(report, self.store_url, self.spool)
        except OSError as exc:
            self.spool_error = str(exc)


def _load_waivers(path, base):
    if not path:
        return None
    from kijun import waivers

    return waivers.load(path, base)


def _apply_waivers(waiver_set, hosts) -> None:
    if waiver_set is not None:
        from kijun import waivers

        waivers.apply(waiver_set, hosts)


@main.command()
@inventory_option
@baseline_option
@click.option("--dry", is_flag=True, help="Only show, per host and control, what would change (the drift).")
@limit_option
@click.option("--parallel", default=10, show_default=True, help="Hosts worked on at once.")
@click.option("--fail-percent", type=int, default=None, help="Stop when more than this percentage of hosts fail.")
@click.option("--rollback", "rollback_id", default=None, metavar="RUN_ID", help="Restore the files a previous apply replaced.")
@click.option("--trust-on-first-use", "tofu", is_flag=True, help="Accept unknown host keys (default: verify against known_hosts).")
@click.option("--verify/--no-verify", default=True, show_default=True, help="Re-check every host after applying.")
@host_bounds
@click.option("--keep-backups", type=click.IntRange(min=1), default=5, show_default=True,
              help="Backup copies kept on each host per file (they include /etc/shadow); older runs' copies are deleted.")
@store_option
@key_option
@click.option("--no-store", is_flag=True)
@lang_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def apply(inventory, baseline_path, dry, limit, parallel, fail_percent, rollback_id, tofu, verify, keep_backups,
          host_timeout, max_output, store_url, key_path, no_store, lang, fmt) -> None:
    """Apply the baseline with pyinfra (each host gets the controls of its importance class)."""
    from kijun import apply as apply_mod
    from kijun.deploy import new_run_id

    def progress(line):
        from kijun.termsafe import clean

        click.echo(clean(f"  {line}"), err=True)  # may carry a host's error text

    _refuse_invalid_hosts(inventory, tuple(limit))
    if rollback_id:
        outcomes = apply_mod.rollback(inventory, rollback_id, tuple(limit), parallel, tofu)
        _print_apply(outcomes, lang, fmt, dry=False)
        sys.exit(0 if all(o.reachable and not o.error for o in outcomes) else 1)
    base = baseline_mod.load(baseline_path or default_baseline())
    run_id = new_run_id()
    click.echo(f"run {run_id}: {'dry run' if dry else 'apply'} of {base.id} (rollback with --rollback {run_id})", err=True)
    outcomes = apply_mod.run(base, inventory, run_id, dry=dry, limit=tuple(limit), parallel=parallel,
                             fail_percent=fail_percent, tofu=tofu, progress=progress, keep_backups=keep_backups)
    _print_apply(outcomes, lang, fmt, dry)
    failed = any((not o.reachable) or o.error or o.controls("failed") for o in outcomes)
    if not dry and verify:
        from kijun import fleet
        from kijun import inventory as inventory_mod

        inv = inventory_mod.load(inventory, tuple(limit))
        reachable = {o.host for o in outcomes if o.reachable}
        targets = [t for t in inv.targets if t.name in reachable or t.ssh.get("hostname") in reachable]
        hosts = fleet.check_fleet(base, targets, parallel=max(parallel, 1), host_timeout=host_timeout,
                                  max_output=max_output)
        from kijun import render

        click.echo(render.results_table(base, hosts, lang) if fmt == "table" else "", nl=fmt == "table")
        click.echo(render.summary_line(hosts, lang), err=True)
        failed = failed or any(r.status in ("fail", "error", "unreachable") for h in hosts for r in h.results)
    sys.exit(1 if failed else 0)


def _refuse_invalid_hosts(path: str, limit: tuple[str, ...]) -> None:
    """apply changes hosts: any invalid host (no hosts, duplicate names, bad port or class) stops it before
    any host is contacted, exit 2. Unlike check it cannot leave one out: pyinfra builds every host's
    connection at start and dies on one bad port with a traceback."""
    from kijun import inventory as inventory_mod

    inv = inventory_mod.load(path, limit)
    for err in inv.errors:
        click.echo(f"kijun: error: {err}", err=True)
    if inv.errors:
        sys.exit(2)


def _print_apply(outcomes, lang, fmt, dry) -> None:
    from tabulate import tabulate

    from kijun.i18n import t
    from kijun.termsafe import clean

    if fmt == "json":
        from dataclasses import asdict

        click.echo(json.dumps([asdict(o) for o in outcomes], ensure_ascii=False, indent=2))
        return
    rows = []
    for o in outcomes:
        if not o.reachable or o.error:
            rows.append([o.host, "", t("unreachable" if not o.reachable else "error", lang), o.error])
            continue
        for op in o.ops:
            if op.status != "unchanged":
                why = f"{t(op.reason, lang)}: {op.detail}" if op.reason else op.detail
                rows.append([o.host, op.name, t(op.status, lang), why])
        if not any(op.status != "unchanged" for op in o.ops):
            rows.append([o.host, "", t("unchanged", lang), f"{len(o.ops)} item(s) in the desired state"])
    rows = [[clean(cell) for cell in row] for row in rows]  # errors and details come from the hosts
    click.echo(tabulate(rows, headers=[t("host", lang), t("control", lang), t("change", lang), t("reason", lang)]))


@main.command()
@click.option("--output", "-o", type=click.Path(), default=None, help="Private key path (default ~/.config/kijun/signing/ed25519.pem).")
def keygen(output) -> None:
    """Create the Ed25519 key that signs reports (public key written beside it as .pub)."""
    from kijun import signing

    try:
        path = signing.generate_key(output)
    except signing.SigningError as exc:
        raise InputError(str(output or signing.default_key_path()), "", str(exc)) from None
    click.echo(f"private key: {path} (keep it out of repositories and reports)")
    click.echo(f"public key:  {signing.public_path(path)}")


def _public_keys(pub_paths, key_path):
    from kijun import signing
    from kijun.inputs import read_input

    paths = list(pub_paths) or [signing.public_path(Path(key_path).expanduser() if key_path else signing.default_key_path())]
    for p in paths:
        read_input(p, KEY_FILE_LIMIT)
    try:
        return signing.load_public_keys(paths)
    except Exception as exc:
        raise InputError(str(paths[0]), "", f"cannot load public key: {exc}") from None


@main.command()
@store_option
@key_option
@click.option("--pub", "pub_paths", multiple=True, type=click.Path(), help="Trusted public key(s) (repeatable).")
@click.argument("files", nargs=-1, type=click.Path())
def verify(store_url, key_path, pub_paths, files) -> None:
    """Verify signatures and the hash chain of stored runs (or of exported report FILES)."""
    from kijun import advisory as advisory_mod
    from kijun import store as store_mod

    keys = _public_keys(pub_paths, key_path)
    bad_input: list[InputError] = []
    if files:
        problems = store_mod.verify_files(files, keys, bad_input)
    else:
        with store_mod.Store(store_url) as st:
            damage = st.integrity_problems()
            if damage:  # the rows below cannot be trusted to read back: stop at one line
                more = f" (and {len(damage) - 2} more)" if len(damage) > 2 else ""
                click.echo(f"kijun: corrupt: {st.url}: integrity check: {'; '.join(damage[:2])}{more}", err=True)
                sys.exit(1)
            problems = st.verify_chain(keys) + advisory_mod.verify_ledger(st, keys)
    for e in bad_input:  # not a report at all: an input error, named with its file
        click.echo(f"kijun: error: {e}", err=True)
    for p in problems:
        click.echo(f"kijun: tampered: {p}", err=True)
    if bad_input:
        sys.exit(2)
    if problems:
        sys.exit(1)
    click.echo("ok: every report is signed and the chain is unbroken"
               + ("" if files else "; the advisory ledger is signed"))


@main.command()
@store_option
@click.argument("runs", nargs=-1)
@lang_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def drift(store_url, runs, lang, fmt) -> None:
    """Compare the latest check run with the previous one (or two given RUN IDs). Exit 0 none, 1 new drift, 2 error."""
    from kijun import drift as drift_mod
    from kijun import store as store_mod

    with store_mod.Store(store_url) as st:
        if len(runs) == 2:
            old, new = st.get_report(runs[0]), st.get_report(runs[1])
        elif not runs:
            latest = st.latest(2, kind="check")
            if len(latest) < 2:
                raise InputError(st.url, "", "drift needs two stored check runs")
            new, old = latest[0], latest[1]
        else:
            raise click.UsageError("give no run id (latest two) or exactly two run ids")
    d = drift_mod.compare(old, new)
    from kijun.termsafe import clean

    text = drift_mod.render(d, fmt, lang)
    click.echo(text if fmt == "json" else clean(text))  # observed values come from the hosts
    sys.exit(drift_mod.exit_code(d))


@main.command()
@store_option
@click.option("--kind", default=None)
@click.option("--export", "export_dir", type=click.Path(), default=None, help="Write each report as JSON into this directory.")
def runs(store_url, kind, export_dir) -> None:
    """List stored runs (and optionally export them)."""
    from tabulate import tabulate

    from kijun import store as store_mod

    with store_mod.Store(store_url) as st:
        rows = st.runs(kind)
        if export_dir:
            Path(export_dir).mkdir(parents=True, exist_ok=True)
            for r in rows:
                if r.get("state") == "finished":  # a running run has no signed report yet
                    st.export(r["run_id"], export_dir)
    click.echo(tabulate([{k: v for k, v in r.items() if not isinstance(v, (dict, list))} for r in rows], headers="keys"))


def _add_lab() -> None:
    from kijun.lab.cli import lab_group

    main.add_command(lab_group, "lab")


_add_lab()


def _add_reports() -> None:
    from kijun.cli_reports import register

    register(main)


_add_reports()


def _add_clauses() -> None:
    from kijun.cli_clauses import register

    register(main)


_add_clauses()


if __name__ == "__main__":
    main()
