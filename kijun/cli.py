"""kijun command line. Exit codes: 0 compliant / ok, 1 failures or drift, 2 usage or input error."""

from __future__ import annotations

import json
import socket
import sys
from pathlib import Path

import click

from kijun import baseline as baseline_mod
from kijun.baseline import InputError

DEFAULT_BASELINE = "baselines/nisc-core.yaml"
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

    path = Path(key_path).expanduser() if key_path else signing.default_key_path()
    if not path.exists():
        raise InputError(str(path), "", "no signing key: run `kijun keygen` first (or pass --key, or --no-store)")
    return signing.load_private(path)


store_option = click.option("--store", "store_url", default=None, envvar="KIJUN_STORE",
                            help="Result store: a path, sqlite:///path or postgresql://… (default ~/.local/share/kijun/results.db).")
key_option = click.option("--key", "key_path", default=None, envvar="KIJUN_SIGNING_KEY", help="Ed25519 signing key (PEM).")
lang_option = click.option("--lang", type=LANGS, default="en", show_default=True)
inventory_option = click.option("-i", "--inventory", required=True, type=click.Path(), help="pyinfra inventory file.")
limit_option = click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
baseline_option = click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None, help="Baseline YAML file.")


@main.command()
@click.option("--local", "local", is_flag=True, help="Check this machine (read-only, no SSH).")
@click.option("-i", "--inventory", type=click.Path(), help="pyinfra inventory file to check over SSH.")
@baseline_option
@click.option("--class", "importance_class", type=click.Choice(["I", "II", "III", "IV"]), default="I",
              show_default=True, help="Importance class of this machine (with --local).")
