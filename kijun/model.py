"""Plain data that flows one way: baseline -> plan -> results -> store -> reports."""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

CLASSES = ("I", "II", "III", "IV")
SEVERITIES = ("low", "medium", "high", "critical")
# Ordered so that the "worst" status of a control's items wins.
STATUSES = ("pass", "not-applicable", "waived", "fail", "error", "unreachable")
# A result that is not compliant and not accepted: it makes a run exit 1 and a clause show gaps.
BAD_STATUSES = frozenset({"fail", "error", "unreachable"})


@dataclass(frozen=True)
class ProbeOutput:
    """What one probe command printed (stdout and stderr merged) and its exit status."""

    stdout: str
    rc: int
    bad_utf8: bool = False  # the host sent bytes that are not UTF-8; they read as U+FFFD in stdout


@dataclass(frozen=True)
class Source:
    file: str
    document: str
    section: str
    quote: str
    clause: str = ""  # id in the clause map (baselines/clauses/), e.g. 002B-65


@dataclass(frozen=True)
class Item:
    """One typed desired-state item, e.g. {type: sysctl, key: ..., value: ...}."""

    type: str
    params: dict[str, Any]
    path: str = ""  # location inside the baseline file, for error messages


@dataclass(frozen=True)
class Control:
    id: str
    title: dict[str, str]
    rationale: dict[str, str]
    sources: tuple[Source, ...]
    classes: tuple[str, ...]
    severity: str
    tags: tuple[str, ...]
    items: tuple[Item, ...]
    scope: str = "seed"  # "widened": applies to more classes than its clauses name (scope_reason says why)
    scope_reason: dict[str, str] = field(default_factory=dict)

    def applies_to(self, importance_class: str) -> bool:
        return importance_class in self.classes


@dataclass
class Baseline:
    id: str
    version: str
    title: dict[str, str]
    variables: dict[str, Any]
    class_variables: dict[str, dict[str, Any]]
    lists: dict[str, list[str]]
    controls: list[Control]
    path: str = ""
    digest: str = ""  # sha256 of the file bytes
    # An advisory rolls out over the organisation's inventory, whose kijun_vars belong to its baseline:
    # variables the advisory does not declare are ignored there instead of rejected as typos.
    ignore_foreign_variables: bool = False
    # where each variable's default comes from: {name: {source: seed|kijun-default, clause|reference: ...}}
    variable_sources: dict[str, dict[str, Any]] = field(default_factory=dict)

    def control(self, control_id: str) -> Control:
        for c in self.controls:
            if c.id == control_id:
                return c
        raise KeyError(control_id)


@dataclass
class Verdict:
    """What one item's check concluded on one host."""

    status: str
    observed: str = ""
    expected: str = ""
    reason: str = ""
    evidence: str = ""  # the command(s) whose output was judged
    type: str = ""  # the item judged (control type) and its parameters as planned for this host:
    params: dict[str, Any] = field(default_factory=dict)  # "which sysctl?" must be answerable from the report


@dataclass
class ControlResult:
    control_id: str
    status: str
    observed: str
    expected: str
    reason: str = ""
    evidence: str = ""
    items: list[Verdict] = field(default_factory=list)
    waiver: dict[str, Any] | None = None
    title: dict[str, str] = field(default_factory=dict)  # the control's title per language (ja, en)
    severity: str = ""


@dataclass
class HostTarget:
    """A host as the runner sees it: where to connect and what it is."""

    name: str
    importance_class: str = "III"
    organisation: str = ""
    branch: str = ""
    role: str = ""
    groups: tuple[str, ...] = ()
    variables: dict[str, Any] = field(default_factory=dict)
    ssh: dict[str, Any] = field(default_factory=dict)


@dataclass
class HostResult:
    host: str
    importance_class: str
    organisation: str
    branch: str
    role: str
    groups: list[str]
    reachable: bool
    error: str
    started: str
    finished: str
    facts: dict[str, Any]
    results: list[ControlResult]
    commands: int = 0  # remote commands (round trips) spent on this host
    # the organisation's own numbers for this host (inventory kijun_vars); every other number is the
    # baseline's: a seed value, a kijun default or a class value (`kijun params` says which)
    overrides: dict[str, Any] = field(default_factory=dict)


def worst(statuses: list[str]) -> str:
    if not statuses:
        return "not-applicable"
    return max(statuses, key=STATUSES.index)


def to_dict(obj: Any) -> Any:
    return asdict(obj)
