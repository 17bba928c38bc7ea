"""Run reports: build from model objects, canonical bytes and digests, load and validate files.

A report is a plain JSON object (format: docs/reports.md, schema: kijun/schemas/report.schema.json).
Two byte forms matter:
  canonical_bytes(report)  everything except "signature": what the signature signs.
  digest(report)           sha256 over the canonical form of everything INCLUDING "signature":
                           what the next report's chain.previous names, so the chain also binds
                           the signatures (swapping in a re-signed copy breaks the next link).
"""

from __future__ import annotations

import copy
import datetime as dt
import hashlib
import json
import re
import secrets
from dataclasses import asdict, is_dataclass
from functools import lru_cache
from importlib import resources
from pathlib import Path
from typing import Any

import jsonschema

from kijun.inputs import InputError, json_path
from kijun.model import STATUSES
from kijun.msg import Msg, encode

FORMAT_VERSION = 1
KINDS = ("check", "apply", "dry-run", "rollback", "inspect", "advisory")
CHANGE_STATUSES = ("would-change", "unchanged", "changed", "failed")  # kijun.apply.OpOutcome.status
SIGNATURE_KEY = "signature"

# Whole key names (optionally prefixed, e.g. "db_password", "api-token") that must never be stored.
SECRET_KEY_RE = re.compile(
    r"^(?:.*[_\-.])?(password|passwd|passphrase|secret|secrets|token|tokens|private[_\-]?key|api[_\-]?key)$",
    re.IGNORECASE,
)
PRIVATE_KEY_BLOCK_RE = re.compile(
    r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|\Z)", re.DOTALL
)
REDACTED_KEY_BLOCK = "[private key redacted by kijun]"
MAX_REASON = 200


