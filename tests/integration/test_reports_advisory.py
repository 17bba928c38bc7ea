"""Auditor reports on stored runs of real lab hosts, and an advisory rolled out with a host down (issue 5).

- two signed check runs of the lab are stored; `kijun matrix` renders them in every format and
  language, each agreeing with the check results, and the HTML page is read back from headless Chromium;
- `kijun inspect` ranks the lab's real gaps by class x severity, per organisation/branch, stored signed;
- an advisory rolled out while one host is stopped leaves that host pending (unreachable) and the
  roll-out non-zero; once the host is back, `--pending-only` reaches, applies and verifies it and the
  ledger is complete, each host confirmed by whom and before the deadline.
"""

from __future__ import annotations

import csv
import datetime as dt
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kijun.lab.hosts import exec_in, start_host, stop_host
from test_apply_check import INVENTORY, ROOT, kijun, lab_baseline, signing, statuses  # noqa: F401 (fixtures)

sys.path.insert(0, str(ROOT / "tests/unit"))  # the DOM reader of the HTML unit tests, shared
from test_html_browser import CHROMIUM, FLAGS, _DomFigures  # noqa: E402

CONFIRMER = "CSIRT 佐藤"


MARKERS = {"high": "LAB-MARK-901", "low": "LAB-MARK-902"}


@pytest.fixture(scope="module")
def report_baseline(lab_baseline, tmp_path_factory) -> str:
    """The lab baseline plus two targeted-attack controls that fail on every lab host, one high and one
    low (nisc-core has no low-severity control): real gaps on real hosts for the ranking."""
    data = yaml.safe_load(Path(lab_baseline).read_text(encoding="utf-8"))
    template = next(c for c in data["controls"] if "targeted-attack" in c.get("tags", []))
    for severity, cid in MARKERS.items():
        c = json.loads(json.dumps(template))
        c.update(id=cid, severity=severity, classes=["I", "II", "III", "IV"], tags=["targeted-attack"],
                 title={"ja": f"点検用マーカー({severity})", "en": f"Inspection marker ({severity})"},
                 items=[{"type": "file_content", "path": f"/etc/kijun/{cid.lower()}", "content": "marker\n"}])
        data["controls"].append(c)
    path = tmp_path_factory.mktemp("report-baseline") / "nisc-core-lab-report.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path)


@pytest.fixture(scope="module")
def stored(lab, report_baseline, signing):
    """Two signed check runs of every lab host in the store; the last one's results."""
    results = []
    for _ in range(2):
        r = kijun("check", "-i", INVENTORY, "-b", report_baseline, "--store", signing["store"], "--key", signing["key"],
                  "--format", "json")
        assert r.returncode in (0, 1), r.stderr[-2000:]
        results.append(json.loads(r.stdout))
    return results[-1]


def matrix(signing, report_baseline, *args: str) -> subprocess.CompletedProcess:
    r = kijun("matrix", "--store", signing["store"], "-b", report_baseline, *args)
    assert r.returncode == 0, r.stderr[-2000:]
    return r


def test_matrix_formats_agree_with_the_stored_lab_runs(lab, stored, signing, report_baseline, tmp_path):
    expected = statuses(stored)
    data = json.loads(matrix(signing, report_baseline, "--format", "json").stdout)
    assert sorted(h["host"] for h in data["hosts"]) == sorted(h["host"] for h in stored["hosts"])
    ids = [c["id"] for c in data["controls"]]
    cells = {h["host"]: dict(zip(ids, h["cells"])) for h in data["hosts"]}
    assert cells == expected
    assert data["run"]["signed_by"] and data["baseline"]["matches_run"] is True
    assert len(data["trend"]) == 2 and all(p["applicable"] > 0 for p in data["trend"])
    all_statuses = [s for per_host in expected.values() for s in per_host.values()]
    by_status = {s: all_statuses.count(s) for s in data["statuses"]}
    assert {k: v for k, v in data["totals"]["by_status"].items() if v} == {k: v for k, v in by_status.items() if v}
    # Clause x organisation/branch rollup: every lab branch appears under some clause.
    branches = {(h["organisation"], h["branch"]) for h in stored["hosts"]}
    assert branches <= {(u["organisation"], u["branch"]) for c in data["clauses"] for u in c["units"]}

    rows = list(csv.reader(io.StringIO(matrix(signing, report_baseline, "--format", "csv").stdout)))
    assert len(rows) == 1 + len(data["hosts"]) and all(cid in rows[0] for cid in ids)
    for row in rows[1:]:
        host = next(v for v in row if v in {h["host"] for h in data["hosts"]})
        assert [row[rows[0].index(cid)] for cid in ids] == [expected[host][cid] for cid in ids]
    md = matrix(signing, report_baseline, "--format", "markdown", "--lang", "ja").stdout
    assert all(h["host"] in md for h in data["hosts"]) and "|" in md
    table = matrix(signing, report_baseline, "--format", "table", "--lang", "ja").stdout
    assert all(h["host"] in table for h in data["hosts"])
    trend_csv = list(csv.reader(io.StringIO(matrix(signing, report_baseline, "--format", "csv", "--view", "trend").stdout)))
    assert len(trend_csv) == 1 + 2

    for lang in ("en", "ja"):
        page = tmp_path / f"matrix-{lang}.html"
        matrix(signing, report_baseline, "--format", "html", "--lang", lang, "-o", str(page))
        out = subprocess.run([CHROMIUM, *FLAGS, f"--user-data-dir={tmp_path / ('profile-' + lang)}", "--dump-dom",
                              page.as_uri()], capture_output=True, text=True, timeout=120)
        assert out.returncode == 0, out.stderr[-2000:]
        dom = _DomFigures()
        dom.feed(out.stdout)
        assert dom.root.get("lang") == lang
        assert dom.root.get("data-kijun-ready") == "1" and dom.root.get("data-kijun-consistent") == "1"
        assert dom.cells == [s for h in data["hosts"] for s in h["cells"]]
        assert dom.counts == {k: v for k, v in data["totals"]["by_status"].items()}
        assert dom.trend == [f"{p['pass_percent']:.1f}%" for p in data["trend"]]


