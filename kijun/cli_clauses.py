"""`kijun clauses` (the clause map with each clause's status and, for a stored run, its compliance)
and `kijun params` (each baseline variable: value per class, where the number comes from, and an
inventory's overrides). Conventions as in kijun.cli: bad input is one line on stderr and exit 2.
"""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import click

from kijun.cli_reports import _emit, _store, baseline_option, lang_option, output_option, store_option
from kijun.inputs import InputError

DEFAULT_MAP = "baselines/clauses/nisc.yaml"


def default_map() -> str:
    if Path(DEFAULT_MAP).exists():
        return DEFAULT_MAP
    from importlib import resources

    return str(resources.files("kijun.data").joinpath("nisc-clauses.yaml"))


def default_seeds() -> Path | None:
    """The seed texts beside the checkout (../shared/seeds), as CI has them; KIJUN_SEEDS overrides."""
    env = os.environ.get("KIJUN_SEEDS")
    if env:
        return Path(env)
    for root in (Path.cwd(), Path(__file__).resolve().parents[1]):
        guess = root.parent / "shared" / "seeds"
        if guess.is_dir():
            return guess
    return None


@click.command()
@click.option("--map", "map_path", type=click.Path(), default=None, help="Clause map YAML (default: baselines/clauses/nisc.yaml).")
@baseline_option
@click.option("--run", "run_id", default=None, metavar="RUN_ID|latest",
              help="Add the compliance of this stored run (or of the latest complete check run).")
@store_option
@click.option("--status", "statuses", multiple=True,
              type=click.Choice(["automated", "partial", "manual", "procedural", "background"]), help="Only these statuses.")
@click.option("--check", "check_only", is_flag=True,
              help="Only cross-check the map, the baseline and the seed texts (--seeds); exit 1 on any disagreement.")
@click.option("--seeds", type=click.Path(file_okay=False), default=None, help="Seed text directory (default ../shared/seeds).")
@click.option("--format", "fmt", type=click.Choice(["table", "markdown", "json"]), default="table", show_default=True)
@output_option
@lang_option
def clauses(map_path, baseline_path, run_id, store_url, statuses, check_only, seeds, fmt, output, lang) -> None:
    """Seed clauses with their status (automated/partial/manual/procedural/background) and implementing controls."""
    from kijun import baseline as baseline_mod
    from kijun import clauses as clauses_mod

    cmap = clauses_mod.load(map_path or default_map())
    base = baseline_mod.load(baseline_path or baseline_mod.default_path())
    if check_only:
        seed_dir = Path(seeds) if seeds else default_seeds()
        if seed_dir is not None and not seed_dir.is_dir():
            raise InputError(str(seed_dir), "", "seed directory not found")
        problems = clauses_mod.cross_check(cmap, base, seed_dir)
        for p in problems:
            click.echo(p, err=True)
        if problems:
            sys.exit(1)
        quotes = f"quotes checked against {seed_dir}" if seed_dir else "quotes NOT checked (no seed directory)"
        click.echo(f"ok: {len(cmap.clauses)} clauses agree with {base.id} {base.version}; {quotes}")
        return
    if fmt == "markdown":
        _emit(clauses_mod.render_markdown(cmap, base), output)
        return
    report = None
    if run_id:
        from kijun.matrix import pick_report

        with _store(store_url) as st:
            report = pick_report(st, None if run_id == "latest" else run_id)
    rows = clauses_mod.rollup(cmap, base, report)
    if statuses:
        rows = [r for r in rows if r["status"] in statuses]
    if fmt == "json":
        data = {"clause_map": cmap.id, "baseline": {"id": base.id, "version": base.version},
                "run_id": report["run_id"] if report else None, "clauses": rows}
        _emit(json.dumps(data, ensure_ascii=False, indent=2) + "\n", output)
    else:
        _emit(clauses_mod.render_table(rows, lang, report["run_id"] if report else None) + "\n", output)


@click.command()
@baseline_option
@click.option("-i", "--inventory", type=click.Path(), default=None, help="Also list each host's overrides (kijun_vars).")
@click.option("--format", "fmt", type=click.Choice(["table", "json"]), default="table", show_default=True)
@lang_option
def params(baseline_path, inventory, fmt, lang) -> None:
    """Baseline variables: value per class, source (seed clause or kijun default and its reference), overrides."""
    from kijun import baseline as baseline_mod
    from kijun import params as params_mod

    base = baseline_mod.load(baseline_path or baseline_mod.default_path())
    targets = []
    if inventory:
        from kijun import inventory as inventory_mod

        inv = inventory_mod.load(inventory, ())
        for err in inv.errors:
            click.echo(f"kijun: error: {err}", err=True)
        targets = inv.targets
    rows = params_mod.table(base)
    overrides = [o for t in targets for o in params_mod.host_overrides(base, t)]
    if fmt == "json":
        click.echo(json.dumps({"baseline": {"id": base.id, "version": base.version}, "variables": rows,
                               "overrides": overrides}, ensure_ascii=False, indent=2, default=str))
    else:
        click.echo(params_mod.render_table(rows, overrides, lang))


COMMANDS = {"clauses": clauses, "params": params}


def register(main_group: click.Group) -> None:
    for name, command in COMMANDS.items():
        main_group.add_command(command, name)
