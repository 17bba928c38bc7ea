"""Commands for auditors and CISOs: matrix, inspect, advisory apply/status/validate, waivers check.

The main group adds them with `register(main)`. Conventions as in kijun.cli: --store, --key,
--lang; bad input raises InputError (one line on stderr, exit 2); exit 1 means gaps remain.
"""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import click

from kijun.cli_bounds import PARALLEL, host_bounds, tofu_option
from kijun.inputs import InputError
from kijun.inputs import store_option
from kijun.present.options import format_option, lang_option, output_option

CLASS_CHOICES = ("I", "II", "III", "IV")
INSPECT_CLASSES = ("I", "II")  # the important systems of 資料2 1.

key_option = click.option("--key", "key_path", default=None, envvar="KIJUN_SIGNING_KEY", help="Ed25519 signing key (PEM).")
baseline_option = click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None,
                               help="Baseline for titles, severities, tags and citations (default: the run's, else the shipped one).")
run_option = click.option("--run", "run_id", default=None, metavar="RUN_ID", help="Stored run (default: the latest complete check run).")


def report_validation(errors: list, n_files: int, kind: str) -> None:
    """The `validate` commands' output: one line per error on stderr and exit 2, or one ok line.
    Per file in the order given, errors in line order (an editor's order, not the JSON path's)."""
    files = list(dict.fromkeys(e.file for e in errors))
    errors = sorted(errors, key=lambda e: (files.index(e.file), e.line or 0))  # stable: same line keeps its order
    for e in errors:
        click.echo(str(e), err=True)
    if errors:
        sys.exit(2)
    click.echo(f"ok: {n_files} {kind} file(s) valid")


# What a file is, from its top-level keys: (key, kind, what it is called, the command that validates it).
FILE_KINDS = (
    ("advisory", "advisory", "an advisory", "kijun advisory validate"),
    ("waivers", "waivers", "a waiver file", "kijun waivers check"),
    ("kijun_clauses", "clauses", "a clause map", "kijun clauses --check --map"),
    ("kijun_report", "report", "a run report", "kijun verify"),
    ("controls", "baseline", "a baseline", "kijun validate"),
)
_CALLED = {"baseline": "a baseline", "advisory": "an advisory", "waivers": "a waiver file"}


def other_kind(path: str, expected: str) -> InputError | None:
    """One line saying which command validates PATH when it is not of the EXPECTED kind (a new user tries
    `kijun validate` on everything). None when it is, or when it does not even parse (the validator says why)."""
    from kijun import baseline as baseline_mod

    if path.endswith(".py"):
        return InputError(path, "", f"this is a pyinfra inventory, not {_CALLED[expected]}: use "
                                    f"`kijun params -i {path}` (loads it without connecting) or `kijun check -i`")
    try:
        data, _, _ = baseline_mod.load_yaml(path)
    except InputError:
        return None
    if not isinstance(data, dict):
        return None
    for key, kind, what, command in FILE_KINDS:
        if key in data:
            if kind == expected:
                return None
            return InputError(path, "", f"this is {what}, not {_CALLED[expected]}: use `{command} {path}`")
    return None


def _signer(key_path):
    from kijun import runs as runs_mod
    from kijun import signing

    try:
        return runs_mod.signer(key_path)
    except signing.SigningError as exc:
        raise InputError(str(key_path or signing.default_key_path()), "", str(exc)) from None


def _store(store_url, create: bool = False):
    """The result store; commands that only read it never create it (or its directory) as a side effect."""
    from kijun.store import Store

    return Store(store_url, create=create)


def resolve_baseline(report: dict, baseline_path: str | None):
    """The baseline a report is read with: -b, else the run's own file if it is still there, else the default."""
    from kijun import baseline as baseline_mod

    return baseline_mod.for_report(report, baseline_path)


def _emit(text: str, output: str | None, fmt: str = "table") -> None:
    from kijun.present.options import emit

    emit(text, output, fmt)


def _echo_host_text(text: str, fmt: str) -> None:
    """Reports carry what hosts printed: no escape sequence of theirs reaches the terminal
    (JSON escapes control characters itself and must stay byte-exact)."""
    from kijun.termsafe import clean

    click.echo(text if fmt == "json" else clean(text), nl=False)


def _split(values: tuple[str, ...]) -> tuple[str, ...]:
    """Accept repeated options and comma lists alike: --class I --class II == --class I,II."""
    return tuple(v.strip() for value in values for v in value.split(",") if v.strip())


def _classes(values: tuple[str, ...], option: str) -> tuple[str, ...]:
    classes = _split(values)
    bad = [c for c in classes if c not in CLASS_CHOICES]
    if bad:
        raise click.BadParameter(f"importance classes are I, II, III, IV (got {', '.join(bad)})", param_hint=option)
    return classes


