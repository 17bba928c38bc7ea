"""Load and validate baseline YAML into the model, with one-line errors: file:line: path: reason."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jsonschema
import yaml

from kijun.controls.kinds import forbidden_character
from kijun.model import Baseline, Control, Item, Source
from kijun.schema import baseline_schema
from kijun.schema import validator as schema_validator

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
        # no place inside the file (cannot read it, no hosts): the file itself is the place
        return f"{where}: {self.path}: {self.reason}" if self.path else f"{where}: {self.reason}"


DOCUMENT = "(document)"  # the place of an error about the whole YAML/JSON document (not "<root>")


def json_path(parts: list[Any] | tuple[Any, ...]) -> str:
    if not parts:
        return DOCUMENT
    out = ""
    for p in parts:
        out += f"[{p}]" if isinstance(p, int) else (f".{p}" if out else str(p))
    return out


class _Rejected(yaml.MarkedYAMLError):
    """Valid YAML that kijun refuses (aliases, duplicate keys, ...): the problem text is the reason."""

    def __init__(self, problem: str, mark: yaml.Mark | None):
        super().__init__(problem=problem, problem_mark=mark)


_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")  # all but tab and newline: terminal escapes, CR, NUL
MAX_DEPTH = 64  # real kijun files nest fewer than 10 levels
MAX_INT = 2**63  # nothing kijun reads is larger; bigger ones are typos or attacks on int parsing


class StrictLoader(getattr(yaml, "CSafeLoader", yaml.SafeLoader)):  # libyaml when present: 5x faster
    """SafeLoader for untrusted kijun files: no anchors or aliases (no alias bombs), bounded nesting
    (both checked on the event stream first, see _check_events), no duplicate keys (a second `expires:`
    must not silently win), bounded integers, finite floats, no control characters in strings."""

    def construct_mapping(self, node, deep=False):
        if isinstance(node, yaml.MappingNode):
            seen: dict[Any, int] = {}
            for key_node, _ in node.value:
                key = self.construct_object(key_node, deep=True)
                if isinstance(key, (str, int, float, bool)) or key is None:
                    if key in seen:
                        raise _Rejected(f"duplicate key {key!r} (first at line {seen[key]})", key_node.start_mark)
                    seen[key] = key_node.start_mark.line + 1
        return super().construct_mapping(node, deep=deep)

    def construct_yaml_int(self, node):
        digits = re.sub(r"[^0-9a-fA-F]", "", str(node.value))
        if len(digits) > 20:
            raise _Rejected(f"integer too large ({len(digits)} digits)", node.start_mark)
        value = super().construct_yaml_int(node)
        if abs(value) >= MAX_INT:
            raise _Rejected(f"integer too large ({value})", node.start_mark)
        return value

    def construct_yaml_float(self, node):
        value = super().construct_yaml_float(node)
        if value != value or value in (float("inf"), float("-inf")):
            raise _Rejected(f"not a finite number: {node.value}", node.start_mark)
        return value

    def construct_yaml_str(self, node):
        value = super().construct_yaml_str(node)
        bad = _CONTROL.search(value)
        if bad:
            raise _Rejected(f"control character U+{ord(bad.group()):04X} in a string", node.start_mark)
        return value


StrictLoader.add_constructor("tag:yaml.org,2002:int", StrictLoader.construct_yaml_int)
StrictLoader.add_constructor("tag:yaml.org,2002:float", StrictLoader.construct_yaml_float)
StrictLoader.add_constructor("tag:yaml.org,2002:str", StrictLoader.construct_yaml_str)


def _check_events(text: str, loader: type) -> None:
    """Refuse anchors, aliases and deep nesting before any node is built (an alias bomb never expands)."""
    depth = 0
    for event in yaml.parse(text, Loader=loader):
        if isinstance(event, yaml.AliasEvent) or getattr(event, "anchor", None) is not None:
            raise _Rejected("YAML anchors and aliases (&, *) are not allowed in kijun files", event.start_mark)
        if isinstance(event, yaml.CollectionStartEvent):
            depth += 1
            if depth > MAX_DEPTH:
                raise _Rejected(f"nested deeper than {MAX_DEPTH} levels", event.start_mark)
        elif isinstance(event, yaml.CollectionEndEvent):
            depth -= 1


def _line_index(node: yaml.Node, prefix: tuple = (), index: dict | None = None,
                marks: dict | None = None) -> dict[tuple, int]:
    """Map each path inside the document to its 1-based line, from the composed YAML node tree
    (and, in marks, each node's (line, column) to its path, to name the place of a later error)."""
    index = {} if index is None else index
    marks = {} if marks is None else marks
    index[prefix] = node.start_mark.line + 1
    marks.setdefault((node.start_mark.line, node.start_mark.column), prefix)
    if isinstance(node, yaml.MappingNode):
        for k, v in node.value:
            if not isinstance(k, yaml.ScalarNode):
                raise _Rejected("a mapping key must be a plain value, not a list or mapping", k.start_mark)
            index[prefix + (k.value,)] = k.start_mark.line + 1
            marks[(k.start_mark.line, k.start_mark.column)] = prefix + (k.value,)
            _line_index(v, prefix + (k.value,), index, marks)
    elif isinstance(node, yaml.SequenceNode):
        for i, v in enumerate(node.value):
            _line_index(v, prefix + (i,), index, marks)
    return index


def line_of(index: dict[tuple, int], parts: tuple) -> int | None:
    while parts not in index and parts:
        parts = parts[:-1]
    return index.get(parts)


def load_yaml(path: str | Path, loader: type = StrictLoader) -> tuple[Any, dict[tuple, int], bytes]:
    """Parse a YAML file (loader: a StrictLoader subclass); raise InputError naming the line and place."""
    from kijun.inputs import decode_utf8, read_input

    path = str(path)
    raw = read_input(path)
    text = decode_utf8(raw, path)
    index: dict[tuple, int] = {}
    marks: dict[tuple[int, int], tuple] = {}
    parser = None
    try:
        _check_events(text, loader)
        parser = loader(text)
        node = parser.get_single_node()
        if node is not None:
            _line_index(node, (), index, marks)
        data = parser.construct_document(node) if node is not None else None
    except yaml.YAMLError as exc:
        if isinstance(exc, yaml.reader.ReaderError):  # str() of it spans lines; position is bytes in libyaml
            char = chr(exc.character) if isinstance(exc.character, int) else exc.character
            raise InputError(path, "", f"YAML error: character #x{ord(char):04x} is not allowed in YAML",
                             text.count("\n", 0, max(text.find(char), 0)) + 1) from None
        mark = getattr(exc, "problem_mark", None)
        line = mark.line + 1 if mark else None
        parts = marks.get((mark.line, mark.column), ()) if mark else ()
        place = json_path(parts) if parts else ""  # a YAML-level error: its line says where
        if isinstance(exc, _Rejected):
            raise InputError(path, place, exc.problem, line) from None
        syntax = (yaml.scanner.ScannerError, yaml.parser.ParserError, yaml.composer.ComposerError)
        reason = " ".join(str(getattr(exc, "problem", None) or exc).split())
        raise InputError(path, place, f"YAML {'syntax error' if isinstance(exc, syntax) else 'error'}: {reason}",
                         line) from None
    finally:
        if parser is not None:
            parser.dispose()
    return data, index, raw


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
