"""Runs: an intent becomes one report, signed and stored as it goes (issue 16).

    check       kijun.runs.checking   verify hosts read-only (fleet over SSH, or --local)
    apply       kijun.runs.change     apply, dry run (kind dry-run) and rollback
    advisory    kijun.runs.rollout    roll an advisory out, verify, record the ledger
    inspect     kijun.runs.inspection rank the gaps of a stored check run

The CLI parses options, calls one of these and picks an output; the engine (plan, probe, controls, ops,
fleet, apply) does the work; the store signs and chains (kijun.runs.keeper: open_run, RunKeeper). Every
host result is written to the store, signed, as soon as it is known, so a killed run is recovered with
what it had. Each kind is one report kind (kijun.report.KINDS), listed by `kijun runs` and verified
by `kijun verify`.
"""

from kijun.runs.change import ApplyRun, apply, host_entry, refuse_invalid_hosts, rollback, target_for
from kijun.runs.checking import CheckRun, check, check_local, load_fleet
from kijun.runs.inspection import InspectRun, inspect, inspected_hosts, store_inspection
from kijun.runs.keeper import (
    KEY_FILE_LIMIT, RunKeeper, StopOnSignal, apply_waivers, key_file, load_waivers, open_run, public_keys, scope_of,
    sealed_on_error, signer, verify_store,
)
from kijun.runs.rollout import RollOut, judge, roll_out
from kijun.runs.rollout import status as advisory_status

__all__ = [
    "ApplyRun", "CheckRun", "InspectRun", "KEY_FILE_LIMIT", "RollOut", "RunKeeper", "StopOnSignal", "apply",
    "advisory_status", "apply_waivers", "check", "check_local", "host_entry", "inspect", "inspected_hosts", "judge", "key_file",
    "load_fleet", "load_waivers", "open_run", "public_keys", "refuse_invalid_hosts", "roll_out", "rollback",
    "scope_of", "sealed_on_error", "signer", "store_inspection", "target_for", "verify_store",
]
