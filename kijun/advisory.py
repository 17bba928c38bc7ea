"""Advisory files: countermeasure information to roll out to every system (seed 000, 2(2)), loaded
and validated like every other input (one-line InputError: file:line: path: reason).

An advisory file carries the countermeasures as controls in the baseline format plus an issue date and
a deadline:

    advisory:
      id: NISC-2025-001
      title: {ja: ..., en: ...}
      issued: 2025-06-02
      deadline: 2025-06-16
      source: {document: ..., issuer: NISC, reference: JVNVU#..., quote: ...}
      controls: [ ...same format as baseline controls... ]

The roll-out is a run (kijun.runs.rollout), its ledger lives beside the store (kijun.store_ledger), its
output in kijun.advisory_report.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import re
from dataclasses import dataclass
from typing import Any

from kijun import baseline as baseline_mod
from kijun.inputs import DOCUMENT, InputError, line_of, load_checked, parse_date
from kijun.model import Baseline


@dataclass
class Advisory:
    id: str
    title: dict[str, str]
    issued: str
    deadline: str
    source: dict[str, Any]
    baseline: Baseline
    path: str
    digest: str

    @property
    def deadline_date(self) -> dt.date:
        return dt.date.fromisoformat(self.deadline)


def baseline_id(advisory_id: str) -> str:
    return "advisory-" + re.sub(r"[^a-z0-9-]+", "-", advisory_id.lower()).strip("-")


def collect(path: str) -> tuple[Advisory | None, list[InputError]]:
    path = str(path)
    data, index, raw, errors = load_checked(path, "advisory", "advisory: {...}")
    if errors:
        return None, errors
    adv = data["advisory"]
    for key in ("issued", "deadline"):
        if parse_date(adv[key]) is None:
            errors.append(InputError(path, f"advisory.{key}", f"{adv[key]} is not a calendar date",
                                     line_of(index, ("advisory", key))))
    if not errors and adv["deadline"] < adv["issued"]:
        errors.append(InputError(path, "advisory.deadline", f"deadline {adv['deadline']} is before issued {adv['issued']}",
                                 line_of(index, ("advisory", "deadline"))))
    if errors:
        return None, errors
    # The controls are checked exactly like a baseline's: same schema, variables, lists, duplicates.
    doc = {"kijun": 1, "id": baseline_id(adv["id"]), "version": adv["issued"], "title": adv["title"],
           "controls": adv["controls"]}
    for key in ("variables", "lists"):
        if key in adv:
            doc[key] = adv[key]
    sub_index = {k[1:]: v for k, v in index.items() if k[:1] == ("advisory",)}
    base_errors = baseline_mod.collect_errors(path, doc, sub_index)
    if base_errors:
        return None, [InputError(e.file, f"advisory.{e.path}" if e.path not in ("", DOCUMENT) else "advisory",
                                 e.reason, e.line)
                      for e in base_errors]
    base = baseline_mod.build(path, doc, sub_index, raw)
    base.ignore_foreign_variables = True
    digest = "sha256:" + hashlib.sha256(raw).hexdigest()
    return Advisory(adv["id"], adv["title"], adv["issued"], adv["deadline"], adv["source"], base, path, digest), []


def load(path: str) -> Advisory:
    """Load an advisory file or raise its first problem as a one-line InputError (file:line: path: reason)."""
    adv, errors = collect(path)
    if errors:
        raise errors[0]
    assert adv is not None
    return adv


def validate(path: str) -> list[InputError]:
    return collect(path)[1]
