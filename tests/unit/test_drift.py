import json

import pytest

from kijun import present
from kijun.baseline import InputError
from kijun.drift import EXIT_DRIFT, EXIT_NO_DRIFT, HOST_CHECK, compare, exit_code


def render(drift, fmt="table", lang="en"):
    return present.render(fmt, "drift", drift, lang)


def host(name, statuses, reachable=True):
    return {
        "host": name, "reachable": reachable, "error": "" if reachable else "ssh timeout",
        "results": [{"control_id": cid, "status": st, "observed": f"{cid}={st}", "expected": "ok", "reason": ""}
                    for cid, st in statuses.items()],
    }


def report(run_id, *hosts, complete=True):
    return {"run_id": run_id, "complete": complete, "hosts": list(hosts)}


OLD = report(
    "20261121T000000Z-aaaaaa",
    host("web1", {"A": "pass", "B": "fail", "C": "not-applicable", "D": "waived", "E": "error", "F": "pass"}),
    host("web2", {"A": "pass"}),
    host("db1", {"A": "fail"}),
    host("old1", {"A": "pass"}),
)
NEW = report(
    "20261122T000000Z-bbbbbb",
    host("web1", {"A": "fail", "B": "pass", "C": "error", "D": "fail", "E": "fail", "F": "pass", "G": "fail"}),
    host("web2", {"A": "pass"}, reachable=False),
    host("db1", {"A": "waived"}),
    host("new1", {"A": "fail", "B": "pass"}),
)


def keyed(changes):
    return {(c.host, c.control_id): (c.old_status, c.new_status) for c in changes}


def test_classification():
    d = compare(OLD, NEW)
    assert keyed(d.new_failures) == {
        ("web1", "A"): ("pass", "fail"),
        ("web1", "C"): ("not-applicable", "error"),
        ("web1", "D"): ("waived", "fail"),
        ("web1", "G"): (None, "fail"),  # a control new to the baseline that fails
        ("web2", HOST_CHECK): ("pass", "unreachable"),
        ("new1", "A"): (None, "fail"),
    }
    assert keyed(d.fixed) == {("web1", "B"): ("fail", "pass"), ("db1", "A"): ("fail", "waived")}
    assert keyed(d.still_failing) == {("web1", "E"): ("error", "fail")}
    assert d.hosts_new == ["new1"] and d.hosts_gone == ["old1"]
    assert (d.old_run, d.new_run) == (OLD["run_id"], NEW["run_id"])
    assert exit_code(d) == EXIT_DRIFT == 1


def test_observed_values_are_carried():
    [change] = [c for c in compare(OLD, NEW).new_failures if (c.host, c.control_id) == ("web1", "A")]
    assert (change.old_observed, change.new_observed) == ("A=pass", "A=fail")


def test_unreachable_host_controls_are_not_guessed():
    old = report("o", host("h", {"A": "pass", "B": "fail"}, reachable=False))
    new = report("n", host("h", {"A": "pass", "B": "fail"}))
    d = compare(old, new)
    assert keyed(d.fixed) == {("h", HOST_CHECK): ("unreachable", "pass")}
    assert keyed(d.new_failures) == {("h", "B"): (None, "fail")}  # not known to fail before
    d2 = compare(new, old)
    assert keyed(d2.new_failures) == {("h", HOST_CHECK): ("pass", "unreachable")}
    assert d2.still_failing == [] and d2.fixed == []
    d3 = compare(old, old)
    assert keyed(d3.still_failing) == {("h", HOST_CHECK): ("unreachable", "unreachable")}
    assert exit_code(d3) == EXIT_NO_DRIFT


def test_no_drift_when_nothing_got_worse():
    d = compare(OLD, OLD)
    assert d.new_failures == [] and d.fixed == []
    assert keyed(d.still_failing) == {("web1", "B"): ("fail", "fail"), ("web1", "E"): ("error", "error"),
                                      ("db1", "A"): ("fail", "fail")}
    assert exit_code(d) == EXIT_NO_DRIFT == 0


def test_render_table_english_and_japanese():
    d = compare(OLD, NEW)
    en = render(d, lang="en")
    assert "New failures (6)" in en and "Fixed (2)" in en and "Still failing (1)" in en
    assert "Hosts gone (1): old1" in en and "result: new drift (6 new failure(s))" in en
    ja = render(d, lang="ja")
    assert "新たな不適合 (6)" in ja and "是正済み (2)" in ja and "消えたホスト (1): old1" in ja
    assert "適合" in ja and "不適合" in ja and "到達不能" in ja
    assert "新たな逸脱なし" in render(compare(OLD, OLD), lang="ja")


def test_render_notes_an_incomplete_newer_run():
    new = dict(NEW, complete=False)
    assert "incomplete" in render(compare(OLD, new))


def test_long_observed_values_are_wrapped_in_tables_but_whole_in_json():
    long = "x" * 500
    old = report("o", host("h", {"A": "pass"}))
    new = report("n", host("h", {"A": "fail"}))
    new["hosts"][0]["results"][0]["observed"] = long + "\nmore"
    table = render(compare(old, new))
    cells = "".join(line for line in table.splitlines() if line.startswith("|"))
    assert long not in table and cells.count("x") == 500 and "more" in cells  # wrapped onto lines, nothing cut
    data = json.loads(render(compare(old, new), fmt="json"))
    assert data["new_failures"][0]["new_observed"] == long + "\nmore"
    assert data["exit_code"] == 1


def test_json_render_shape():
    data = json.loads(render(compare(OLD, NEW), fmt="json"))
    assert set(data) >= {"old_run", "new_run", "new_failures", "fixed", "still_failing", "hosts_new", "hosts_gone"}
    assert data["new_failures"][0].keys() >= {"host", "control_id", "old_status", "new_status",
                                              "old_observed", "new_observed"}


def test_bad_render_arguments():
    with pytest.raises(ValueError):
        render(compare(OLD, NEW), lang="fr")
    with pytest.raises(InputError, match="unknown output format"):
        render(compare(OLD, NEW), fmt="xml")
    with pytest.raises(InputError, match="drift has no junit output"):
        render(compare(OLD, NEW), fmt="junit")
