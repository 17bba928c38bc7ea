"""Where each baseline number comes from: a seed clause, a kijun default (with the public reference
that inspired it), the baseline's per-class value, or the organisation's own override (kijun_vars)."""

from __future__ import annotations

from typing import Any

from kijun import i18n
from kijun.model import CLASSES, Baseline, HostTarget

ORIGINS = ("seed", "kijun-default", "class", "organisation")


def origin(source: str, lang: str) -> str:
    return i18n.t(f"origin.{source}", lang) if source in ORIGINS else source


def _w(word: str, lang: str) -> str:
    return i18n.t(f"params.{word}", lang)


def origin_of(baseline: Baseline, name: str, importance_class: str, host_vars: dict[str, Any] | None = None) -> str:
    """seed / kijun-default for the baseline's default, class for a class_variables value, organisation for kijun_vars."""
    if host_vars and name in host_vars:
        return "organisation"
    if name in baseline.class_variables.get(importance_class, {}):
        return "class"
    return (baseline.variable_sources.get(name) or {}).get("source", "kijun-default")


def table(baseline: Baseline) -> list[dict[str, Any]]:
    rows = []
    for name, default in baseline.variables.items():
        src = baseline.variable_sources.get(name) or {}
        rows.append({
            "variable": name,
            "default": default,
            "by_class": {k: baseline.class_variables.get(k, {}).get(name, default) for k in CLASSES},
            "class_overrides": sorted(k for k in CLASSES if name in baseline.class_variables.get(k, {})),
            "source": src.get("source", "undeclared"),
            "clause": src.get("clause", ""),
            "reference": src.get("reference", ""),
            "note": src.get("note", ""),
        })
    return rows


def host_overrides(baseline: Baseline, target: HostTarget) -> list[dict[str, Any]]:
    """The organisation's overrides of one host, each with the value the baseline would have used."""
    out = []
    for name, value in sorted(target.variables.items()):
        base_value = baseline.class_variables.get(target.importance_class, {}).get(name, baseline.variables.get(name))
        out.append({"host": target.name, "class": target.importance_class, "variable": name, "value": value,
                    "baseline_value": base_value, "origin": "organisation"})
    return out


def host_parameters(baseline: Baseline, variables: dict[str, Any], target: HostTarget) -> dict[str, dict[str, Any]]:
    """For a report: every variable's value on this host and where it came from."""
    return {name: {"value": variables[name], "origin": origin_of(baseline, name, target.importance_class, target.variables)}
            for name in sorted(variables)}


def _short(value: Any) -> str:
    text = ",".join(map(str, value)) if isinstance(value, list) else str(value)
    return text if len(text) <= 28 else text[:27] + "…"


def render_table(rows: list[dict[str, Any]], overrides: list[dict[str, Any]], lang: str = "en") -> str:
    from tabulate import tabulate

    body = []
    for r in rows:
        per_class = [(_short(r["by_class"][k]) + ("*" if k in r["class_overrides"] else "")) for k in CLASSES]
        where = "; ".join(x for x in (r["clause"], r["reference"]) if x)
        body.append([r["variable"], *per_class, origin(r["source"], lang), where])
    headers = [_w("variable", lang), *CLASSES, _w("source", lang), _w("reference", lang)]
    out = [tabulate(body, headers=headers, disable_numparse=True),
           "* = " + origin("class", lang), "", _w("overrides", lang)]
    if overrides:
        out.append(tabulate([[o["host"], o["class"], o["variable"], _short(o["value"]), _short(o["baseline_value"])] for o in overrides],
                            headers=[_w("host", lang), "class", _w("variable", lang), _w("value", lang), _w("baseline_value", lang)],
                            disable_numparse=True))
    else:
        out.append(_w("none", lang))
    return "\n".join(out)
