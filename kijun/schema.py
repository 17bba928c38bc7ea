"""The baseline JSON Schema: a fixed envelope plus each control type's own parameter schema.

The shipped file kijun/schemas/baseline.schema.json is generated from here (`kijun schema
--write`), and a test keeps the two equal, so a control type's parameters are defined in one place.
"""

from __future__ import annotations

import functools
import json
import re
from importlib import resources
from typing import Any

import jsonschema

from kijun.controls import REGISTRY
from kijun.controls.kinds import NO_CONTROL

SCHEMA_ID = "https://kijun.invalid/schemas/baseline.schema.json"

_TEXT_JA_EN = {
    "type": "object",
    "required": ["ja", "en"],
    "properties": {"ja": {"type": "string", "minLength": 1}, "en": {"type": "string", "minLength": 1}},
    "additionalProperties": False,
}

_SOURCE = {
    "type": "object",
    "required": ["file", "document", "section", "quote"],
    "properties": {
        "file": {"type": "string", "pattern": r"^[0-9]{3}_[0-9a-f]{16}\.txt$"},
        "document": {"type": "string", "minLength": 1},
        "section": {"type": "string", "minLength": 1},
        "quote": {"type": "string", "minLength": 2, "maxLength": 200},
        "clause": {"type": "string", "pattern": r"^[0-9]{3}[A-E]?-[0-9]{2,3}$",
                   "description": "id of the clause in the clause map (baselines/clauses/*.yaml)"},
    },
    "additionalProperties": False,
}


# Variables end up in commands and configuration files: one line each, lists of such lines.
_VARIABLE = {"type": ["string", "integer", "boolean", "array"], **NO_CONTROL, "items": NO_CONTROL}

_VARIABLE_SOURCE = {
    "type": "object",
    "required": ["source"],
    "additionalProperties": False,
    "properties": {
        "source": {"enum": ["seed", "kijun-default"]},
        "clause": {"type": "string", "pattern": r"^[0-9]{3}[A-E]?-[0-9]{2,3}$"},
        "reference": {"type": "string", "minLength": 3},
        "note": {"type": "string"},
    },
    "if": {"properties": {"source": {"const": "seed"}}},
    "then": {"required": ["clause"]},
    "else": {"required": ["reference"]},
}


def _item_schema() -> dict[str, Any]:
    branches = []
    for name in sorted(REGISTRY):
        params = REGISTRY[name].params_schema
        props = {"type": {"const": name}, **params.get("properties", {})}
        branches.append({
            "if": {"properties": {"type": {"const": name}}, "required": ["type"]},
            "then": {
                "type": "object",
                "properties": props,
                "required": ["type", *params.get("required", [])],
                "additionalProperties": False,
                **({"anyOf": params["anyOf"]} if "anyOf" in params else {}),
            },
        })
    return {
        "type": "object",
        "required": ["type"],
        "properties": {"type": {"enum": sorted(REGISTRY)}},
        "allOf": branches,
    }


def baseline_schema() -> dict[str, Any]:
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": SCHEMA_ID,
        "title": "kijun baseline",
        "type": "object",
        "required": ["kijun", "id", "version", "title", "controls"],
        "additionalProperties": False,
        "properties": {
            "kijun": {"const": 1, "description": "format version"},
            "id": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9-]*$"},
            "version": {"type": "string", "minLength": 1},
            "title": _TEXT_JA_EN,
            "description": _TEXT_JA_EN,
            "variables": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"},
                "additionalProperties": _VARIABLE,
            },
            "variable_sources": {
                "type": "object",
                "description": "where each variable's default value comes from",
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_]*$"},
                "additionalProperties": _VARIABLE_SOURCE,
            },
            "class_variables": {
                "type": "object",
                "propertyNames": {"enum": ["I", "II", "III", "IV"]},
                "additionalProperties": {"type": "object", "additionalProperties": _VARIABLE},
            },
            "lists": {
                "type": "object",
                "propertyNames": {"pattern": r"^[a-z][a-z0-9_-]*$"},
                "additionalProperties": {
                    "type": "array", "minItems": 1, "uniqueItems": True,
                    "items": {"type": "string", "pattern": r"^[a-z0-9][a-z0-9+.-]*$", **NO_CONTROL},
                },
            },
            "controls": {
                "type": "array",
                "minItems": 1,
                "items": {
                    "type": "object",
                    "required": ["id", "title", "rationale", "source", "classes", "severity", "tags", "items"],
                    "additionalProperties": False,
                    "properties": {
                        "id": {"type": "string", "pattern": r"^[A-Z][A-Z0-9]*(-[A-Z0-9]+)*-[0-9]{3}$"},
                        "title": _TEXT_JA_EN,
                        "rationale": _TEXT_JA_EN,
                        "source": {"type": "array", "minItems": 1, "items": _SOURCE},
                        "classes": {
                            "type": "array", "minItems": 1, "uniqueItems": True,
                            "items": {"enum": ["I", "II", "III", "IV"]},
                        },
                        "severity": {"enum": ["low", "medium", "high", "critical"]},
                        "tags": {"type": "array", "uniqueItems": True, "items": {"type": "string", "pattern": r"^[a-z][a-z0-9-]*$"}},
                        "items": {"type": "array", "minItems": 1, "items": _item_schema()},
                        "scope": {"enum": ["seed", "widened"],
                                  "description": "widened: applies to more classes than its clauses name"},
                        "scope_reason": _TEXT_JA_EN,
                    },
                    "dependentRequired": {"scope_reason": ["scope"]},
                    "if": {"properties": {"scope": {"const": "widened"}}, "required": ["scope"]},
                    "then": {"required": ["scope_reason"]},
                },
            },
        },
    }


def shipped(name: str) -> dict[str, Any]:
    return json.loads(resources.files("kijun.schemas").joinpath(name).read_text(encoding="utf-8"))


def render(schema: dict[str, Any]) -> str:
    return json.dumps(schema, ensure_ascii=False, indent=2, sort_keys=True) + "\n"


@functools.cache
def _ecma_pattern(pattern: str) -> re.Pattern[str]:
    # JSON Schema patterns are ECMA-262, where `$` matches only at the very end. Python's `$` also matches
    # before a final newline, so "NISC-AC-001\n" would pass `^...-[0-9]{3}$`; `\Z` restores the standard.
    return re.compile(re.sub(r"(?<!\\)\$(?=$|\)|\|)", r"\\Z", pattern))


def _pattern(validator: Any, pattern: str, instance: Any, schema: dict[str, Any]) -> Any:
    if validator.is_type(instance, "string") and not _ecma_pattern(pattern).search(instance):
        yield jsonschema.ValidationError(f"{instance!r} does not match {pattern!r}")


StrictValidator = jsonschema.validators.extend(jsonschema.Draft202012Validator, {"pattern": _pattern})


def validator(schema: dict[str, Any]) -> Any:
    """A Draft 2020-12 validator whose patterns mean what they say (no trailing newline slips through)."""
    return StrictValidator(schema)
