"""The early-inspection run (seed 001, 資料2 1.): a stored check run read for the targeted-attack
controls of the important systems, its gaps ranked (kijun.inspect_report.build), and the inspection
stored as one signed report of kind "inspect".

Looking needs no key: without --no-store the inspection is stored and signed when a key is there; when
no key was given and the default one does not exist, it is shown and said to be not stored. A --key
(or KIJUN_SIGNING_KEY) that cannot be loaded is an error: the operator asked for a signature.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from kijun.inputs import InputError
from kijun.runs.keeper import RunKeeper, Say, _stderr, key_file, open_run, sealed_on_error, signer


@dataclass
class InspectRun:
    data: dict[str, Any]  # the inspection (kijun.inspect_report.build), with inspect_run once stored
    source: dict[str, Any]  # the check report inspected
    report: dict[str, Any] | None  # the signed, stored report of kind "inspect"
    keeper: RunKeeper | None
    not_stored: str = ""  # why it was not stored ("" when stored, or --no-store)

    @property
    def stored(self) -> bool:
        return self.keeper is not None and self.keeper.stored


def inspected_hosts(data: dict[str, Any], source: dict[str, Any]) -> list[dict[str, Any]]:
    """The host entries of the stored inspection: the inspected hosts with only the inspected controls;
    each gap result carries its priority, each host the run it was inspected from."""
    inspected = {c["id"] for c in data["controls"]}
    priority = {(g["host"], g["control_id"]): g for g in data["gaps"]}
    wanted = {h["host"] for h in data["hosts"]}
    out = []
    for h in source.get("hosts") or []:
        if h["host"] not in wanted:
            continue
        results = []
        for r in h.get("results") or []:
            if r["control_id"] not in inspected:
                continue
            r = dict(r)
            g = priority.get((h["host"], r["control_id"]))
            if g is not None:
                r["priority"] = {"rank": g["rank"], "score": g["score"], "gap": g["gap"], "severity": g["severity"]}
            results.append(r)
        facts = {k: v for k, v in (h.get("facts") or {}).items() if k in ("hostname", "os", "kernel")}
        out.append({**h, "facts": facts, "results": results, "inspected_from": source["run_id"]})
    return out


def store_inspection(data: dict[str, Any], source: dict[str, Any], *, store_url=None, key_path=None, store=None,
                     sign_key=None, say: Say = _stderr) -> tuple[dict[str, Any], RunKeeper]:
    """Seal the inspection as a signed, chained report of kind "inspect"; data gets its inspect_run."""
    keeper = open_run("inspect", source.get("baseline"), source.get("inventory"), None, store_url=store_url,
                      key_path=key_path, no_store=False, say=say, store=store, sign_key=sign_key)
    with sealed_on_error(keeper):
        for entry in inspected_hosts(data, source):
            keeper.add(entry)
    signed = keeper.seal(complete=True)
    if keeper.stored:
        data["inspect_run"] = {"run_id": keeper.run_id, "sequence": signed["chain"]["sequence"],
                               "signed_by": signed["signature"]["key_id"]}
    return signed, keeper


def inspect(*, store_url, key_path, no_store: bool, run_id: str | None, baseline_path: str | None,
            classes: tuple[str, ...], tags: tuple[str, ...], lang: str, say: Say = _stderr) -> InspectRun:
    """Inspect a stored check run (the given one, else the latest complete one) and store it signed."""
    from kijun import baseline as baseline_mod
    from kijun import inspect_report
    from kijun.store import Store

    sign_key, not_stored = None, ""
    if not no_store:
        if key_path is None and not key_file(None).exists():
            not_stored = f"no signing key at {key_file(None)} (run `kijun keygen` to store inspections signed)"
        else:
            sign_key = signer(key_path)  # before any work: a given key that cannot be used is an error
    with Store(store_url, create=False) as st:  # it inspects a stored run: a missing store is an error, never made
        source = st.pick(run_id)
        base = baseline_mod.for_report(source, baseline_path)
        if base is None:
            raise InputError(str(baseline_path or "<baseline>"), "", "inspect needs the baseline (tags, severities): pass -b")
        data = inspect_report.build(source, base, classes=classes, tags=tags, lang=lang)
        if sign_key is None:
            return InspectRun(data, source, None, None, not_stored)
        signed, keeper = store_inspection(data, source, store_url=store_url, store=st, sign_key=sign_key, say=say)
    return InspectRun(data, source, signed, keeper)
