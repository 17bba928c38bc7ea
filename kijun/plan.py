"""Baseline + host -> plan: which controls apply, with variables and named lists resolved."""

from __future__ import annotations

import functools
import json
from dataclasses import dataclass
from typing import Any

import jsonschema

from kijun.baseline import _schema_reason, substitute
from kijun.controls import REGISTRY
from kijun.inputs import InputError, json_path
from kijun.model import Baseline, Control, HostTarget
from kijun.msg import Msg


@dataclass(frozen=True)
class PlannedItem:
    type: str
    params: dict[str, Any]
    path: str


@dataclass(frozen=True)
class PlannedControl:
    control: Control
    applicable: bool
    reason: str  # why not applicable
    items: tuple[PlannedItem, ...]


def host_variables(baseline: Baseline, target: HostTarget) -> dict[str, Any]:
    """Defaults, then the baseline's per-class values, then the inventory's kijun_vars (most specific)."""
    variables = dict(baseline.variables)
    variables.update(baseline.class_variables.get(target.importance_class, {}))
    for name, value in target.variables.items():
        if name not in baseline.variables and baseline.ignore_foreign_variables:
            continue
        if name not in baseline.variables:
            raise InputError(f"inventory:{target.name}", f"kijun_vars.{name}", f"unknown variable for baseline {baseline.id}")
        variables[name] = value
    return variables


def resolve_params(baseline: Baseline, item_type: str, params: dict[str, Any], variables: dict[str, Any], where: str) -> dict[str, Any]:
    resolved = substitute(params, variables)
    if "list" in resolved:  # a named deny/allow list of the baseline, merged into names
        resolved["names"] = sorted(set(resolved.get("names", [])) | set(baseline.lists[resolved.pop("list")]))
    key = (item_type, json.dumps(resolved, sort_keys=True, default=str))
    if key in _VALID:  # fleets repeat the same few parameter sets; validate each once
        return resolved
    error = jsonschema.exceptions.best_match(_validator(item_type).iter_errors(resolved))
    if error is not None:
        raise InputError(where, json_path(error.absolute_path), f"after variables were applied: {_schema_reason(error)}")
    _VALID.add(key)
    return resolved


_VALID: set[tuple[str, str]] = set()


@functools.cache
def _validator(item_type: str) -> Any:
    # Built once per type: jsonschema.validate() re-checks the schema itself on every call,
    # which was most of a fleet check's controller CPU (bench/RESULTS.md).
    schema = {**REGISTRY[item_type].params_schema, "additionalProperties": True}
    from kijun.schema import validator

    return validator(schema)


def plan_host(baseline: Baseline, target: HostTarget) -> list[PlannedControl]:
    variables = host_variables(baseline, target)
    planned = []
    for control in baseline.controls:
        if not control.applies_to(target.importance_class):
            reason = Msg("class {cls}; control applies to {classes}", cls=target.importance_class,
                         classes=",".join(control.classes))
            planned.append(PlannedControl(control, False, reason, ()))
            continue
        try:
            items = tuple(
                PlannedItem(it.type, resolve_params(baseline, it.type, it.params, variables, f"{baseline.path}: {it.path}"), it.path)
                for it in control.items
            )
        except InputError as exc:
            if target.variables:  # the inventory's kijun_vars may be what broke the kind: say for which host
                exc.reason += f" (host {target.name}, with its kijun_vars)"
            raise
        planned.append(PlannedControl(control, True, "", items))
    return planned