def test_inspect_ranks_the_lab_gaps_and_is_stored_signed(lab, stored, signing, report_baseline):
    r = kijun("inspect", "--store", signing["store"], "--key", signing["key"], "-b", report_baseline,
              "--classes", "I,II,III,IV", "--format", "json")
    assert r.returncode in (0, 1), r.stderr[-2000:]
    data = json.loads(r.stdout)
    gaps = data["gaps"]
    assert {g["control_id"] for g in gaps} >= set(MARKERS.values())
    assert [g["rank"] for g in gaps] == list(range(1, len(gaps) + 1))
    assert [g["score"] for g in gaps] == sorted((g["score"] for g in gaps), reverse=True)
    expected = statuses(stored)
    for g in gaps:  # every gap is a real non-pass result of the stored run
        assert expected[g["host"]][g["control_id"]] in ("fail", "error", "unreachable")
    high_i = [g["rank"] for g in gaps if g["importance_class"] == "I" and g["severity"] in ("high", "critical")]
    low_iii = [g["rank"] for g in gaps if g["importance_class"] == "III" and g["severity"] == "low"]
    assert high_i and low_iii, (high_i, low_iii)
    assert max(high_i) < min(low_iii)
    units = {(u["organisation"], u["branch"]) for u in data["units"]}
    assert units == {(h["organisation"], h["branch"]) for h in stored["hosts"]}
    assert sorted(rk for u in data["units"] for rk in u["ranks"]) == [g["rank"] for g in gaps]
    assert data["inspect_run"] and data["inspect_run"]["run_id"]
    v = kijun("verify", "--store", signing["store"], "--pub", signing["pub"])
    assert v.returncode == 0, v.stdout + v.stderr


@pytest.fixture
def advisory_file(tmp_path) -> tuple[str, str, str]:
    """The shipped ICMP-redirect advisory, due in two weeks."""
    data = yaml.safe_load((ROOT / "advisories/example-icmp-redirects.yaml").read_text(encoding="utf-8"))
    deadline = (dt.date.today() + dt.timedelta(days=14)).isoformat()
    data["advisory"]["deadline"] = deadline
    path = tmp_path / "advisory.yaml"
    path.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return str(path), data["advisory"]["id"], deadline


def test_advisory_host_down_stays_pending_until_back_and_verified(lab, signing, advisory_file, tmp_path):
    path, adv_id, deadline = advisory_file
    store = str(tmp_path / "ledger.db")
    common = ("--store", store, "--key", signing["key"], "--format", "json")
    down = lab.hosts[-1]
    record = f"/etc/kijun/advisories/{adv_id}"
    exec_in(down.name, f"rm -f {record}; sysctl -qw net.ipv4.conf.all.accept_redirects=1", state_dir=lab.state_dir)
    stop_host(down.name, lab.state_dir)
    try:
        r = kijun("advisory", "apply", path, "-i", INVENTORY, "--confirmed-by", CONFIRMER, "--connect-timeout", "60",
                  *common)
        assert r.returncode == 1, r.stdout + r.stderr[-2000:]
        s = kijun("advisory", "status", adv_id, "--store", store, "--pub", signing["pub"], "--format", "json")
        assert s.returncode == 1, s.stderr
        status = json.loads(s.stdout)
        rows = {h["host"]: h for h in status["hosts"]}
        assert set(rows) == {h.name for h in lab.hosts}
        assert rows[down.name]["state"] == "unreachable" and rows[down.name]["pending"] is True
        assert rows[down.name]["confirmed_by"] is None
        for h in lab.hosts[:-1]:
            assert rows[h.name]["state"] == "applied-and-verified", rows[h.name]
            assert rows[h.name]["confirmed_by"] == CONFIRMER and rows[h.name]["confirmed_at"]
        assert status["deadline"] == deadline and status["summary"]["overdue"] == 0
        assert status["summary"]["pending"] == 1 and status["all_confirmed"] is False
    finally:
        start_host(down.name, lab.state_dir)

    # Back: the pending host alone is reached, applied, verified and confirmed.
    r = kijun("advisory", "apply", path, "-i", INVENTORY, "--confirmed-by", CONFIRMER, "--pending-only", *common)
    assert r.returncode == 0, r.stdout + r.stderr[-2000:]
    s = kijun("advisory", "status", adv_id, "--store", store, "--pub", signing["pub"], "--format", "json")
    assert s.returncode == 0, s.stdout + s.stderr
    status = json.loads(s.stdout)
    assert status["all_confirmed"] is True and status["summary"]["confirmed"] == len(lab.hosts)
    assert {h["state"] for h in status["hosts"]} == {"applied-and-verified"}
    assert all(h["confirmed_by"] == CONFIRMER and h["confirmed_at"][:10] <= deadline for h in status["hosts"])
    # The countermeasure is really on the host that was down.
    on_host = exec_in(down.name, f"cat {record}; sysctl -n net.ipv4.conf.all.accept_redirects",
                      state_dir=lab.state_dir).stdout
    assert f"{adv_id} applied by kijun" in on_host and on_host.strip().endswith("0")
    v = kijun("verify", "--store", store, "--pub", signing["pub"])
    assert v.returncode == 0, v.stdout + v.stderr
