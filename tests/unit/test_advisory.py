"""Advisories: file validation (one-line errors), the roll-out ledger and its confirmation status.

The roll-out is driven with stand-ins for pyinfra and the SSH checker (the real ones run against lab
hosts in tests/integration/test_reports_advisory.py); the ledger, store and signatures are real.
"""

import datetime as dt
import json
from pathlib import Path

import pytest
import yaml
from click.testing import CliRunner

from kijun import advisory, advisory_report, runs
from kijun.apply import HostApply, OpOutcome
from kijun.baseline import InputError
from kijun.cli import main
from kijun.model import ControlResult, HostResult
from kijun.signing import load_public_keys, public_path
from kijun.store import Store
from kijun.store_ledger import Ledger


ROOT = Path(__file__).resolve().parents[2]
EXAMPLE = ROOT / "advisories/example-icmp-redirects.yaml"

INVENTORY = """\
hq = [
    ("10.9.0.2", {"kijun_name": "hq-01", "kijun_class": "I", "kijun_org": "ministry-a", "kijun_branch": "honsho"}),
    ("10.9.0.3", {"kijun_name": "hq-02", "kijun_class": "III", "kijun_org": "ministry-a", "kijun_branch": "honsho"}),
]
kanto_branch = [
    ("10.9.1.2", {"kijun_name": "kanto-01", "kijun_class": "II", "kijun_org": "ministry-a", "kijun_branch": "kanto-branch"}),
]
"""


def mutated(tmp_path, change, name="adv.yaml"):
    data = yaml.safe_load(EXAMPLE.read_text(encoding="utf-8"))
    change(data["advisory"])
    p = tmp_path / name
    p.write_text(yaml.safe_dump(data, allow_unicode=True, sort_keys=False), encoding="utf-8")
    return p


def first_error(path):
    with pytest.raises(InputError) as exc:
        advisory.load(str(path))
    msg = str(exc.value)
    assert "\n" not in msg and msg.startswith(str(path))
    return msg


def test_shipped_examples_are_valid():
    for p in sorted((ROOT / "advisories").glob("*.yaml")):
        assert advisory.validate(str(p)) == [], p
    adv = advisory.load(str(EXAMPLE))
    assert adv.id == "EXAMPLE-2025-001" and adv.deadline_date == dt.date(2025, 6, 16)
    assert [c.id for c in adv.baseline.controls] == ["ADV-NET-001", "ADV-REC-001"]


@pytest.mark.parametrize("change, where, reason", [
    (lambda a: a.pop("deadline"), "advisory.deadline", "'deadline' is required"),
    (lambda a: a.update(deadline="2025-05-01"), "advisory.deadline", "deadline 2025-05-01 is before issued 2025-06-02"),
    (lambda a: a.update(deadline="2025-13-01"), "advisory.deadline", "2025-13-01 is not a calendar date"),
    (lambda a: a.update(issued="soon"), "advisory.issued", "issued must be a date YYYY-MM-DD (got 'soon')"),
    (lambda a: a["controls"][0].update(severity="huge"), "advisory.controls[0].severity", "'huge' is not one of"),
    (lambda a: a["controls"][0]["items"][0].update(type="nope"), "advisory.controls[0].items[0].type",
     "unknown control type 'nope'"),
    (lambda a: a.update(colour="red"), "advisory", "unknown key(s): 'colour'"),
    (lambda a: a.update(controls=[]), "advisory.controls", "should be non-empty"),
    (lambda a: a["title"].pop("ja"), "advisory.title.ja", "'ja' is required"),
])
def test_validation_errors_name_file_path_and_reason(tmp_path, change, where, reason):
    msg = first_error(mutated(tmp_path, change))
    assert f": {where}: " in msg and reason in msg, msg


def test_cli_validate(tmp_path):
    bad = mutated(tmp_path, lambda a: a.pop("deadline"))
    r = CliRunner().invoke(main, ["advisory", "validate", str(EXAMPLE), str(bad)])
    assert r.exit_code == 2 and r.output.strip().endswith("advisory.deadline: 'deadline' is required")
    r = CliRunner().invoke(main, ["advisory", "apply", str(bad), "-i", "inv.py", "--store", str(tmp_path / "s.db")])
    assert r.exit_code == 2 and r.output.startswith(f"kijun: error: {bad}")


