"""Load and validate baseline YAML into the model, with one-line errors: file:line: path: reason."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kijun.model import Baseline, Control, Item, Source
from kijun.schema import baseline_schema

VAR_RE = re.compile(r"\$\{([a-z][a-z0-9_]*)\}")


@dataclass
class InputError(Exception):
    """Bad user input. str() is the one-line message users see."""

    file: str
    path: str
    reason: str
    line: int | None = None

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else self.file
        return f"{where}: {self.path or '<root>'}: {self.reason}"


def json_path(parts: list[Any] | tuple[Any, ...]) -> str:
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


def _line_index(node: yaml.Node, prefix: tuple = (), index: dict | None = None) -> dict[tuple, int]:
    """Map each path inside the document to its 1-based line, from the composed YAML node tree."""
    index = {} if index is None else index
    index[prefix] = node.start_mark.line + 1
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            index[prefix + (k.value,)] = k.start_mark.line + 1
            _line_index(v, prefix + (k.value,), index)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, prefix + (i,), index)
    return index


def line_of(index: dict[tuple, int], parts: tuple) -> int | None:
    while parts not in index and parts:
        parts = parts[:-1]
    return index.get(parts)


def load_yaml(path: str | Path, loader: type = yaml.SafeLoader) -> tuple[Any, dict[tuple, int], bytes]:
    """Parse a YAML file (loader: a SafeLoader subclass); raise InputError with the line of a syntax error."""
    path = str(path)
    try:
        raw = Path(path).read_bytes()
    except OSError as exc:
        raise InputError(path, "", f"cannot read: {exc.strerror}") from None
    text = raw.decode("utf-8", errors="replace")
    try:
        node = yaml.compose(text, Loader=loader)
        data = yaml.load(text, Loader=loader)  # noqa: S506 - SafeLoader or a subclass of it
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        reason = f"YAML syntax error: {getattr(exc, 'problem', None) or exc}"
        raise InputError(path, "", reason, mark.line + 1 if mark else None) from None
    return data, (_line_index(node) if node is not None else {}), raw


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
    validator = jsonschema.Draft202012Validator(baseline_schema())
    for e in sorted(validator.iter_errors(resolved), key=lambda e: list(map(str, e.absolute_path))):
        parts = tuple(e.absolute_path)
        errors.append(err(parts, _schema_reason(e)))
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
    return _build(path, data, index, raw)


def validate(path: str | Path) -> list[InputError]:
    path = str(path)
    try:
        data, index, _ = load_yaml(path)
    except InputError as exc:
        return [exc]
    return collect_errors(path, data, index)


def _build(path: str, data: dict, index: dict, raw: bytes) -> Baseline:
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
