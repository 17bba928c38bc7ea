"""kijun command line. Exit codes: 0 compliant / ok, 1 failures or drift, 2 usage or input error."""

from __future__ import annotations

import sys
from pathlib import Path

import click

from kijun import baseline as baseline_mod
from kijun.cli_bounds import PARALLEL, host_bounds, tofu_option
from kijun.inputs import InputError, store_option
from kijun.present.options import emit, format_option, lang_option, output_option

DEFAULT_BASELINE = baseline_mod.DEFAULT_PATH
KEY_FILE_LIMIT = 64 * 1024  # PEM keys are a few hundred bytes


def default_baseline() -> str:
    """The repository's baseline when run from a checkout, else the copy shipped in the package."""
    return baseline_mod.default_path()


def fail_input(exc: Exception) -> None:
    click.echo(f"kijun: error: {exc}", err=True)
    sys.exit(2)


class KijunGroup(click.Group):
    """Turn bad input into one line on stderr and exit 2, wherever it is detected; kijun.toml as defaults."""

    def make_context(self, info_name, args, parent=None, **extra):
        if parent is None and "default_map" not in extra:  # the top group: read kijun.toml once
            from kijun import config

            try:
                path = config.find()
                if path is not None:
                    extra["default_map"] = config.default_map(self, config.load(path))
            except InputError as exc:
                fail_input(exc)
        return super().make_context(info_name, args, parent, **extra)

    def invoke(self, ctx):
        from kijun.signing import SignatureError, SigningError
        from kijun.store import StoreError

        try:
            return super().invoke(ctx)
        except (InputError, StoreError, SigningError, SignatureError) as exc:
            fail_input(exc)
        except click.ClickException as exc:
            wrapped = getattr(exc, "exception", None)  # pyinfra's UnexpectedExternalError: its show() prints a traceback
            if not isinstance(wrapped, BaseException):
                raise
            from kijun.inventory import load_error

            fail_input(load_error(str(getattr(exc, "filename", "") or "pyinfra"), exc))


@click.group(cls=KijunGroup)
@click.version_option(package_name="kijun")
@click.option("-v", "--verbose", count=True, help="More on stderr: -v each host's start and end, -vv debug "
                                                    "(pyinfra's and paramiko's own lines too).")
@click.option("-q", "--quiet", count=True, help="Errors only on stderr, no progress line.")
@click.pass_context
def main(ctx, verbose: int, quiet: int) -> None:
    """kijun (基準): Japanese government security baselines for Linux fleets.

    Options can be set in kijun.toml (see docs/configuration.md): flag > environment > file > default."""
    from kijun.cli_progress import setup_logging

    ctx.obj = {"verbosity": verbose - quiet}
    setup_logging(verbose - quiet)


def _progress(total: int, lang: str):
    from kijun.cli_progress import progress_for

    return progress_for(total, lang)


def _say(line: str) -> None:
    from kijun.cli_progress import say

    say(line)


@main.command()
@click.argument("files", nargs=-1, required=True, type=click.Path())
def validate(files: tuple[str, ...]) -> None:
    """Validate baseline files: one line per error (file:line: path: reason), in line order.
    An advisory, waiver file, clause map, report or inventory is named, with the command that validates it."""
    from kijun.cli_reports import other_kind, report_validation

    errors = []
    for f in files:
        wrong_kind = other_kind(f, "baseline")
        errors += [wrong_kind] if wrong_kind else baseline_mod.validate(f)
    report_validation(errors, len(files), "baseline")


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


def _show(report: dict, fmt: str, lang: str, output: str | None, baseline=None, notes: tuple[str, ...] = ()) -> None:
    """The one way a run's report reaches the operator: the output class of --format."""
    from kijun import present

    emit(present.render(fmt, "run", report, lang, baseline=baseline, notes=notes), output, fmt)


def exit_for(hosts) -> None:
    from kijun.model import BAD_STATUSES

    sys.exit(1 if any(r.status in BAD_STATUSES for h in hosts for r in h.results) or any(not h.reachable for h in hosts) else 0)


def _signer(key_path: str | None):
    from kijun import runs as runs_mod

    return runs_mod.signer(key_path)