@limit_option
@click.option("--parallel", default=32, show_default=True, help="Hosts checked at once.")
@click.option("--connect-timeout", default=10, show_default=True, help="Seconds before a host counts as unreachable.")
@store_option
@key_option
@click.option("--no-store", is_flag=True, help="Do not record the run (inventory checks are stored and signed by default).")
@click.option("--waivers", type=click.Path(), default=None, help="Waiver file (justified, approved, expiring exceptions).")
@lang_option
@click.option("--format", "fmt", type=click.Choice(["table", "json", "junit"]), default="table", show_default=True)
def check(local, inventory, baseline_path, importance_class, limit, parallel, connect_timeout, store_url, key_path,
          no_store, waivers, lang, fmt) -> None:
    """Verify hosts against the baseline (read-only). Exit 0 compliant, 1 not, 2 input error."""
    from kijun import check as check_mod
    from kijun import plan, probe
    from kijun import report as report_mod
    from kijun.model import HostTarget

    if local == bool(inventory):
        raise click.UsageError("give exactly one of --local or -i INVENTORY")
    base = baseline_mod.load(baseline_path or default_baseline())
    waiver_set = _load_waivers(waivers, base)
    if local:
        target = HostTarget(name=socket.gethostname(), importance_class=importance_class)
        hosts = [check_mod.check_host(plan.plan_host(base, target), target, probe.local_runner)]
        _apply_waivers(waiver_set, hosts)
        report = report_mod.build_report("check", hosts, baseline=base, inventory={"path": "local", "digest": ""})
        _emit(base, hosts, fmt, lang, report)
        exit_for(hosts)
    from kijun import fleet
    from kijun import inventory as inventory_mod

    inv = inventory_mod.load(inventory, tuple(limit))
    for err in inv.errors:
        click.echo(f"kijun: error: {err}", err=True)
    store = signer = run_id = None
    if not no_store:
        from kijun.store import Store

        signer = _signer(key_path)
        store = Store(store_url)
        for stale in store.recover_incomplete(signer):  # runs whose process was killed: seal what they kept
            click.echo(f"kijun: run {stale} was interrupted; sealed as incomplete with the hosts it had checked", err=True)
        run_id = store.begin_run({"kind": "check", "baseline": base, "inventory": {"path": inv.path, "digest": inv.digest}})
        click.echo(f"run {run_id}: checking {len(inv.targets)} host(s)", err=True)

    def done(res):
        _apply_waivers(waiver_set, [res])
        if store is not None:
            store.add_host_result(run_id, res)
        bad = sum(r.status in ("fail", "error") for r in res.results)
        click.echo(f"  {res.host}: {'unreachable: ' + res.error if not res.reachable else f'{bad} failing control(s)'}", err=True)

    try:
        hosts = fleet.check_fleet(base, inv.targets, parallel=parallel, connect_timeout=connect_timeout, on_result=done)
    except KeyboardInterrupt:
        if store is not None:
            store.finish_run(run_id, signer, complete=False)
            click.echo(f"kijun: interrupted: run {run_id} kept as incomplete with the hosts already checked", err=True)
        sys.exit(2)
    if store is not None:
        report = store.finish_run(run_id, signer, complete=True)
    else:
        report = report_mod.build_report("check", hosts, baseline=base, inventory={"path": inv.path, "digest": inv.digest})
    _emit(base, hosts, fmt, lang, report)
    if inv.errors:
        sys.exit(2)
    exit_for(hosts)


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
@store_option
@key_option
@click.option("--no-store", is_flag=True)
@lang_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
def apply(inventory, baseline_path, dry, limit, parallel, fail_percent, rollback_id, tofu, verify, store_url, key_path,
          no_store, lang, fmt) -> None:
    """Apply the baseline with pyinfra (each host gets the controls of its importance class)."""
    from kijun import apply as apply_mod
    from kijun.deploy import new_run_id

    def progress(line):
        click.echo(f"  {line}", err=True)

    if rollback_id:
        outcomes = apply_mod.rollback(inventory, rollback_id, tuple(limit), parallel, tofu)
        _print_apply(outcomes, lang, fmt, dry=False)
        sys.exit(0 if all(o.reachable and not o.error for o in outcomes) else 1)
    base = baseline_mod.load(baseline_path or default_baseline())
    run_id = new_run_id()
    click.echo(f"run {run_id}: {'dry run' if dry else 'apply'} of {base.id} (rollback with --rollback {run_id})", err=True)
    outcomes = apply_mod.run(base, inventory, run_id, dry=dry, limit=tuple(limit), parallel=parallel,
                             fail_percent=fail_percent, tofu=tofu, progress=progress)
    _print_apply(outcomes, lang, fmt, dry)
    failed = any((not o.reachable) or o.error or o.controls("failed") for o in outcomes)
    if not dry and verify:
        from kijun import fleet
        from kijun import inventory as inventory_mod

        inv = inventory_mod.load(inventory, tuple(limit))
        reachable = {o.host for o in outcomes if o.reachable}
        targets = [t for t in inv.targets if t.name in reachable or t.ssh.get("hostname") in reachable]
        hosts = fleet.check_fleet(base, targets, parallel=max(parallel, 1))
        from kijun import render

        click.echo(render.results_table(base, hosts, lang) if fmt == "table" else "", nl=fmt == "table")
        click.echo(render.summary_line(hosts, lang), err=True)
        failed = failed or any(r.status in ("fail", "error", "unreachable") for h in hosts for r in h.results)
    sys.exit(1 if failed else 0)


def _print_apply(outcomes, lang, fmt, dry) -> None:
    from tabulate import tabulate

    from kijun.i18n import t

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
                rows.append([o.host, op.name, t(op.status, lang), op.detail])
        if not any(op.status != "unchanged" for op in o.ops):
            rows.append([o.host, "", t("unchanged", lang), f"{len(o.ops)} item(s) in the desired state"])
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

    paths = list(pub_paths) or [signing.public_path(Path(key_path).expanduser() if key_path else signing.default_key_path())]
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
    from kijun import store as store_mod

    keys = _public_keys(pub_paths, key_path)
    if files:
        problems = store_mod.verify_files(files, keys)
    else:
        with store_mod.Store(store_url) as st:
            problems = st.verify_chain(keys)
    for p in problems:
        click.echo(f"kijun: tampered: {p}", err=True)
    if problems:
        sys.exit(1)
    click.echo("ok: every report is signed and the chain is unbroken")


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
    click.echo(drift_mod.render(d, fmt, lang))
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