@click.command()
@store_option
@run_option
@baseline_option
@click.option("--class", "classes", multiple=True, help="Only hosts of these importance classes (repeatable or I,II).")
@click.option("--tag", "tags", multiple=True, help="Only controls with one of these tags (repeatable).")
@click.option("--group", "groups", multiple=True, help="Only hosts in these inventory groups, branches or organisations.")
@format_option("matrix")
@click.option("--view", type=click.Choice(["hosts", "clauses", "trend"]), default="hosts", show_default=True,
              help="Which table CSV holds (other formats hold all).")
@click.option("--trend-limit", type=int, default=0, show_default=True, help="Only the last N runs in the trend (0: all).")
@output_option
@lang_option
def matrix(store_url, run_id, baseline_path, classes, tags, groups, fmt, view, trend_limit, output, lang) -> None:
    """Compliance matrix of a stored check run: hosts x controls, clauses x organisation/branch, trend."""
    from kijun import matrix as matrix_mod
    from kijun.report import utc_now

    filters = matrix_mod.Filters(_classes(classes, "--class"), _split(tags), _split(groups))
    with _store(store_url) as st:
        report = matrix_mod.pick_report(st, run_id)
        history = matrix_mod.history_for(st, report, trend_limit)
    base = resolve_baseline(report, baseline_path)
    data = matrix_mod.build(report, base, filters=filters, lang=lang, history=history, generated=utc_now())
    from kijun import present

    _emit(present.render(fmt, "matrix", data, lang, view_option=view), output, fmt)


@click.command()
@store_option
@key_option
@run_option
@baseline_option
@click.option("--class", "classes", multiple=True,
              help="Importance classes of the important systems (repeatable or I,II; default I,II).")
@click.option("--classes", "old_classes", multiple=True, hidden=True)  # the old spelling, kept for scripts
@click.option("--tag", "tags", multiple=True, default=("targeted-attack",), show_default=True,
              help="Controls inspected: those with one of these tags.")
@click.option("--no-store", is_flag=True, help="Do not store the inspection as a signed report.")
@format_option("inspect")
@output_option
@lang_option
def inspect(store_url, key_path, run_id, baseline_path, classes, old_classes, tags, no_store, fmt, output, lang) -> None:
    """Early inspection (資料2 1.): targeted-attack controls on important systems, gaps ranked for remediation.

    Stored as a signed report of kind "inspect". Exit 0 no gap, 1 gaps, 2 input error.
    """
    from kijun import runs as runs_mod

    run = runs_mod.inspect(store_url=store_url, key_path=key_path, no_store=no_store, run_id=run_id,
                           baseline_path=baseline_path, classes=_classes(classes + old_classes, "--class") or INSPECT_CLASSES, tags=_split(tags),
                           lang=lang)
    if run.stored:
        sealed = run.report
        click.echo(f"inspection stored as run {sealed['run_id']} (kind inspect, chain {sealed['chain']['sequence']})",
                   err=True)
    elif run.keeper is not None and run.keeper.failure:
        click.echo(f"kijun: error: {run.keeper.failure}", err=True)
    elif run.not_stored:
        click.echo(f"kijun: note: inspection not stored: {run.not_stored}", err=True)
    from kijun import present

    _emit(present.render(fmt, "inspect", run.data, lang), output, fmt)
    sys.exit(2 if run.keeper is not None and run.keeper.failure else 1 if run.data["gaps"] else 0)


@click.group()
def advisory() -> None:
    """Roll countermeasure information out to every host and confirm it (seed 000, 2(2))."""


@advisory.command("apply")
@click.argument("advisory_file", type=click.Path())
@click.option("-i", "--inventory", required=True, type=click.Path(), help="pyinfra inventory file (all branches).")
@click.option("--confirmed-by", default=None, help="Who confirms the roll-out (default: the OS user).")
@click.option("--pending-only", is_flag=True, help="Only hosts not yet confirmed (pending, unreachable, failed).")
@click.option("--limit", multiple=True, help="Only these hosts or groups (repeatable).")
@click.option("--parallel", type=click.IntRange(min=1), default=PARALLEL, show_default=True, help="Hosts worked on at once.")
@click.option("--connect-timeout", default=10, show_default=True, help="Seconds before a host counts as unreachable.")
@tofu_option
@host_bounds
@store_option
@key_option
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@lang_option
def advisory_apply(advisory_file, inventory, confirmed_by, pending_only, limit, parallel, connect_timeout, tofu,
                   host_timeout, max_output, store_url, key_path, fmt, lang) -> None:
    """Apply ADVISORY_FILE to every host, verify each one and record it in the ledger.

    Exit 0 when every host of this roll-out is applied and verified, 1 otherwise, 2 input error.
    """
    from kijun import advisory as advisory_mod
    from kijun import advisory_report
    from kijun import runs as runs_mod

    adv = advisory_mod.load(advisory_file)

    from kijun import cli_progress

    def progress(line):
        # on stderr, never stdout (it corrupted --format json): per host with -v, the rest always
        if line.startswith("nothing to do"):
            cli_progress.say(f"kijun: {line}")
            return
        logging.getLogger("kijun.advisory").info("%s", line)  # cleaned by the log formatter: host text
        if display is not None:
            display.line(line)

    from kijun import inventory as inventory_mod

    inv = inventory_mod.load(inventory, tuple(limit))
    if not inv.targets and inv.errors:  # not "already confirmed": nothing could be rolled out to
        for err in inv.errors[:-1]:
            click.echo(f"kijun: error: {err}", err=True)
        click.echo(f"kijun: error: {inv.errors[-1]} (no host could be rolled out to; nothing was recorded)", err=True)
        sys.exit(2)
    display = None
    with cli_progress.progress_for(len(inv.targets), lang) as display:
        result = runs_mod.roll_out(adv, inventory, store_url=store_url, key_path=key_path, confirmed_by=confirmed_by,
                                   pending_only=pending_only, limit=tuple(limit), parallel=parallel,
                                   connect_timeout=connect_timeout, tofu=tofu, progress=progress,
                                   host_timeout=host_timeout, max_output=max_output, inventory=inv)
    for err in result.inventory_errors:
        click.echo(f"kijun: error: {err}", err=True)
    _echo_host_text(advisory_report.render_rollout(result, fmt, lang), fmt)
    if result.keeper is not None and result.keeper.failure:
        click.echo(f"kijun: error: {result.keeper.failure}", err=True)
        sys.exit(2)
    if result.inventory_errors:
        sys.exit(2)
    sys.exit(0 if result.all_confirmed else 1)


