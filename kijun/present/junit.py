"""JUnit XML from a report, for CI dashboards: a testsuite per host, a testcase per control.

A dry run has no results: its operations are the cases (would-change and failed are failures: the
host is not in the desired state). Times are ISO 8601 with the operator's offset.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

from kijun.present import when
from kijun.present.base import Output
from kijun.present.text import finding

HOST_CASE = "(reachable)"
# Characters XML 1.0 cannot carry at all (command output may contain escape codes or NULs).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    return _XML_ILLEGAL.sub("\ufffd", str(value or ""))


def _detail(result: dict[str, Any], lang: str) -> str:
    title = (result.get("title") or {}).get(lang) or (result.get("title") or {}).get("en")
    lines = [f"{k}: {_text(v)}" for k, v in (("title", title), ("severity", result.get("severity"))) if v]
    lines += [f"{k}: {_text(finding(result, k, lang))}" for k in ("observed", "expected", "reason") if result.get(k)]
    lines += [f"evidence: {_text(result['evidence'])}"] if result.get("evidence") else []
    lines += [f"item: {_text(i.get('type'))} {_text(_params(i.get('params')))}" for i in result.get("items") or []
              if isinstance(i, dict) and i.get("type") and i.get("status") == result.get("status")]
    return "\n".join(lines)


def _params(params: Any) -> str:
    import json

    return json.dumps(params or {}, ensure_ascii=False, sort_keys=True)


def _message(result: dict[str, Any], lang: str) -> str:
    if result.get("reason"):
        return _text(finding(result, "reason", lang))
    return _text(f"observed {finding(result, 'observed', lang)!r}, expected {finding(result, 'expected', lang)!r}")


def _testcase(suite: ET.Element, host: str, name: str, status: str, result: dict[str, Any], lang: str) -> str:
    case = ET.SubElement(suite, "testcase", classname=host, name=name, time="0")
    if status == "fail":
        kind = "failure"
    elif status in ("error", "unreachable"):
        kind = "error"
    elif status in ("not-applicable", "waived"):
        kind = "skipped"
    else:
        return "tests"
    el = ET.SubElement(case, kind, message=_message(result, lang) if kind != "skipped" else _skip_message(status, result))
    if kind != "skipped":
        el.set("type", status)
        el.text = _detail(result, lang)
    return kind


def _skip_message(status: str, result: dict[str, Any]) -> str:
    waiver = result.get("waiver") or {}
    reason = result.get("reason") or waiver.get("reason") or waiver.get("justification") or ""
    return _text(f"{status}: {reason}" if reason else status)


CHANGE_AS_STATUS = {"would-change": "fail", "failed": "error", "changed": "pass", "unchanged": "pass"}


def _change_cases(host: dict[str, Any]) -> list[tuple[str, str, dict[str, Any]]]:
    return [(c.get("name") or c.get("control_id", ""), CHANGE_AS_STATUS.get(c.get("status"), "error"),
             {"control_id": c.get("control_id"), "observed": c.get("status"), "reason": c.get("detail") or c.get("reason") or "",
              "expected": "unchanged"}) for c in host.get("changes") or []]


def to_element(report: dict[str, Any], lang: str = "en") -> ET.Element:
    root = ET.Element("testsuites", name=f"kijun {report.get('kind', '')} {report.get('run_id', '')}".strip())
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    baseline = report.get("baseline") or {}
    for host in report.get("hosts") or []:
        name = _text(host["host"])
        suite = ET.SubElement(root, "testsuite", name=name, hostname=name, timestamp=when.machine(_text(host.get("started"))))
        props = ET.SubElement(suite, "properties")
        for key, value in (("run_id", report.get("run_id")), ("baseline", baseline.get("id")),
                           ("baseline_version", baseline.get("version")),
                           ("importance_class", host.get("importance_class")), ("role", host.get("role"))):
            if value:
                ET.SubElement(props, "property", name=key, value=_text(value))
        counts = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
        if not host.get("reachable", True):
            # Its control results (if any) say nothing beyond "unreachable": one error, not N.
            cases = [(HOST_CASE, "unreachable", {"reason": host.get("error") or "host unreachable"})]
        elif host.get("results") or not host.get("changes"):
            cases = [(r["control_id"], r["status"], r) for r in host.get("results") or []]
        else:  # a dry run or rollback: the operations are what it found
            cases = _change_cases(host)
        for case_name, status, result in cases:
            kind = _testcase(suite, name, _text(case_name), status, result, lang)
            counts["tests"] += 1
            if kind != "tests":
                counts[kind] += 1
        suite.set("tests", str(counts["tests"]))
        suite.set("failures", str(counts["failure"]))
        suite.set("errors", str(counts["error"]))
        suite.set("skipped", str(counts["skipped"]))
        for k in totals:
            totals[k] += counts[k]
    root.set("tests", str(totals["tests"]))
    root.set("failures", str(totals["failure"]))
    root.set("errors", str(totals["error"]))
    root.set("skipped", str(totals["skipped"]))
    return root


def to_junit(report: dict[str, Any], lang: str = "en") -> str:
    root = to_element(report, lang)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_junit(report), encoding="utf-8")
    return path


class JUnit(Output):
    name = "junit"
    machine = True
    suffix = ".xml"

    def run(self, report: dict[str, Any]) -> str:
        return to_junit(report, self.lang)
