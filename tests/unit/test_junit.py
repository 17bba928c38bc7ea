import xml.etree.ElementTree as ET

from kijun.junit import HOST_CASE, to_junit, write_junit
from kijun.model import ControlResult, HostResult
from kijun.report import build_report


def host(name, results, reachable=True):
    return HostResult(host=name, importance_class="I", organisation="", branch="", role="web", groups=[],
                      reachable=reachable, error="" if reachable else "ssh: no route to host",
                      started="2026-11-22T22:15:00Z", finished="2026-11-22T22:15:01Z", facts={}, results=results)


REPORT = build_report("check", [
    host("web1", [
        ControlResult("SSH-001", "pass", "no", "no"),
        ControlResult("SSH-002", "fail", "yes", "no", reason="root login allowed", evidence="sshd -T"),
        ControlResult("SYS-001", "error", "", "0", reason="sysctl: not found"),
        ControlResult("PKG-001", "not-applicable", "", "", reason="no GUI installed"),
        ControlResult("AUD-001", "waived", "off", "on", waiver={"id": "W-1", "reason": "appliance"}),
    ]),
    host("db1", [ControlResult("SSH-001", "unreachable", "", "")], reachable=False),
], version="0.1.0")


def parse(report=REPORT):
    return ET.fromstring(to_junit(report).encode("utf-8"))


def test_counts_and_structure():
    root = parse()
    assert root.tag == "testsuites"
    assert (root.get("tests"), root.get("failures"), root.get("errors"), root.get("skipped")) == ("6", "1", "2", "2")
    suites = {s.get("name"): s for s in root.findall("testsuite")}
    assert list(suites) == ["web1", "db1"]
    web = suites["web1"]
    assert (web.get("tests"), web.get("failures"), web.get("errors"), web.get("skipped")) == ("5", "1", "1", "2")
    cases = {c.get("name"): c for c in web.findall("testcase")}
    assert list(cases) == ["SSH-001", "SSH-002", "SYS-001", "PKG-001", "AUD-001"]
    assert all(c.get("classname") == "web1" for c in cases.values())
    assert list(cases["SSH-001"]) == []


def test_failure_error_and_skipped_details():
    web = parse().find("testsuite[@name='web1']")
    failure = web.find("testcase[@name='SSH-002']/failure")
    assert failure.get("message") == "root login allowed"
    assert "observed: yes" in failure.text and "expected: no" in failure.text and "evidence: sshd -T" in failure.text
    assert web.find("testcase[@name='SYS-001']/error").get("message") == "sysctl: not found"
    assert web.find("testcase[@name='PKG-001']/skipped").get("message") == "not-applicable: no GUI installed"
    assert web.find("testcase[@name='AUD-001']/skipped").get("message") == "waived: appliance"


def test_unreachable_host_is_one_error_case():
    db = parse().find("testsuite[@name='db1']")
    cases = db.findall("testcase")
    assert [c.get("name") for c in cases] == [HOST_CASE]
    err = cases[0].find("error")
    assert err.get("type") == "unreachable" and err.get("message") == "ssh: no route to host"
    assert db.get("errors") == "1"


def test_control_characters_in_output_still_give_parseable_xml(tmp_path):
    r = build_report("check", [host("h", [ControlResult("X-1", "fail", "\x1b[31mred\x00", "plain")])], version="0.1.0")
    path = write_junit(r, tmp_path / "junit.xml")
    root = ET.parse(path).getroot()
    assert "red" in root.find(".//failure").text


def test_properties_name_the_run():
    props = {p.get("name"): p.get("value") for p in parse().find("testsuite[@name='web1']/properties")}
    assert props["run_id"] == REPORT["run_id"] and props["importance_class"] == "I"
