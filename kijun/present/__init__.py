"""Presentation: one output class per format, fed by the report model (report dicts as stored).

    FORMATS[name](lang, baseline=..., notes=...).render(view, data)

Views: run (check, apply, dry-run, rollback reports), matrix, inspect, drift (kijun.present.base).
A new format is one module here with one class, added to FORMATS; the CLI picks it by name only.
Labels come from kijun.i18n.t, findings from kijun.present.text.finding, times from kijun.present.when.
"""

from __future__ import annotations

from typing import Any

from kijun.baseline import InputError
from kijun.present.base import VIEWS, Output
from kijun.present.csv_out import Csv
from kijun.present.html import Html
from kijun.present.json_out import Json
from kijun.present.junit import JUnit
from kijun.present.markdown import Markdown
from kijun.present.table import Table

FORMATS: dict[str, type[Output]] = {cls.name: cls for cls in (Table, Json, JUnit, Csv, Markdown, Html)}
NAMES = tuple(FORMATS)


def formats_for(view: str) -> tuple[str, ...]:
    return tuple(name for name, cls in FORMATS.items() if view in cls.views())


def check_format(name: str, view: str, command: str = "") -> str:
    """The format name if it can show this view, else a one-line InputError naming what can."""
    if name not in FORMATS:
        raise InputError("--format", name, f"unknown output format (one of {', '.join(NAMES)})")
    if view not in FORMATS[name].views():
        what = command or view
        raise InputError("--format", name, f"{what} has no {name} output (one of {', '.join(formats_for(view))})")
    return name


def output(name: str, view: str, lang: str = "en", **options: Any) -> Output:
    check_format(name, view)
    return FORMATS[name](lang, **options)


def render(name: str, view: str, data: Any, lang: str = "en", **options: Any) -> str:
    return output(name, view, lang, **options).render(view, data)


def is_machine(name: str) -> bool:
    return FORMATS[name].machine if name in FORMATS else False


__all__ = ["FORMATS", "NAMES", "VIEWS", "Output", "check_format", "formats_for", "output", "render", "is_machine"]
