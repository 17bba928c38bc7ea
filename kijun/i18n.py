"""User-facing words and findings in Japanese and English, over one gettext catalogue.

The English text is the msgid; the Japanese lives in kijun/locale/ja/LC_MESSAGES/kijun.po (see
docs/translation.md to extract, update and compile it). `t(key, lang)` looks a word up by its English
identifier; `render(text, lang)` shows a finding (a kijun.msg.Msg or its encoded form from a report).
"""

from __future__ import annotations

from typing import Any

from kijun.msg import DecodeError, Msg, decode, known, translate


def N_(text: str) -> str:
    """Marks a word for extraction (pybabel -k N_) without translating it here."""
    return text


# key -> English msgid. One entry per concept: reports, matrix, drift, inspection and advisories share it.
LABELS: dict[str, str] = {
    "control": N_("Control"),
    "title": N_("Title"),
    "class": N_("Class"),
    "severity": N_("Severity"),
    "status": N_("Status"),
    "observed": N_("Observed"),
    "expected": N_("Expected"),
    "host": N_("Host"),
    "reason": N_("Reason"),
    "pass": N_("pass"),
    "fail": N_("fail"),
    "error": N_("error"),
    "not-applicable": N_("not-applicable"),
    "waived": N_("waived"),
    "unreachable": N_("unreachable"),
    "low": N_("low"),
    "medium": N_("medium"),
    "high": N_("high"),
    "critical": N_("critical"),
    "summary": N_("Summary"),
    "change": N_("Change"),
    "would-change": N_("would change"),
    "changed": N_("changed"),
    "unchanged": N_("unchanged"),
    "failed": N_("failed"),
    # kijun.ops.REVERTED / LOGIN_LOST: a change after which a fresh SSH login failed
    "reverted (would lock out)": N_("reverted (would lock out)"),
    "login lost: restoring the files did not bring it back": N_("login lost: restoring the files did not bring it back"),
    "not applied: the host's login was lost earlier": N_("not applied: the host's login was lost earlier"),
    # check table
    "overrides_head": N_("organisation overrides (kijun_vars; every other number is the baseline's: kijun params)"),
    # matrix (kijun.matrix, kijun.html_report)
    "matrix_title": N_("Compliance matrix"),
    "organisation": N_("Organisation"),
    "branch": N_("Branch"),
    "unit": N_("Organisation/branch"),
    "clause": N_("Clause"),
    "document": N_("Document"),
    "section": N_("Section"),
    "controls": N_("Controls"),
    "hosts": N_("Hosts"),
    "run": N_("Run"),
    "started": N_("Started"),
    "finished": N_("Finished"),
    "baseline": N_("Baseline"),
    "pass_percent": N_("Pass %"),
    "trend": N_("Compliance trend"),
    "heatmap": N_("Hosts × controls"),
    "rollup": N_("Clauses × organisation/branch"),
    "holds": N_("holds"),
    "holds-waived": N_("holds (waived)"),
    "gaps": N_("gaps"),
    "n/a": N_("n/a"),
    "waivers_active": N_("Active waivers"),
    "waivers_expired": N_("Expired waivers"),
    "justification": N_("Justification"),
    "approver": N_("Approver"),
    "expires": N_("Expires"),
    "ticket": N_("Ticket"),
    "filters": N_("Filters"),
    "none": N_("none"),
    "incomplete": N_("incomplete run (some hosts only)"),
    "legend": N_("Legend"),
    "generated": N_("Generated"),
    "signed_by": N_("Signed by key"),
    "chain": N_("Chain sequence"),
    "cells": N_("Cells"),
    "applicable": N_("Applicable"),
    "rank": N_("Rank"),
    "score": N_("Score"),
    "gap": N_("Gap"),
    "expired-waiver": N_("expired waiver"),
    "missing": N_("missing"),
    "state": N_("State"),
    "deadline": N_("Deadline"),
    "overdue": N_("overdue"),
    "confirmed_by": N_("Confirmed by"),
    "updated": N_("Updated"),
    "applied-and-verified": N_("applied-and-verified"),
    "pending": N_("pending"),
    "yes": N_("yes"),
    "no": N_("no"),
    "detail": N_("Detail"),
    "baseline_mismatch": N_("note: the baseline loaded differs from the one the run used"),
    "pass_definition": N_("Pass % = pass ÷ (cells − not-applicable). Waived, fail, error and unreachable count "
                          "against it."),
    # inspection (kijun.inspect_report)
    "inspect_title": N_("Early inspection: countermeasures against targeted attacks"),
    "inspect_basis": N_("Basis: 資料2 1. early inspection and priority implementation of countermeasures against "
                        "targeted attacks"),
    "remediation": N_("Prioritised remediation list"),
    "control_status": N_("Status per control"),
    "source_run": N_("Inspected run"),
    "inspect_run": N_("Inspection report (signed)"),
    "classes_inspected": N_("Classes inspected"),
    "tags_inspected": N_("Tags inspected"),
    "no_gaps": N_("no gaps"),
    "gaps_total": N_("gaps"),
    # drift (kijun.drift)
    "drift_title": N_("Drift {old} -> {new}"),
    "drift_incomplete": N_("note: the newer run is incomplete; missing hosts may only be unfinished"),
    "new_failures": N_("New failures"),
    "fixed": N_("Fixed"),
    "still_failing": N_("Still failing"),
    "hosts_new": N_("New hosts"),
    "hosts_gone": N_("Hosts gone"),
    "before": N_("Before"),
    "now": N_("Now"),
    "observed_before": N_("Observed before"),
    "observed_now": N_("Observed now"),
    "verdict_drift": N_("result: new drift ({n} new failure(s))"),
    "verdict_ok": N_("result: no new drift"),
    # advisories (kijun.advisory)
    "days_left": N_("{days} day(s) left"),
    "days_past": N_("{days} day(s) past"),
    "not_in_inventory": N_("not in the inventory any more"),
    "ledger_tampered": N_("ledger row not signed by a trusted key (edited or forged): not counted as confirmed"),
    # kijun.present: headers and sections of every output format
    "inventory": N_("Inventory"),
    "results": N_("Results"),
    "operation": N_("Operation"),
    "in-desired-state": N_("{n} item(s) in the desired state"),
    "overrides": N_("organisation overrides (kijun_vars; every other number is the baseline's: kijun params)"),
    "local-not-stored": N_("this check is not stored: no signing key yet (run `kijun keygen` once to keep signed records of every check)"),
    "local-stored": N_("run {run_id} stored and signed"),
    "class-defaulted": N_("judged as importance class {cls} (the default: the strictest; give this machine's class with --class)"),
    "check": N_("check"),
    "apply": N_("apply"),
    "dry-run": N_("dry run"),
    "rollback": N_("rollback"),
    "inspect": N_("inspection"),
    # clause map (kijun.clauses) and parameters (kijun.params)
    "clauses.clause": N_("Clause"),
    "clauses.section": N_("Section"),
    "clauses.quote": N_("Quote"),
    "clauses.status": N_("Coverage"),
    "clauses.classes": N_("Classes"),
    "clauses.controls": N_("Controls"),
    "clauses.notes": N_("Notes"),
    "clauses.compliance": N_("Compliance (pass/fail/n-a)"),
    "clauses.automated": N_("automated"),
    "clauses.partial": N_("partial"),
    "clauses.manual": N_("manual"),
    "clauses.procedural": N_("procedural"),
    "clauses.background": N_("background"),
    "clauses.total": N_("total"),
    "clauses.seed": N_("Seed"),
    "clauses.run": N_("Run"),
    "params.variable": N_("Variable"),
    "params.default": N_("Default"),
    "params.source": N_("Source"),
    "params.reference": N_("Clause / reference"),
    "params.host": N_("Host"),
    "params.value": N_("Value"),
    "params.baseline_value": N_("Baseline value"),
    "params.overrides": N_("Organisation overrides (kijun_vars)"),
    "params.none": N_("none"),
    "origin.seed": N_("seed"),
    "origin.kijun-default": N_("kijun default"),
    "origin.class": N_("class default"),
    "origin.organisation": N_("organisation"),
    # the progress line of fleet runs (kijun.cli_progress)
    "progress_line": N_("{done}/{total} hosts done, {failing} failing, {unreachable} unreachable, {elapsed}"),
}


