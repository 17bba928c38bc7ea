"""The clause map: every clause of the seed standards, its status, and the controls that implement it.

baselines/clauses/nisc.yaml is the data (schema: clauses_schema(), shipped as
kijun/schemas/clauses.schema.json); docs/clauses.md is rendered from it by `kijun clauses
--format markdown`. cross_check() holds the map, the baseline and the seed texts to each other;
rollup() adds the compliance of a stored run to each clause.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jsonschema

from kijun import i18n
from kijun.inputs import InputError, json_path, line_of, load_yaml
from kijun.model import CLASSES, Baseline

STATUSES = ("automated", "partial", "manual", "procedural", "background")
IMPLEMENTING = ("automated", "partial")  # statuses whose controls count as implementing the clause
CLAUSE_ID = r"^[0-9]{3}[A-E]?-[0-9]{2,3}$"
SCHEMA_ID = "https://kijun.invalid/schemas/clauses.schema.json"

def tr(word: str, lang: str) -> str:
    return i18n.t(f"clauses.{word}", lang) if f"clauses.{word}" in i18n.LABELS else i18n.t(word, lang)


def _text(min_length: int = 1) -> dict[str, Any]:
    return {"type": "string", "minLength": min_length}


def clauses_schema() -> dict[str, Any]:
    control_ids = {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{3}$"}}
    clause = {
        "type": "object",
        "required": ["id", "file", "document", "section", "quote", "classes", "status", "notes"],
        "additionalProperties": False,
        "properties": {
            "id": {"type": "string", "pattern": CLAUSE_ID},
            "file": {"type": "string", "pattern": r"^[0-9]{3}_[0-9a-f]{16}\.txt$"},
            "document": _text(),
            "section": _text(),
            "quote": {"type": "string", "minLength": 2, "maxLength": 300},
            "classes": {"type": "array", "minItems": 1, "uniqueItems": True, "items": {"enum": list(CLASSES)}},
            "status": {"enum": list(STATUSES)},
            "controls": {**control_ids, "description": "controls that implement the clause (automated, partial, manual)"},
            "control_tags": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"},
                             "description": "every control carrying one of these tags implements the clause"},
            "whole_baseline": {"const": True, "description": "every control of the baseline implements the clause"},
            "related_controls": {**control_ids, "description": "controls that answer a background clause; never counted"},
            "notes": {"type": "string", "description": "why partial, manual, procedural or background; what the controls cover"},
        },
        "allOf": [
            {"if": {"properties": {"status": {"enum": list(IMPLEMENTING)}}},
             "then": {"anyOf": [{"required": ["controls"]}, {"required": ["control_tags"]}, {"required": ["whole_baseline"]}]}},
            {"if": {"properties": {"status": {"enum": ["procedural", "background"]}}},
             "then": {"not": {"anyOf": [{"required": ["controls"]}, {"required": ["control_tags"]}, {"required": ["whole_baseline"]}]}}},
        ],
    }
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "kijun clause map",
        "type": "object",
        "required": ["kijun_clauses", "id", "baseline", "title", "documents", "clauses"],
        "additionalProperties": False,
        "properties": {
            "kijun_clauses": {"const": 1, "description": "format version"},
            "id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$"},
            "baseline": {"type": "string", "description": "id of the baseline whose controls are named"},
            "title": {"type": "object", "required": ["ja", "en"], "additionalProperties": False,
                      "properties": {"ja": _text(), "en": _text()}},
            "documents": {"type": "array", "minItems": 1, "items": {
                "type": "object", "required": ["key", "file", "title", "issued"], "additionalProperties": False,
                "properties": {"key": {"type": "string", "pattern": r"^[0-9]{3}[A-E]?$"},
                               "file": {"type": "string", "pattern": r"^[0-9]{3}_[0-9a-f]{16}\.txt$"},
                               "title": _text(), "issued": _text()}}},
            "clauses": {"type": "array", "minItems": 1, "items": clause},
        },
    }


@dataclass(frozen=True)
class Clause:
    id: str
    file: str
    document: str
    section: str
    quote: str
    classes: tuple[str, ...]
    status: str
    notes: str
    controls: tuple[str, ...] = ()
    control_tags: tuple[str, ...] = ()
    related_controls: tuple[str, ...] = ()
    whole_baseline: bool = False

    def implementing(self, baseline: Baseline) -> list[str]:
        """The baseline's controls that implement this clause (none for procedural and background)."""
        if self.status not in IMPLEMENTING + ("manual",):
            return []
        tagged = [c.id for c in baseline.controls if self.whole_baseline or set(c.tags) & set(self.control_tags)]
        return list(self.controls) + [cid for cid in tagged if cid not in self.controls]


