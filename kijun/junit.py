"""JUnit XML from a report, for CI dashboards: a testsuite per host, a testcase per control."""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from pathlib import Path
from typing import Any

HOST_CASE = "(reachable)"
# Characters XML 1.0 cannot carry at all (command output may contain escape codes or NULs).
_XML_ILLEGAL = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ud800-\udfff\ufffe\uffff]")


def _text(value: Any) -> str:
    return _XML_ILLEGAL.sub("\ufffd", str(value or ""))


def _detail(result: dict[str, Any]) -> str:
    lines = [f"{k}: {_text(result.get(k))}" for k in ("observed", "expected", "reason", "evidence") if result.get(k)]
    return "\n".join(lines)


def _message(result: dict[str, Any]) -> str:
    if result.get("reason"):
        return _text(result["reason"])
    return _text(f"observed {result.get('observed', '')!r}, expected {result.get('expected', '')!r}")


def _testcase(suite: ET.Element, host: str, name: str, status: str, result: dict[str, Any]) -> str:
    case = ET.SubElement(suite, "testcase", classname=host, name=name, time="0")
    if status == "fail":
        kind = "failure"
    elif status in ("error", "unreachable"):
        kind = "error"
    elif status in ("not-applicable", "waived"):
        kind = "skipped"
    else:
        return "tests"
    el = ET.SubElement(case, kind, message=_message(result) if kind != "skipped" else _skip_message(status, result))
    if kind != "skipped":
        el.set("type", status)
        el.text = _detail(result)
    return kind


def _skip_message(status: str, result: dict[str, Any]) -> str:
    waiver = result.get("waiver") or {}
    reason = result.get("reason") or waiver.get("reason") or ""
    return _text(f"{status}: {reason}" if reason else status)


def to_element(report: dict[str, Any]) -> ET.Element:
    root = ET.Element("testsuites", name=f"kijun {report.get('kind', '')} {report.get('run_id', '')}".strip())
    totals = {"tests": 0, "failure": 0, "error": 0, "skipped": 0}
    baseline = report.get("baseline") or {}
    for host in report.get("hosts") or []:
        name = _text(host["host"])
        suite = ET.SubElement(root, "testsuite", name=name, hostname=name, timestamp=_text(host.get("started")))
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
        else:
            cases = [(r["control_id"], r["status"], r) for r in host.get("results") or []]
        for case_name, status, result in cases:
            kind = _testcase(suite, name, _text(case_name), status, result)
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


def to_junit(report: dict[str, Any]) -> str:
    root = to_element(report)
    ET.indent(root)
    return ET.tostring(root, encoding="unicode", xml_declaration=True) + "\n"


def write_junit(report: dict[str, Any], path: str | Path) -> Path:
    path = Path(path)
    path.write_text(to_junit(report), encoding="utf-8")
    return path