@advisory.command("status")
@click.argument("advisory_id")
@click.option("-i", "--inventory", type=click.Path(), default=None,
              help="Inventory listing every host (default: the one of the last roll-out).")
@store_option
@key_option
@click.option("--pub", "pub_paths", multiple=True, type=click.Path(),
              help="Trusted public key(s) the ledger rows must be signed with (default: the --key's .pub).")
@click.option("--format", "fmt", type=click.Choice(["table", "json", "markdown"]), default="table", show_default=True)
@lang_option
def advisory_status(advisory_id, inventory, store_url, key_path, pub_paths, fmt, lang) -> None:
    """Ledger of ADVISORY_ID: every inventory host with state, deadline and overdue flag.

    Exit 0 only when every host is applied and verified (by a signed ledger row), 1 otherwise, 2 input error.
    """
    from kijun import advisory_report
    from kijun import runs as runs_mod
    from kijun.termsafe import clean

    keys = runs_mod.public_keys(pub_paths, key_path)
    with _store(store_url) as st:
        data = runs_mod.advisory_status(st, advisory_id, inventory, public_keys=keys)
    for line in data["tampered"]:
        click.echo(clean(f"kijun: tampered: {line}"), err=True)
    _echo_host_text(advisory_report.render_status(data, fmt, lang), fmt)
    sys.exit(0 if data["all_confirmed"] and not data["tampered"] else 1)


@advisory.command("validate")
@click.argument("files", nargs=-1, required=True, type=click.Path())
def advisory_validate(files) -> None:
    """Validate advisory files: one line per error (file:line: path: reason)."""
    from kijun import advisory as advisory_mod

    errors = []
    for f in files:
        wrong_kind = other_kind(f, "advisory")
        errors += [wrong_kind] if wrong_kind else advisory_mod.validate(f)
    report_validation(errors, len(files), "advisory")


@click.group()
def waivers() -> None:
    """Waivers: justified, approved, expiring exceptions."""


@waivers.command("check")
@click.argument("file", type=click.Path())
@click.option("-b", "--baseline", "baseline_path", type=click.Path(), default=None,
              help="Baseline the waived control ids must exist in (default: the shipped one).")
def waivers_check(file, baseline_path) -> None:
    """Validate a waiver file. Exit 0 ok, 1 with warnings (expired, unknown control), 2 invalid."""
    from kijun import baseline as baseline_mod
    from kijun import waivers as waivers_mod

    wrong_kind = other_kind(file, "waivers")
    if wrong_kind:
        raise wrong_kind
    base = None
    if baseline_path:
        base = baseline_mod.load(baseline_path)
    elif Path(baseline_mod.default_path()).is_file():
        base = baseline_mod.load(baseline_mod.default_path())
    errors, warnings = waivers_mod.validate(file, base)
    for e in errors:
        click.echo(str(e), err=True)
    if errors:
        sys.exit(2)
    for w in warnings:
        click.echo(f"warning: {w}", err=True)
    ws = waivers_mod.load(file, base)
    click.echo(f"ok: {len(ws.waivers)} waiver(s), {len(ws.expired())} expired" +
               (f", checked against {base.id} {base.version}" if base else ""))
    sys.exit(1 if warnings else 0)


COMMANDS = {"matrix": matrix, "inspect": inspect, "advisory": advisory, "waivers": waivers}


def register(main_group: click.Group) -> None:
    """Add matrix, inspect, advisory and waivers to the main kijun group."""
    for name, command in COMMANDS.items():
        main_group.add_command(command, name)