def utc_now() -> str:
    return dt.datetime.now(dt.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_run_id(now: dt.datetime | None = None) -> str:
    """UTC time first so ids sort chronologically; random suffix so parallel runs never collide."""
    now = now or dt.datetime.now(dt.timezone.utc)
    return now.astimezone(dt.timezone.utc).strftime("%Y%m%dT%H%M%SZ") + "-" + secrets.token_hex(3)


def tool_version() -> str:
    try:
        import kijun

        version = getattr(kijun, "__version__", None)
        if version:
            return str(version)
    except ImportError:
        pass
    try:
        from importlib.metadata import version as dist_version

        return dist_version("kijun")
    except Exception:  # not installed (running from a checkout)
        return "unknown"


def _plain(obj: Any) -> Any:
    return asdict(obj) if is_dataclass(obj) and not isinstance(obj, type) else obj


def _digest_field(value: str) -> str:
    """Accept a bare sha256 hex digest too, store it prefixed."""
    value = value or ""
    return "sha256:" + value if re.fullmatch(r"[0-9a-f]{64}", value) else value


def _baseline_ref(baseline: Any) -> dict[str, str] | None:
    if baseline is None:
        return None
    b = _plain(baseline)
    if not isinstance(b, dict):  # kijun.model.Baseline holds non-JSON parts; take what we need
        b = {k: getattr(baseline, k, "") for k in ("id", "version", "digest", "path")}
    return {
        "id": str(b.get("id", "")),
        "version": str(b.get("version", "")),
        "digest": _digest_field(str(b.get("digest", ""))),
        "path": str(b.get("path", "")),
    }


def _inventory_ref(inventory: Any) -> dict[str, str] | None:
    if inventory is None:
        return None
    inv = _plain(inventory)
    return {"path": str(inv.get("path", "")), "digest": _digest_field(str(inv.get("digest", "")))}


MESSAGE_FIELDS = ("observed", "expected", "reason")


def _add_messages(result: dict[str, Any]) -> None:
    """Message ids and arguments of a result's findings, so a stored report renders in Japanese later."""
    found = {f: encode(result[f]) for f in MESSAGE_FIELDS if isinstance(result.get(f), Msg)}
    if found:
        result["messages"] = found


def host_dict(host: Any) -> dict[str, Any]:
    """A HostResult (or its dict) as a scrubbed, JSON-only dict."""
    h = copy.deepcopy(_plain(host))
    h["groups"] = list(h.get("groups") or [])
    for r in h.get("results") or []:
        if isinstance(r, dict):
            _add_messages(r)
            for item in r.get("items") or []:
                if isinstance(item, dict):
                    _add_messages(item)
    return scrub_host(h)


def summary(hosts: list[Any]) -> dict[str, Any]:
    by_status = {s: 0 for s in STATUSES}
    unreachable = 0
    changes: dict[str, int] = {}
    for host in hosts:
        h = _plain(host)
        if not h.get("reachable", True):
            unreachable += 1
        for r in h.get("results") or []:
            status = _plain(r)["status"]
            by_status[status] = by_status.get(status, 0) + 1
        for c in h.get("changes") or []:
            changes[c["status"]] = changes.get(c["status"], 0) + 1
    out = {"hosts": len(hosts), "unreachable": unreachable, "by_status": by_status}
    if changes:  # apply-type runs: operations per outcome (would-change, changed, ...)
        out["changes"] = changes
    return out


def build_report(
    kind: str,
    hosts: list[Any],
    *,
    run_id: str | None = None,
    started: str | None = None,
    finished: str | None = None,
    complete: bool = True,
    baseline: Any = None,
    inventory: Any = None,
    version: str | None = None,
    scope: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """An unsigned, unchained report. The store adds "chain" and "signature" (Store.finish_run)."""
    if kind not in KINDS:
        raise ValueError(f"unknown report kind {kind!r} (one of {', '.join(KINDS)})")
    host_dicts = [host_dict(h) for h in hosts]
    if finished is None and complete:
        finished = utc_now()
    report = {
        "kijun_report": FORMAT_VERSION,
        "run_id": run_id or new_run_id(),
        "kind": kind,
        "started": started or utc_now(),
        "finished": finished,
        "complete": bool(complete),
        "tool": {"name": "kijun", "version": version or tool_version()},
        "baseline": _baseline_ref(baseline),
        "inventory": _inventory_ref(inventory),
        "hosts": host_dicts,
        "summary": summary(host_dicts),
    }
    if scope is not None:  # which part of the inventory (--limit): drift pairs runs of the same scope
        report["scope"] = {"limit": sorted(str(x) for x in (scope.get("limit") or []))}
    return report


def _json(obj: Any) -> bytes:
    return json.dumps(obj, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode("utf-8")


def canonical_bytes(report: dict[str, Any]) -> bytes:
    """The signed bytes: canonical JSON of the report without its "signature" key."""
    return _json({k: v for k, v in report.items() if k != SIGNATURE_KEY})


def full_bytes(report: dict[str, Any]) -> bytes:
    """Canonical JSON of the whole report, signature included (the stored and digested form)."""
    return _json(report)


def digest(report: dict[str, Any]) -> str:
    return "sha256:" + hashlib.sha256(full_bytes(report)).hexdigest()


# --- secrets -----------------------------------------------------------------------------------

def _scrub(value: Any, at: str, found: list[str], skip_keys_at: tuple[str, ...] = ()) -> Any:
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            sub = f"{at}.{k}" if at else str(k)
            # Package names are data, not field names ("libsecret-1-0" is a package).
            if at not in skip_keys_at and SECRET_KEY_RE.match(str(k)):
                found.append(sub)
                continue
            out[k] = _scrub(v, sub, found, skip_keys_at)
        return out
    if isinstance(value, list):
        return [_scrub(v, f"{at}[{i}]", found, skip_keys_at) for i, v in enumerate(value)]
    if isinstance(value, str) and "PRIVATE KEY-----" in value:
        found.append(at)
        return PRIVATE_KEY_BLOCK_RE.sub(REDACTED_KEY_BLOCK, value)
    return value


def find_secrets(report: dict[str, Any]) -> list[str]:
    """Paths of secret-looking keys or private key blocks in the report's host facts and results."""
    found: list[str] = []
    for i, h in enumerate(report.get("hosts") or []):
        if isinstance(h, dict):
            _scrub_host_into(h, f"hosts[{i}]", found)
    return found


def _scrub_host_into(h: dict[str, Any], at: str, found: list[str]) -> dict[str, Any]:
    out = dict(h)
    if "facts" in h:
        out["facts"] = _scrub(h["facts"], f"{at}.facts", found, skip_keys_at=(f"{at}.facts.packages",))
    if "results" in h:
        out["results"] = _scrub(h["results"], f"{at}.results", found)
    if "error" in h:
        out["error"] = _scrub(h["error"], f"{at}.error", found)
    if "changes" in h:  # details carry a host's stderr
        out["changes"] = _scrub(h["changes"], f"{at}.changes", found)
    return out


def scrub_host(h: dict[str, Any]) -> dict[str, Any]:
    return _scrub_host_into(h, "", [])


def scrub(report: dict[str, Any]) -> dict[str, Any]:
    """A copy with secret-looking keys removed and private key blocks redacted (facts, results)."""
    out = dict(report)
    if isinstance(report.get("hosts"), list):
        out["hosts"] = [scrub_host(h) if isinstance(h, dict) else h for h in report["hosts"]]
    return out


# --- loading -----------------------------------------------------------------------------------

@lru_cache(maxsize=1)
def report_schema() -> dict[str, Any]:
    text = resources.files("kijun").joinpath("schemas/report.schema.json").read_text(encoding="utf-8")
    return json.loads(text)


@lru_cache(maxsize=1)
def _validator() -> jsonschema.Draft202012Validator:
    from kijun.schema import validator

    return validator(report_schema())


def _one_line(text: str) -> str:
    text = " ".join(text.split())
    return text if len(text) <= MAX_REASON else text[: MAX_REASON - 3] + "..."


def _schema_reason(e: jsonschema.ValidationError) -> str:
    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
        known = set(e.schema.get("properties", {}))
        return _one_line("unknown key(s): " + ", ".join(repr(k) for k in sorted(set(e.instance) - known)))
    if e.validator == "required":
        return _one_line(e.message.replace("is a required property", "is required"))
    return _one_line(e.message)


def _leaf(e: jsonschema.ValidationError) -> jsonschema.ValidationError:
    """For "X or null" (oneOf), the deepest complaint of the non-null branch: the useful one."""
    while e.validator == "oneOf" and e.context:
        e = max(e.context, key=lambda c: (len(c.absolute_path), c.validator != "type"))
    return e


def report_errors(data: Any, file: str = "<report>") -> list[InputError]:
    """Every schema violation and stored secret in a parsed report, each as a one-line InputError."""
    leaves = [_leaf(e) for e in _validator().iter_errors(data)]
    errors = [
        InputError(file, json_path(list(e.absolute_path)), _schema_reason(e))
        for e in sorted(leaves, key=lambda e: [str(p) for p in e.absolute_path])
    ]
    if not errors and isinstance(data, dict):
        errors += [InputError(file, p, "secret-looking value: reports must not hold secrets") for p in find_secrets(data)]
    return errors


def host_errors(host: dict[str, Any]) -> list[str]:
    """Schema problems of one host result dict (checked before it goes into the store)."""
    schema = {"$ref": "#/$defs/host", "$defs": report_schema()["$defs"]}
    from kijun.schema import validator as schema_validator

    validator = schema_validator(schema)
    return [f"{json_path(list(e.absolute_path))}: {_schema_reason(e)}" for e in validator.iter_errors(host)]


def parse_report(text: str | bytes, file: str = "<report>") -> dict[str, Any]:
    from kijun.inputs import decode_utf8, loads_json

    if isinstance(text, bytes):
        text = decode_utf8(text, file)
    data = loads_json(text, file)  # no duplicate keys: what a reader sees must be what was signed
    errors = report_errors(data, file)
    if errors:
        raise errors[0]
    return data


def load_report(path: str | Path) -> dict[str, Any]:
    """Read and validate a report file, or raise the first problem as a one-line InputError."""
    from kijun.inputs import MAX_REPORT_BYTES, read_input

    file = str(path)
    return parse_report(read_input(file, MAX_REPORT_BYTES), file)


def dumps(report: dict[str, Any]) -> str:
    """Human-readable form for files; digests and signatures do not depend on formatting."""
    return json.dumps(report, sort_keys=True, indent=2, ensure_ascii=False, allow_nan=False) + "\n"
