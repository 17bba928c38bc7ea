"""The output options every printing command shares: --format, -o/--output, --lang."""

from __future__ import annotations

from pathlib import Path

import click

from kijun.present import NAMES, check_format
from kijun.present.lang import LANGS, default_lang


def format_option(view: str, command: str = ""):
    """--format NAME: checked against what this command can show before anything runs (one line, exit 2)."""

    def checked(ctx, param, value):
        return check_format(value, view, command or ctx.info_name)

    return click.option("--format", "fmt", default="table", show_default=True, callback=checked, metavar="FORMAT",
                        help=f"Output format: {', '.join(NAMES)} (not every command has every one).")


output_option = click.option("-o", "--output", type=click.Path(dir_okay=False), default=None,
                             help="Write to FILE instead of stdout.")
lang_option = click.option("--lang", type=click.Choice(LANGS), default=default_lang, show_default="KIJUN_LANG, else the locale, else en",
                           help="Language of the output (ja: 日本語).")


def emit(text: str, output: str | None, fmt: str) -> None:
    """Print or write FILE. Printed host text loses terminal escapes, except JSON, which escapes them
    itself and must stay byte-exact (a printed report verifies)."""
    if output:
        Path(output).write_text(text, encoding="utf-8")
        click.echo(f"wrote {output}", err=True)
        return
    from kijun.termsafe import clean

    click.echo(text if fmt == "json" else clean(text), nl=False)
