"""Every run is a signed, stored report (issue 16): dry run, apply and check against real lab hosts.

`kijun apply --dry`, `kijun apply` and `kijun check` land in one store, `kijun runs` lists the three
kinds, `kijun verify` accepts the chain and catches an edited apply report, and `kijun drift --since
dry-run` compares the dry run's predictions with the check that follows the apply.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from test_apply_check import INVENTORY, kijun, lab_baseline, plant_drift, signing  # noqa: F401,F811 (fixtures)


@pytest.mark.timeout(3600)  # a first full apply of fresh hosts on a busy 2-core machine, then three runs
def test_dry_run_apply_check_are_stored_signed_and_compared(lab, lab_baseline, signing, tmp_path):  # noqa: F811
    store = str(tmp_path / "runs.db")
    opts = ["--store", store, "--key", signing["key"]]
    # the starting point is a fleet that follows the baseline (the module gets freshly reset hosts), then an
    # admin's drift on each host: what the dry run must predict and the apply fix
    kijun("apply", "-i", INVENTORY, "-b", lab_baseline, "--no-store", "--no-verify", check=True)
    drifted = plant_drift(lab)

    dry = kijun("apply", "-i", INVENTORY, "-b", lab_baseline, "--dry", "--format", "json", *opts)
    assert dry.returncode in (0, 1) and "dry-run report stored and signed" in dry.stderr, dry.stderr[-3000:]
    real = kijun("apply", "-i", INVENTORY, "-b", lab_baseline, "--format", "json", *opts)
    assert real.returncode == 0, real.stdout[-3000:] + real.stderr[-3000:]
    assert "apply report stored and signed" in real.stderr
    check = kijun("check", "-i", INVENTORY, "-b", lab_baseline, *opts)
    assert check.returncode == 0, check.stdout[-3000:] + check.stderr[-2000:]

    listed = kijun("runs", "--store", store)
    kinds = [line.split()[1] for line in listed.stdout.splitlines()[2:]]
    assert kinds == ["dry-run", "apply", "check"], listed.stdout

    exported = tmp_path / "export"
    kijun("runs", "--store", store, "--export", str(exported), check=True)
    reports = {r["kind"]: r for r in (json.loads(p.read_text(encoding="utf-8")) for p in exported.glob("*.json"))}
    would = {h["host"]: {c["control_id"] for c in h["changes"] if c["status"] == "would-change"}
             for h in reports["dry-run"]["hosts"]}
    changed = {h["host"]: {c["control_id"] for c in h["changes"] if c["status"] == "changed"}
               for h in reports["apply"]["hosts"]}
    assert all(would.values()) and would == changed, (would, changed)  # each planted drift was predicted, then fixed
    for h in reports["apply"]["hosts"]:  # after apply the host's verdicts are the re-verification
        assert h["results"] and all(r["status"] in ("pass", "not-applicable") for r in h["results"]), h["host"]
    assert not any(c["status"] == "changed" for h in reports["dry-run"]["hosts"] for c in h["changes"])
    assert set(drifted) <= set(would)

    drift = kijun("drift", "--store", store, "--since", "dry-run", "--format", "json")
    assert drift.returncode == 0, drift.stdout + drift.stderr  # everything the dry run predicted is now fixed
    d = json.loads(drift.stdout)
    assert (d["old_run"], d["new_run"]) == (reports["dry-run"]["run_id"], reports["check"]["run_id"])
    assert {(c["host"], c["control_id"]) for c in d["fixed"]} == {(h, c) for h, cs in would.items() for c in cs}

    ok = kijun("verify", "--store", store, "--key", signing["key"])
    assert ok.returncode == 0, ok.stderr

    db = sqlite3.connect(store)
    run_id = reports["apply"]["run_id"]
    text = db.execute("SELECT report FROM kijun_runs WHERE run_id = ?", (run_id,)).fetchone()[0]
    db.execute("UPDATE kijun_runs SET report = ? WHERE run_id = ?", (text.replace('"changed"', '"unchanged"', 1), run_id))
    db.commit()
    db.close()
    bad = kijun("verify", "--store", store, "--key", signing["key"])
    assert bad.returncode == 1 and run_id in bad.stderr, bad.stdout + bad.stderr


def test_apply_no_store_stores_nothing(lab, lab_baseline, signing, tmp_path):  # noqa: F811
    store = str(tmp_path / "none.db")
    r = kijun("apply", "-i", INVENTORY, "-b", lab_baseline, "--dry", "--no-store", "--store", store, "--format", "json")
    assert r.returncode in (0, 1) and json.loads(r.stdout), r.stderr[-2000:]
    assert "stored" not in r.stderr
    assert not Path(store).exists()  # not even an empty store
    listed = kijun("runs", "--store", store)  # `runs` only reads: it creates no store either
    assert listed.returncode == 2 and f"no store at {store}" in listed.stderr and "dry-run" not in listed.stdout