# --- roll-out and ledger --------------------------------------------------------------------------

class FakeFleet:
    """What the hosts do: 'ok' takes the change, 'down' is unreachable, 'stuck' is reached but stays wrong."""

    def __init__(self, states):
        self.states = dict(states)
        self.applied: list[tuple[str, ...]] = []

    def apply(self, base, inventory_path, run_id, dry, limit, **kw):
        self.applied.append(limit)
        out = []
        for name in limit:
            if self.states[name] == "down":
                out.append(HostApply(name, False, "ssh: connect to host: No route to host"))
            else:
                out.append(HostApply(name, True, "", [OpOutcome(c.id, c.id, "changed") for c in base.controls]))
        return out

    def check(self, base, targets, **kw):
        out = []
        for t in targets:
            state = self.states[t.name]
            results = [ControlResult(c.id, "fail" if state == "stuck" else "pass", "1" if state == "stuck" else "0",
                                     "0", "still accepts redirects" if state == "stuck" else "") for c in base.controls]
            out.append(HostResult(t.name, t.importance_class, t.organisation, t.branch, t.role, list(t.groups),
                                  state != "down", "", "2026-11-22T10:00:00Z", "2026-11-22T10:00:01Z", {}, results))
        return out


@pytest.fixture
def setup(tmp_path, signer, key_path):  # noqa: F811
    inv = tmp_path / "inventory.py"
    inv.write_text(INVENTORY, encoding="utf-8")
    return {"inv": str(inv), "db": str(tmp_path / "runs.db"), "adv": advisory.load(str(EXAMPLE)), "signer": signer,
            "key": str(key_path)}


def roll(setup, fleet, **kw):
    with Store(setup["db"]) as st:
        return runs.roll_out(setup["adv"], setup["inv"], store=st, sign_key=setup["signer"], apply_fn=fleet.apply,
                                 check_fn=fleet.check, confirmed_by="CSIRT 佐藤", **kw)


def status(setup, today=dt.date(2025, 6, 10)):
    with Store(setup["db"]) as st:
        return runs.advisory_status(st, "EXAMPLE-2025-001", today=today, public_keys=[setup["signer"].public_key()])


def states(data):
    return {h["host"]: h["state"] for h in data["hosts"]}


def test_unreachable_host_stays_pending_until_reached_and_verified(setup, key_path):  # noqa: F811
    fleet = FakeFleet({"hq-01": "ok", "hq-02": "ok", "kanto-01": "down"})
    first = roll(setup, fleet)
    assert not first.all_confirmed
    assert {r.host: r.state for r in first.rows} == {"hq-01": "applied-and-verified", "hq-02": "applied-and-verified",
                                                     "kanto-01": "unreachable"}
    data = status(setup)
    assert states(data)["kanto-01"] == "unreachable" and not data["all_confirmed"]
    kanto = next(h for h in data["hosts"] if h["host"] == "kanto-01")
    assert kanto["pending"] and not kanto["confirmed"] and kanto["confirmed_by"] is None
    assert "No route to host" in kanto["detail"]
    assert data["summary"]["pending"] == 1 and data["deadline"] == "2025-06-16" and data["days_left"] == 6
    hq = next(h for h in data["hosts"] if h["host"] == "hq-01")
    assert hq["confirmed_by"] == "CSIRT 佐藤" and hq["confirmed_at"] and hq["run_id"] == first.run_id
    # The verification is a signed report of kind advisory, chained with the others.
    with Store(setup["db"]) as st:
        report = st.get_report(first.run_id)
        assert report["kind"] == "advisory" and report["baseline"]["id"] == "advisory-example-2025-001"
        assert st.verify_chain(load_public_keys([public_path(key_path)])) == []

    # Back online: --pending-only touches only the host not yet confirmed.
    fleet.states["kanto-01"] = "ok"
    second = roll(setup, fleet, pending_only=True)
    assert fleet.applied[-1] == ("kanto-01",)
    assert second.skipped == ["hq-01", "hq-02"] and second.all_confirmed
    data = status(setup)
    assert set(states(data).values()) == {"applied-and-verified"} and data["all_confirmed"]
    assert all(h["confirmed_by"] == "CSIRT 佐藤" for h in data["hosts"])
    # Nothing left: a third pending-only roll-out does nothing.
    third = roll(setup, fleet, pending_only=True)
    assert third.run_id is None and third.rows == [] and len(third.skipped) == 3