def t(word: str, lang: str) -> str:
    """A word by its key (or by its English text), in `lang`; an unknown word is returned as is."""
    return translate(LABELS.get(word, word), lang)


def render(text: Any, lang: str) -> str:
    """A finding in `lang`: a Msg, an encoded message ({id, args} / {join, parts}) or plain text.

    Plain text that is a catalogue msgid is translated; anything else, and any message that cannot be
    rendered, falls back to its English text."""
    if text is None:
        return ""
    if isinstance(text, Msg):
        return text.render(lang)
    if isinstance(text, (dict, list)):
        try:
            return render(decode(text), lang)
        except DecodeError:
            return ""
    text = str(text)
    return translate(text, lang) if lang != "en" and known(text) else text


def message(result: dict[str, Any], field: str) -> str:
    """observed / expected / reason of a result dict from a report, as a Msg when the report carries one.

    The stored message is used only when its English rendering is the signed English text itself, so
    the Japanese never says something the evidence does not; otherwise the plain English text."""
    english = str(result.get(field) or "")
    encoded = (result.get("messages") or {}).get(field)
    if encoded is None:
        return english
    try:
        found = decode(encoded)
    except DecodeError:
        return english
    return found if isinstance(found, Msg) and str(found) == english else english


def render_field(result: dict[str, Any], field: str, lang: str) -> str:
    """observed / expected / reason of a result dict from a report, in `lang` (see message())."""
    return render(message(result, field), lang)