@dataclass
class ClauseMap:
    id: str
    baseline: str
    title: dict[str, str]
    documents: list[dict[str, str]]
    clauses: list[Clause]
    path: str = ""
    index: dict = field(default_factory=dict, repr=False)

    def get(self, clause_id: str) -> Clause | None:
        return next((c for c in self.clauses if c.id == clause_id), None)

    def line(self, i: int) -> int | None:
        return line_of(self.index, ("clauses", i))


def load(path: str | Path) -> ClauseMap:
    """Load and schema-check a clause map; bad input raises one InputError (file:line: path: reason)."""
    path = str(path)
    data, index, _ = load_yaml(path)
    if not isinstance(data, dict):
        raise InputError(path, "", "a clause map must be a YAML mapping")
    validator = jsonschema.Draft202012Validator(clauses_schema())
    error = jsonschema.exceptions.best_match(validator.iter_errors(data))
    if error is not None:
        parts = tuple(error.absolute_path)
        raise InputError(path, json_path(parts), error.message, line_of(index, parts))
    seen: dict[str, int] = {}
    for i, c in enumerate(data["clauses"]):
        if c["id"] in seen:
            raise InputError(path, f"clauses[{i}].id", f"duplicate clause id {c['id']} (first at clauses[{seen[c['id']]}])",
                             line_of(index, ("clauses", i, "id")))
        seen[c["id"]] = i
    clauses = [Clause(id=c["id"], file=c["file"], document=c["document"], section=c["section"], quote=c["quote"],
                      classes=tuple(c["classes"]), status=c["status"], notes=c["notes"],
                      controls=tuple(c.get("controls", ())), control_tags=tuple(c.get("control_tags", ())),
                      related_controls=tuple(c.get("related_controls", ())),
                      whole_baseline=bool(c.get("whole_baseline"))) for c in data["clauses"]]
    return ClauseMap(data["id"], data["baseline"], data["title"], data["documents"], clauses, path, index)


def cross_check(cmap: ClauseMap, baseline: Baseline, seeds: Path | None = None) -> list[str]:
    """Every disagreement between the clause map, the baseline and (if given) the seed texts, one line each."""
    problems: list[str] = []
    controls = {c.id: c for c in baseline.controls}
    tags = {t for c in baseline.controls for t in c.tags}
    implementers: dict[str, set[str]] = {c.id: set(c.implementing(baseline)) for c in cmap.clauses}
    for i, cl in enumerate(cmap.clauses):
        where = f"{cmap.path}:{cmap.line(i)}: {cl.id}"
        for cid in cl.controls + cl.related_controls:
            if cid not in controls:
                problems.append(f"{where}: names {cid}, which {baseline.id} does not define")
        for tag in cl.control_tags:
            if tag not in tags:
                problems.append(f"{where}: control tag {tag!r} is carried by no control")
        if cl.status in IMPLEMENTING and not implementers[cl.id]:
            problems.append(f"{where}: status {cl.status} but no control implements it")
    for c in baseline.controls:
        cited = [s for s in c.sources]
        implemented = []
        for s in cited:
            if not s.clause:
                problems.append(f"{baseline.path}: {c.id}: source {s.section!r} names no clause")
                continue
            cl = cmap.get(s.clause)
            if cl is None:
                problems.append(f"{baseline.path}: {c.id}: cites clause {s.clause}, which the clause map does not have")
                continue
            if cl.file != s.file:
                problems.append(f"{baseline.path}: {c.id}: cites {s.clause} with file {s.file}, the clause is in {cl.file}")
            if cl.status in ("procedural",):
                problems.append(f"{baseline.path}: {c.id}: cites {s.clause}, which the clause map calls procedural")
            elif cl.status != "background":
                if c.id not in implementers[cl.id]:
                    problems.append(f"{baseline.path}: {c.id}: cites {s.clause}, which does not list {c.id} among its controls")
                else:
                    implemented.append(cl)
        if not implemented:
            problems.append(f"{baseline.path}: {c.id}: cites no automated or partial clause of the map that it implements")
            continue
        named = {k for cl in implemented for k in cl.classes}
        wider = [k for k in c.classes if k not in named]
        if wider and c.scope != "widened":
            problems.append(f"{baseline.path}: {c.id}: applies to class(es) {','.join(wider)} that its clauses "
                            f"({', '.join(cl.id for cl in implemented)}) do not name: say `scope: widened` with the reason")
        if c.scope == "widened" and not wider:
            problems.append(f"{baseline.path}: {c.id}: says `scope: widened` but its clauses name all of its classes")
    for name in baseline.variables:
        src = baseline.variable_sources.get(name)
        if src is None:
            problems.append(f"{baseline.path}: variable {name} has no entry in variable_sources (seed or kijun-default)")
        elif src.get("clause") and cmap.get(src["clause"]) is None:
            problems.append(f"{baseline.path}: variable_sources.{name} names clause {src['clause']}, which the map does not have")
    if seeds is not None:
        problems += check_quotes(cmap, baseline, seeds)
    return problems


