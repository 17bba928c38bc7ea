"""Load and validate baseline YAML into the model, with one-line errors: file:line: path: reason."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import jsonschema

from kijun.controls.kinds import forbidden_character
from kijun.inputs import InputError, StrictLoader, json_path, line_of, load_yaml  # noqa: F401 (re-exported)
from kijun.model import Baseline, Control, Item, Source
from kijun.schema import baseline_schema
from kijun.schema import validator as schema_validator

VAR_RE = re.compile(r"\$\{([a-z][a-z0-9_]*)\}")
DEFAULT_PATH = "baselines/nisc-core.yaml"


def default_path() -> str:
    """The repository's baseline when run from a checkout, else the copy shipped in the package."""
    if Path(DEFAULT_PATH).exists():
        return DEFAULT_PATH
    from importlib import resources

    return str(resources.files("kijun.data").joinpath("nisc-core.yaml"))


def for_report(report: dict[str, Any], path: str | None = None) -> Baseline | None:
    """The baseline a stored report is read with: `path` (-b), else the run's own file if it is still
    there, else the default one; None when there is none."""
    if path:
        return load(path)
    ref = report.get("baseline") or {}
    if ref.get("path") and Path(ref["path"]).is_file():
        return load(ref["path"])
    default = default_path()
    return load(default) if Path(default).is_file() else None


def substitute(value: Any, variables: dict[str, Any]) -> Any:
    """Replace ${var}: a whole-string reference keeps the variable's type; embedded ones interpolate."""
    if isinstance(value, str):
        m = VAR_RE.fullmatch(value)
        if m:
            return variables[m.group(1)]
        return VAR_RE.sub(lambda mm: str(variables[mm.group(1)]), value)
    if isinstance(value, list):
        return [substitute(v, variables) for v in value]
    if isinstance(value, dict):
        return {k: substitute(v, variables) for k, v in value.items()}
    return value


def _var_refs(value: Any, at: tuple) -> list[tuple[str, tuple]]:
    if isinstance(value, str):
        return [(m.group(1), at) for m in VAR_RE.finditer(value)]
    if isinstance(value, list):
        return [r for i, v in enumerate(value) for r in _var_refs(v, at + (i,))]
    if isinstance(value, dict):
        return [r for k, v in value.items() for r in _var_refs(v, at + (k,))]
    return []


def collect_errors(path: str, data: Any, index: dict[tuple, int]) -> list[InputError]:
    """Every schema and semantic problem in a parsed baseline document, each as an InputError."""
    def err(parts: tuple, reason: str) -> InputError:
        return InputError(path, json_path(parts), reason, line_of(index, parts))

    if not isinstance(data, dict):
        return [err((), "a baseline must be a YAML mapping")]
    errors: list[InputError] = []
    variables = data.get("variables") or {}
    lists = data.get("lists") or {}
    for cls, overrides in (data.get("class_variables") or {}).items():
        for name in overrides if isinstance(overrides, dict) else ():
            if name not in variables:
                errors.append(err(("class_variables", cls, name), f"override of undefined variable {name!r}"))
    for name in data.get("variable_sources") or {}:
        if name not in variables:
            errors.append(err(("variable_sources", name), f"source given for undefined variable {name!r}"))
    refs = _var_refs(data.get("controls"), ("controls",))
    for name, at in refs:
        if name not in variables:
            errors.append(err(at, f"undefined variable ${{{name}}}"))
    if errors:
        return errors
    resolved = dict(data, controls=substitute(data.get("controls"), variables))
    validator = schema_validator(baseline_schema())
    # a bad variable is reported at the variable first, then at each place it was substituted into
    # and at one place a control character (the root cause) before the pattern it also breaks
    found = [(tuple(e.absolute_path), _schema_reason(e)) for e in validator.iter_errors(resolved)]
    for parts, reason in sorted(found, key=lambda f: (f[0][:1] == ("controls",), list(map(str, f[0])),
                                                      "control character" not in f[1])):
        errors.append(err(parts, reason))
    if errors:
        return errors
    seen: dict[str, int] = {}
    for i, c in enumerate(data["controls"]):
        if c["id"] in seen:
            errors.append(err(("controls", i, "id"), f"duplicate control id {c['id']} (first at controls[{seen[c['id']]}])"))
        seen.setdefault(c["id"], i)
        for j, item in enumerate(c["items"]):
            lst = item.get("list")
            if isinstance(lst, str) and lst not in lists:
                errors.append(err(("controls", i, "items", j, "list"), f"unknown list {lst!r} (define it under lists:)"))
    return errors


def _schema_reason(e: jsonschema.ValidationError) -> str:
    if e.validator == "not" and forbidden_character(e.instance):
        return forbidden_character(e.instance)
    if e.validator == "pattern" and e.schema.get("description"):
        return f"{e.instance!r} is not a valid {e.schema['description']}"
    if e.validator == "additionalProperties":
        return e.message.replace("Additional properties are not allowed", "unknown key(s):")
    if e.validator == "enum" and e.absolute_path and e.absolute_path[-1] == "type":
        return f"unknown control type {e.instance!r}"
    if e.validator == "required":
        return e.message.replace("is a required property", "is required")
    return e.message


def load(path: str | Path) -> Baseline:
    """Load a baseline or raise the first InputError (use validate() to get all of them)."""
    path = str(path)
    data, index, raw = load_yaml(path)
    errors = collect_errors(path, data, index)
    if errors:
        raise errors[0]
    return build(path, data, index, raw)


def validate(path: str | Path) -> list[InputError]:
    path = str(path)
    try:
        data, index, _ = load_yaml(path)
    except InputError as exc:
        return [exc]
    return collect_errors(path, data, index)


def build(path: str, data: dict, index: dict, raw: bytes) -> Baseline:
    """The model of a document collect_errors() found no problem in (also the controls of an advisory)."""
    controls = []
    for i, c in enumerate(data["controls"]):
        items = tuple(
            Item(it["type"], {k: v for k, v in it.items() if k != "type"}, f"controls[{i}].items[{j}]")
            for j, it in enumerate(c["items"])
        )
        controls.append(Control(
            id=c["id"],
            title=c["title"],
            rationale=c["rationale"],
            sources=tuple(Source(**s) for s in c["source"]),
            classes=tuple(c["classes"]),
            severity=c["severity"],
            tags=tuple(c.get("tags", ())),
            items=items,
            scope=c.get("scope", "seed"),
            scope_reason=dict(c.get("scope_reason") or {}),
        ))
    return Baseline(
        id=data["id"],
        version=str(data["version"]),
        title=data["title"],
        variables=dict(data.get("variables") or {}),
        class_variables={k: dict(v) for k, v in (data.get("class_variables") or {}).items()},
        lists={k: list(v) for k, v in (data.get("lists") or {}).items()},
        controls=controls,
        path=path,
        digest="sha256:" + hashlib.sha256(raw).hexdigest(),
        variable_sources={k: dict(v) for k, v in (data.get("variable_sources") or {}).items()},
    )