def test_failed_verification_and_confirmation_rules(setup):
    fleet = FakeFleet({"hq-01": "stuck", "hq-02": "ok", "kanto-01": "ok"})
    roll(setup, fleet)
    data = status(setup)
    assert states(data)["hq-01"] == "failed" and "ADV-NET-001 fail" in data["hosts"][0]["detail"]
    # A confirmed host that cannot be reached later stays confirmed; one that fails later does not.
    fleet.states.update({"hq-02": "down", "kanto-01": "stuck", "hq-01": "ok"})
    roll(setup, fleet)
    got = states(status(setup))
    assert got == {"hq-01": "applied-and-verified", "hq-02": "applied-and-verified", "kanto-01": "failed"}
    with Store(setup["db"]) as st:
        events = Ledger(st).events("EXAMPLE-2025-001", "hq-02")
    assert [e["state"] for e in events] == ["applied-and-verified", "unreachable"]


def test_status_lists_never_reached_hosts_and_overdue(setup):
    fleet = FakeFleet({"hq-01": "ok", "hq-02": "ok", "kanto-01": "ok"})
    roll(setup, fleet, limit=("hq",))  # the branch was left out of this roll-out
    data = status(setup, today=dt.date(2025, 6, 17))
    kanto = next(h for h in data["hosts"] if h["host"] == "kanto-01")
    assert kanto["state"] == "pending" and kanto["overdue"] and data["summary"]["overdue"] == 1
    assert data["days_left"] == -1
    units = {(u["organisation"], u["branch"]): (u["confirmed"], u["outstanding"]) for u in data["units"]}
    assert units == {("ministry-a", "honsho"): (2, 0), ("ministry-a", "kanto-branch"): (0, 1)}
    text = advisory_report.render_status(data, "table", "ja")
    assert "未完了" in text and "期限超過" in text and "1日超過" in text
    assert "overdue" in advisory_report.render_status(data, "markdown", "en")


def test_cli_status_exit_codes(setup):
    fleet = FakeFleet({"hq-01": "ok", "hq-02": "ok", "kanto-01": "down"})
    roll(setup, fleet)
    r = CliRunner().invoke(main, ["advisory", "status", "EXAMPLE-2025-001", "--store", setup["db"], "--key", setup["key"],
                                  "--format", "json"])
    assert r.exit_code == 1
    data = json.loads(r.stdout)
    assert states(data)["kanto-01"] == "unreachable" and not data["all_confirmed"]
    fleet.states["kanto-01"] = "ok"
    roll(setup, fleet, pending_only=True)
    r = CliRunner().invoke(main, ["advisory", "status", "EXAMPLE-2025-001", "--store", setup["db"],
                                  "--key", setup["key"]])
    assert r.exit_code == 0 and "CSIRT 佐藤" in r.output
    r = CliRunner().invoke(main, ["advisory", "status", "NOPE-1", "--store", setup["db"], "--key", setup["key"]])
    assert r.exit_code == 2 and "unknown advisory 'NOPE-1' (known: EXAMPLE-2025-001)" in r.output


def test_advisory_plans_over_an_inventory_with_the_organisations_variables():
    """A fleet inventory carries kijun_vars for the organisation's baseline (log server, proxy...): an
    advisory rolled out over it ignores them; a baseline still rejects a variable it does not know."""
    from kijun import plan
    from kijun.baseline import load as load_baseline
    from kijun.model import HostTarget

    adv = advisory.load(str(ROOT / "advisories/example-icmp-redirects.yaml"))
    target = HostTarget(name="h1", importance_class="I", variables={"log_server": "10.83.0.1"})
    assert plan.plan_host(adv.baseline, target)
    with pytest.raises(InputError, match="unknown variable"):
        plan.host_variables(load_baseline(str(ROOT / "baselines/nisc-core.yaml")),
                            HostTarget(name="h1", variables={"log_servr": "x"}))