def check_quotes(cmap: ClauseMap, baseline: Baseline, seeds: Path) -> list[str]:
    """Every quote must be an exact substring of its seed file: no Unicode or whitespace normalisation."""
    texts: dict[str, str | None] = {}

    def text(name: str) -> str | None:
        if name not in texts:
            p = seeds / name
            texts[name] = p.read_text(encoding="utf-8") if p.is_file() else None
        return texts[name]

    problems = []
    for i, cl in enumerate(cmap.clauses):
        t = text(cl.file)
        if t is None:
            problems.append(f"{cmap.path}:{cmap.line(i)}: {cl.id}: seed file {cl.file} not found in {seeds}")
        elif cl.quote not in t:
            problems.append(f"{cmap.path}:{cmap.line(i)}: {cl.id}: quote is not in {cl.file} as written: {cl.quote!r}")
    for c in baseline.controls:
        for s in c.sources:
            t = text(s.file)
            if t is not None and s.quote not in t:
                problems.append(f"{baseline.path}: {c.id}: quote is not in {s.file} as written: {s.quote!r}")
    return problems


def counts(cmap: ClauseMap) -> dict[str, Counter]:
    """Clause counts by status, per document key (000, 002B, ...) and in total."""
    out: dict[str, Counter] = {}
    for cl in cmap.clauses:
        key = cl.id.split("-")[0]
        out.setdefault(key, Counter())[cl.status] += 1
        out.setdefault("total", Counter())[cl.status] += 1
    return out


def rollup(cmap: ClauseMap, baseline: Baseline, report: dict[str, Any] | None = None) -> list[dict[str, Any]]:
    """One row per clause; with a run report, the statuses of its implementing controls over all hosts."""
    results: dict[str, Counter] = {}
    for host in (report or {}).get("hosts") or []:
        for r in host.get("results") or []:
            results.setdefault(r["control_id"], Counter())[r["status"]] += 1
    rows = []
    for cl in cmap.clauses:
        row: dict[str, Any] = {"id": cl.id, "file": cl.file, "document": cl.document, "section": cl.section,
                               "quote": cl.quote, "classes": list(cl.classes), "status": cl.status,
                               "controls": cl.implementing(baseline), "related_controls": list(cl.related_controls),
                               "notes": cl.notes}
        if report is not None:
            total: Counter = Counter()
            for cid in row["controls"]:
                total.update(results.get(cid, Counter()))
            row["compliance"] = {"pass": total["pass"], "fail": total["fail"] + total["error"] + total["unreachable"],
                                 "waived": total["waived"], "not-applicable": total["not-applicable"]}
        rows.append(row)
    return rows


def _compliance_cell(comp: dict[str, int] | None) -> str:
    if not comp or not any(comp.values()):
        return ""
    cell = f"{comp['pass']}/{comp['fail']}/{comp['not-applicable']}"
    return cell + (f" (+{comp['waived']} waived)" if comp["waived"] else "")


def render_table(rows: list[dict[str, Any]], lang: str = "en", run_id: str | None = None) -> str:
    """Terminal table (kijun.present.grid: aligned by display width, long cells wrapped)."""
    from kijun.present.grid import grid

    headers = [tr("clause", lang), tr("section", lang), tr("status", lang), tr("classes", lang), tr("controls", lang)]
    if run_id:
        headers.append(tr("compliance", lang))
    body = []
    for r in rows:
        line = [r["id"], r["section"], tr(r["status"], lang), ",".join(r["classes"]), " ".join(r["controls"])]
        if run_id:
            line.append(_compliance_cell(r.get("compliance")))
        body.append(line)
    out = [f"{tr('run', lang)}: {run_id}"] if run_id else []
    out.append(grid(headers, body, wrap=(1, 4)))
    c = Counter(r["status"] for r in rows)
    out.append(", ".join(f"{tr(s, lang)} {c[s]}" for s in STATUSES) + f"; {tr('total', lang)} {len(rows)}")
    return "\n".join(out)


def _md(value: Any) -> str:
    return str(value).replace("|", "\\|").replace("\n", " ")