key_option = click.option("--key", "key_path", default=None, envvar="KIJUN_SIGNING_KEY", help="Ed25519 signing key (PEM).")
inventory_option = click.option("-i", "--inventory", required=True, type=click.Path(), help="pyinfra inventory file.")
limit_option = click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
baseline_option = click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None, help="Baseline YAML file.")


@main.command()
@click.option("--local", "local", is_flag=True, help="Check this machine (read-only, no SSH).")
@click.option("-i", "--inventory", type=click.Path(), help="pyinfra inventory file to check over SSH.")
@baseline_option
@click.option("--class", "importance_class", type=click.Choice(["I", "II", "III", "IV"]), default=None,
              help="Importance class of this machine (with --local; default I, the strictest, and the output says so).")
@limit_option
@click.option("--parallel", type=click.IntRange(min=1), default=PARALLEL, show_default=True, help="Hosts checked at once.")
@click.option("--connect-timeout", default=10, show_default=True, help="Seconds before a host counts as unreachable.")
@tofu_option
@host_bounds
@store_option
@key_option
@click.option("--no-store", is_flag=True, help="Do not record the run (checks are stored and signed by default; --local ones once a signing key exists).")
@click.option("--waivers", type=click.Path(), default=None, help="Waiver file (justified, approved, expiring exceptions).")
@lang_option
@format_option("run", "check")
@output_option
def check(local, inventory, baseline_path, importance_class, limit, parallel, connect_timeout, tofu, host_timeout,
          max_output, store_url, key_path, no_store, waivers, lang, fmt, output) -> None:
    """Verify hosts against the baseline (read-only). Exit 0 compliant, 1 not, 2 input error, interrupted or store failure."""
    from kijun import runs as runs_mod

    if local and _from_config("inventory"):  # kijun.toml's inventory is for fleet checks
        inventory = None
    if local == bool(inventory):
        raise click.UsageError("give exactly one of --local or -i INVENTORY")
    base = baseline_mod.load(baseline_path or default_baseline())
    waiver_set = runs_mod.load_waivers(waivers, base)
    if local:
        from kijun.i18n import t

        notes = () if importance_class else (t("class-defaulted", lang).format(cls="I"),)
        # Stored and signed as a fleet check is, once a signing key exists; before `kijun keygen` the first
        # check of a new machine still runs, and says it was not kept. A store or key asked for must work.
        asked = bool(store_url or key_path)
        if not no_store and not asked and not runs_mod.key_file(None).exists():
            no_store = True
            _say(f"kijun: {t('local-not-stored', lang)}")
        run = runs_mod.check_local(base, importance_class or "I", host_timeout=host_timeout, max_output=max_output,
                                   store_url=store_url, key_path=key_path, no_store=no_store, waiver_set=waiver_set,
                                   say=_say)
        if run.keeper.stored:
            _say(t('local-stored', lang).format(run_id=run.keeper.run_id))
        _show(run.report, fmt, lang, output, base, notes)
        if run.keeper.failure:
            click.echo(f"kijun: error: {run.keeper.failure}", err=True)
        if run.keeper.failure or run.interrupted:
            sys.exit(2)
        exit_for(run.hosts)

    inv = runs_mod.load_fleet(base, inventory, tuple(limit))
    if tofu:  # as apply does: unknown host keys are accepted (and remembered), changed ones still refused
        for target in inv.targets:
            target.ssh["strict"] = "accept-new"
    if not inv.targets:  # every host was rejected: nothing to check, and no empty run to sign
        if len(inv.errors) == 1:  # bad input stays one line
            click.echo(f"kijun: error: {inv.errors[0]} (no host could be checked; no run was stored)", err=True)
        else:
            for err in inv.errors:
                click.echo(f"kijun: error: {err}", err=True)
            click.echo(f"kijun: error: {inventory}: no host could be checked: all {len(inv.errors)} hosts were "
                       "rejected; no run was stored", err=True)
        sys.exit(2)
    for err in inv.errors:
        click.echo(f"kijun: error: {err}", err=True)
    with _progress(len(inv.targets), lang) as progress:
        run = runs_mod.check(base, inv, tuple(limit), parallel=parallel, connect_timeout=connect_timeout,
                             host_timeout=host_timeout, max_output=max_output, store_url=store_url, key_path=key_path,
                             no_store=no_store, waiver_set=waiver_set, say=_say, on_host=progress.host)
    hosts, keeper = run.hosts, run.keeper
    _show(run.report, fmt, lang, output, base)
    if run.interrupted:
        not_checked = run.not_checked
        where = f"run {keeper.run_id} sealed as incomplete (interrupted)" if keeper.stored else "run interrupted"
        click.echo(f"kijun: {where}: {len(hosts) - not_checked} host(s) checked, {not_checked} not checked", err=True)
    if keeper.failure:
        click.echo(f"kijun: error: {keeper.failure}", err=True)
    if inv.errors or keeper.failure or run.interrupted:
        sys.exit(2)
    exit_for(hosts)


def _from_config(param: str) -> bool:
    from click.core import ParameterSource

    return click.get_current_context().get_parameter_source(param) is ParameterSource.DEFAULT_MAP


@main.command()
@inventory_option
@baseline_option
@click.option("--dry", is_flag=True, help="Only show, per host and control, what would change (the drift).")
@limit_option
@click.option("--parallel", type=click.IntRange(min=1), default=PARALLEL, show_default=True, help="Hosts worked on at once.")
@click.option("--fail-percent", type=int, default=None, help="Stop when more than this percentage of hosts fail.")
@click.option("--rollback", "rollback_id", default=None, metavar="RUN_ID", help="Restore the files a previous apply replaced.")
@tofu_option
@click.option("--verify/--no-verify", default=True, show_default=True, help="Re-check every host after applying.")
@host_bounds
@click.option("--keep-backups", type=click.IntRange(min=1), default=5, show_default=True,
              help="Backup copies kept on each host per file (they include /etc/shadow); older runs' copies are deleted.")
@store_option
@key_option
@click.option("--no-store", is_flag=True, help="Do not record the run (apply, dry runs and rollbacks are stored and signed by default).")
@lang_option
@format_option("run", "apply")
@output_option
def apply(inventory, baseline_path, dry, limit, parallel, fail_percent, rollback_id, tofu, verify, keep_backups,
          host_timeout, max_output, store_url, key_path, no_store, lang, fmt, output) -> None:
    """Apply the baseline with pyinfra (each host gets the controls of its importance class).
    Every apply, dry run and rollback is stored and signed like a check (kind apply / dry-run / rollback)."""
    from kijun import runs as runs_mod

    def progress(line):
        import logging

        logging.getLogger("kijun.apply").info("%s", line)  # per host: shown with -v (cleaned: host text)
        if display is not None:
            display.line(line)

    inv = _refuse_invalid_hosts(inventory, tuple(limit))
    store_args = {"store_url": store_url, "key_path": key_path, "no_store": no_store}
    if rollback_id:
        run = runs_mod.rollback(inv, rollback_id, tuple(limit), parallel=parallel, tofu=tofu, **store_args)
        _show(run.report, fmt, lang, output)
        _stored_line(run)
        sys.exit(2 if run.keeper.failure else 0 if all(o.reachable and not o.error for o in run.outcomes) else 1)
    base = baseline_mod.load(baseline_path or default_baseline())
    display = None
    with _progress(len(inv.targets), lang) as display:
        run = runs_mod.apply(base, inv, tuple(limit), dry=dry, parallel=parallel, fail_percent=fail_percent,
                             tofu=tofu, verify=verify, keep_backups=keep_backups, host_timeout=host_timeout,
                             max_output=max_output, progress=progress, say=_say, **store_args)
    _show(run.report, fmt, lang, output, base)
    _stored_line(run)
    sys.exit(2 if run.keeper.failure else 1 if run.failed else 0)


def _stored_line(run) -> None:
    if run.keeper.failure:
        click.echo(f"kijun: error: {run.keeper.failure}", err=True)
    elif run.keeper.stored:
        click.echo(f"run {run.run_id}: {run.kind} report stored and signed", err=True)