def render_markdown(cmap: ClauseMap, baseline: Baseline) -> str:
    """docs/clauses.md: generated, never edited by hand (a unit test keeps it current)."""
    from tabulate import tabulate

    def table(headers: list[str], body: list[list[Any]]) -> str:
        return tabulate([[_md(c) for c in row] for row in body], headers=headers, tablefmt="github", disable_numparse=True)

    rows = rollup(cmap, baseline)
    out = [
        "# Seed clauses and how kijun implements them",
        "",
        f"<!-- Generated from baselines/clauses/{Path(cmap.path).name} and {baseline.id} by "
        "`python3 -m kijun.cli clauses --format markdown -o docs/clauses.md`; do not edit. -->",
        "",
        "Every clause of the seed standards in `shared/seeds/` with what kijun does about it. The data is",
        "`baselines/clauses/nisc.yaml` (schema `kijun/schemas/clauses.schema.json`); `kijun clauses` prints it,",
        "with the compliance of a stored run (`--run ID` or `--run latest`).",
        "",
        "Status: **automated** = the listed controls check and apply the host-level measure; **partial** = they",
        "cover the host-level part, the notes say what stays procedural; **manual** = a host shows it but a person",
        "judges it; **procedural** = organisational, no host can show it; **background** = asks for no measure",
        "(threats, history, definitions, scraped page noise), never counted as implemented.",
        "",
        "Quotes are exact substrings of the seed files, mojibake included: `T U V W` stands for Ⅰ Ⅱ Ⅲ Ⅳ and",
        "`@ A B C …` for ① ② ③ ④ …; a unit test checks each one byte for byte. *Classes* are the importance",
        "classes the clause itself names (all four when it names none); a control that applies to more classes",
        "than its clauses name says `scope: widened` with its reason in the baseline.",
        "",
        "## Seed documents",
        "",
        table(["Key", "Seed file", "Document", "Issued"], [[d["key"], f"`{d['file']}`", d["title"], d["issued"]] for d in cmap.documents]),
        "",
        "## Counts",
        "",
    ]
    cnt = counts(cmap)
    keys = [d["key"] for d in cmap.documents if d["key"] in cnt] + ["total"]
    out.append(table(["Seed"] + list(STATUSES) + ["total"],
                     [[k] + [str(cnt[k][s]) for s in STATUSES] + [str(sum(cnt[k].values()))] for k in keys]))
    out += ["", "## Clauses", ""]
    titles = {d["key"]: d["title"] for d in cmap.documents}
    current = None
    for r in rows:
        key = r["id"].split("-")[0]
        if key != current:
            current = key
            out += ["", f"### {key} — {titles.get(key, r['document'])}", ""]
            out.append("| # | Section | Quote | Classes | Status | Controls | Notes |")
            out.append("| --- | --- | --- | --- | --- | --- | --- |")
        ctl = ", ".join(r["controls"]) or (f"({', '.join(r['related_controls'])})" if r["related_controls"] else "")
        out.append("| " + " | ".join(_md(v) for v in [r["id"], r["section"], r["quote"], ",".join(r["classes"]), r["status"], ctl, r["notes"]]) + " |")
    out += ["", "Controls in parentheses answer a background clause; they are not counted as implementing it.", ""]
    out += _widened_section(baseline)
    out += _classes_section(baseline)
    return "\n".join(out).replace("\n\n\n", "\n\n")


def _classes_section(baseline: Baseline) -> list[str]:
    from kijun import params

    groups: dict[tuple[str, ...], list[str]] = {}
    for c in baseline.controls:
        groups.setdefault(tuple(c.classes), []).append(c.id)
    out = ["## Importance classes and parameters", "",
           "The 2000 policy guideline (002B-15) maps importance classes Ⅰ–Ⅳ to security requirement levels 1–4",
           "(Ⅰ most important). A host's class is set in the inventory (`kijun_class`); controls scale by which",
           "classes they apply to and by stricter `class_variables`.", "",
           "| Applies to | Controls |", "| --- | --- |"]
    for classes in sorted(groups, key=len):
        out.append(f"| {','.join(classes)} | {', '.join(groups[classes])} |")
    out += ["", "Where each number comes from (`kijun params`; * = a class value of the baseline). `seed`: the",
            "seed fixes it; `kijun-default`: the seed leaves it to the organisation (the clause named), kijun's value",
            "follows the reference. Organisations override any variable per inventory group or host (`kijun_vars`).", "",
            "| Variable | " + " | ".join(CLASSES) + " | Source | Clause | Reference |", "| --- " * (len(CLASSES) + 4) + "|"]
    for r in params.table(baseline):
        vals = [_md(params._short(r["by_class"][k])) + ("*" if k in r["class_overrides"] else "") for k in CLASSES]
        out.append(f"| `{r['variable']}` | " + " | ".join(vals) + f" | {r['source']} | {r['clause']} | {_md(r['reference'] or r['note'])} |")
    return out + [""]


def _widened_section(baseline: Baseline) -> list[str]:
    widened = [c for c in baseline.controls if c.scope == "widened"]
    if not widened:
        return []
    out = ["## Controls whose scope is wider than their clauses", "",
           "| Control | Classes | Reason |", "| --- | --- | --- |"]
    for c in widened:
        out.append(f"| {c.id} | {','.join(c.classes)} | {_md(c.scope_reason.get('en', ''))} |")
    return out + [""]