def _refuse_invalid_hosts(path: str, limit: tuple[str, ...]):
    """apply changes hosts: any invalid host stops it before any host is contacted, exit 2 (runs.refuse_invalid_hosts)."""
    from kijun import runs as runs_mod

    inv, errors = runs_mod.refuse_invalid_hosts(path, limit)
    for err in errors:
        click.echo(f"kijun: error: {err}", err=True)
    if errors:
        sys.exit(2)
    return inv


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
    from kijun import runs as runs_mod

    return runs_mod.public_keys(pub_paths, key_path)


@main.command()
@store_option
@key_option
@click.option("--pub", "pub_paths", multiple=True, type=click.Path(), help="Trusted public key(s) (repeatable).")
@click.argument("files", nargs=-1, type=click.Path())
def verify(store_url, key_path, pub_paths, files) -> None:
    """Verify signatures and the hash chain of stored runs (or of exported report FILES)."""
    from kijun import runs as runs_mod
    from kijun import store as store_mod

    keys = _public_keys(pub_paths, key_path)
    bad_input: list[InputError] = []
    if files:
        problems = store_mod.verify_files(files, keys, bad_input)
    else:
        with store_mod.Store(store_url, create=False) as st:
            damage = st.integrity_problems()
            if damage:  # the rows below cannot be trusted to read back: stop at one line
                more = f" (and {len(damage) - 2} more)" if len(damage) > 2 else ""
                click.echo(f"kijun: corrupt: {st.url}: integrity check: {'; '.join(damage[:2])}{more}", err=True)
                sys.exit(1)
            problems = runs_mod.verify_store(st, keys)
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
@click.option("--since", "since_kind", type=click.Choice(["check", "dry-run", "apply"]), default="check",
              show_default=True, help="Compare the latest check with the run of this kind before it (same inventory and scope).")
@click.option("-i", "--inventory", default=None, help="The latest check of this inventory (path as given to check).")
@lang_option
@format_option("drift")
@output_option
def drift(store_url, runs, since_kind, inventory, lang, fmt, output) -> None:
    """Compare the latest check run with the previous one of the same inventory and scope (or two given
    RUN IDs; a dry run as the older one is read as a prediction). Exit 0 none, 1 new drift, 2 error."""
    from kijun import drift as drift_mod
    from kijun import store as store_mod

    with store_mod.Store(store_url, create=False) as st:
        if len(runs) == 2:
            old, new = st.get_report(runs[0]), st.get_report(runs[1])
            if drift_mod.fleet_key(old) != drift_mod.fleet_key(new):
                click.echo(f"kijun: note: runs {runs[0]} and {runs[1]} cover different inventories or scopes", err=True)
        elif not runs:
            latest = [r for r in st.latest(10**6 if inventory else 1, kind="check")
                      if inventory is None or (r.get("inventory") or {}).get("path") == inventory][:1]
            old = st.previous_of_fleet(latest[0], since_kind) if latest else None
            if old is None:
                what = f" of inventory {inventory}" if inventory else ""
                raise InputError(st.url, "", f"drift needs a stored check run{what} and an earlier {since_kind} run "
                                             "of the same inventory and scope")
            new = latest[0]
        else:
            raise click.UsageError("give no run id (latest two) or exactly two run ids")
    d = drift_mod.compare(old, new)
    from kijun import present

    emit(present.render(fmt, "drift", d, lang), output, fmt)  # observed values come from the hosts: cleaned
    sys.exit(drift_mod.exit_code(d))


@main.command()
@store_option
@click.option("--kind", default=None)
@click.option("--export", "export_dir", type=click.Path(), default=None, help="Write each report as JSON into this directory.")
def runs(store_url, kind, export_dir) -> None:
    """List stored runs (and optionally export them)."""
    from tabulate import tabulate

    from kijun import store as store_mod

    with store_mod.Store(store_url, create=False) as st:
        rows = st.runs(kind)
        if not rows:  # say so: an empty line reads like a broken command
            click.echo(f"kijun: no {kind + ' ' if kind else ''}runs stored in {st.url}", err=True)
            return
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
