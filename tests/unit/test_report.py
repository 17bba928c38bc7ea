import json
import re

import pytest

from kijun.baseline import InputError
from kijun.model import Baseline, ControlResult, HostResult, Verdict
from kijun.report import (
    build_report, canonical_bytes, digest, dumps, find_secrets, load_report, new_run_id, report_errors, scrub,
    summary,
)


def host(name="web1", reachable=True, results=None, **facts_extra):
    return HostResult(
        host=name, importance_class="II", organisation="org", branch="tokyo", role="web", groups=["web"],
        reachable=reachable, error="" if reachable else "ssh: connection refused",
        started="2026-11-22T22:15:00Z", finished="2026-11-22T22:15:03Z",
        facts={"hostname": name, "os": {"id": "debian", "version_id": "12", "pretty_name": "Debian 12"},
               "kernel": "6.1.0", "packages": {"openssh-server": "1:9.2", "libsecret-1-0": "0.20"},
               "pending_updates": [{"package": "openssl", "version": "3.0.15", "security": True}], **facts_extra},
        results=results if results is not None else [
            ControlResult("SSH-001", "pass", "no", "no", evidence="sshd -T",
                          items=[Verdict("pass", "no", "no", evidence="sshd -T")]),
            ControlResult("SYS-002", "fail", "1", "0", reason="ip_forward enabled"),
            ControlResult("PKG-003", "not-applicable", "", "", reason="no GUI"),
        ],
        commands=2,
    )


BASELINE = Baseline(id="gov-std", version="2026.1", title={"ja": "基準", "en": "std"}, variables={},
                    class_variables={}, lists={}, controls=[], path="baselines/std.yaml", digest="ab" * 32)


def test_run_id_sorts_by_time_and_is_unique():
    import datetime as dt
    a = new_run_id(dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc))
    b = new_run_id(dt.datetime(2026, 1, 2, 3, 4, 6, tzinfo=dt.timezone.utc))
    assert re.fullmatch(r"20260102T030405Z-[0-9a-f]{6}", a)
    assert a < b
    assert len({new_run_id() for _ in range(200)}) == 200


def test_build_report_from_model_objects_is_schema_valid():
    r = build_report("check", [host("web1"), host("db1", reachable=False, results=[])], baseline=BASELINE,
                     inventory={"path": "inv.py", "digest": "cd" * 32}, version="0.1.0")
    assert report_errors(r) == []
    assert r["baseline"] == {"id": "gov-std", "version": "2026.1", "digest": "sha256:" + "ab" * 32,
                             "path": "baselines/std.yaml"}
    assert r["complete"] is True and r["finished"]
    assert r["summary"] == {"hosts": 2, "unreachable": 1, "by_status": {
        "pass": 1, "not-applicable": 1, "waived": 0, "fail": 1, "error": 0, "unreachable": 0}}
    assert r["hosts"][0]["results"][0]["items"][0]["evidence"] == "sshd -T"


def test_incomplete_report_has_no_finish_time():
    r = build_report("apply", [], complete=False)
    assert r["finished"] is None and r["complete"] is False
    assert report_errors(r) == []


def test_summary_counts_statuses():
    s = summary([host(), host("b")])
    assert s["hosts"] == 2 and s["by_status"]["fail"] == 2 and s["by_status"]["pass"] == 2


def test_canonical_bytes_exclude_signature_and_are_stable():
    r = build_report("check", [host()], version="0.1.0")
    signed = {**r, "signature": {"alg": "ed25519", "key_id": "sha256:" + "0" * 64, "value": "x"}}
    assert canonical_bytes(r) == canonical_bytes(signed)
    reordered = dict(reversed(list(r.items())))
    assert canonical_bytes(reordered) == canonical_bytes(r)
    assert b'"kijun_report":1,' in canonical_bytes(r)  # compact separators, sorted keys


def test_digest_binds_the_signature_too():
    r = build_report("check", [host()], version="0.1.0")
    a = {**r, "signature": {"alg": "ed25519", "key_id": "sha256:" + "0" * 64, "value": "a"}}
    b = {**r, "signature": {"alg": "ed25519", "key_id": "sha256:" + "0" * 64, "value": "b"}}
    assert digest(a) != digest(b)
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", digest(a))


def test_canonical_json_keeps_japanese_as_utf8():
    r = build_report("check", [host(results=[ControlResult("X-1", "fail", "有効", "無効")])], version="0.1.0")
    assert "有効".encode() in canonical_bytes(r)


def test_scrub_strips_secret_keys_and_private_key_blocks_but_keeps_packages():
    pem = "-----BEGIN OPENSSH PRIVATE KEY-----\nabc\n-----END OPENSSH PRIVATE KEY-----"
    h = host(db_password="hunter2", api_token="t", nested={"Private_Key": "k", "ok": 1})
    h.results[0].evidence = f"cat id_ed25519\n{pem}"
    raw = build_report("check", [], version="0.1.0")
    raw["hosts"] = [json.loads(json.dumps(h.__dict__, default=lambda o: o.__dict__))]
    assert set(find_secrets(raw)) == {
        "hosts[0].facts.db_password", "hosts[0].facts.api_token", "hosts[0].facts.nested.Private_Key",
        "hosts[0].results[0].evidence"}
    clean = scrub(raw)
    assert find_secrets(clean) == []
    facts = clean["hosts"][0]["facts"]
    assert "db_password" not in facts and facts["nested"] == {"ok": 1}
    assert "libsecret-1-0" in facts["packages"]  # a package name, not a secret
    assert "abc" not in clean["hosts"][0]["results"][0]["evidence"]
    # build_report scrubs on the way in, so no report ever holds them
    built = build_report("check", [host(passphrase="p")], version="0.1.0")
    assert "passphrase" not in built["hosts"][0]["facts"]


def write(tmp_path, data, name="r.json"):
    p = tmp_path / name
    p.write_text(data if isinstance(data, str) else json.dumps(data), encoding="utf-8")
    return p


def one_line_error(path):
    with pytest.raises(InputError) as info:
        load_report(path)
    msg = str(info.value)
    assert "\n" not in msg
    assert msg.startswith(str(path))
    return msg


def test_load_report_round_trips(tmp_path):
    r = build_report("check", [host()], baseline=BASELINE, version="0.1.0")
    assert load_report(write(tmp_path, dumps(r))) == r


def test_invalid_json_names_file_and_line(tmp_path):
    p = write(tmp_path, '{\n  "kijun_report": 1,\n  "run_id": \n}')
    msg = one_line_error(p)
    assert msg.startswith(f"{p}:4: invalid JSON")


def test_schema_violation_names_json_path(tmp_path):
    r = build_report("check", [host()], version="0.1.0")
    r["hosts"][0]["results"][1]["status"] = "passed"
    msg = one_line_error(write(tmp_path, r))
    assert ": hosts[0].results[1].status: 'passed' is not one of" in msg


@pytest.mark.parametrize("mutate, where, reason", [
    (lambda r: r.pop("kind"), "(document)", "'kind' is required"),
    (lambda r: r.update(extra=1), "(document)", "unknown key(s): 'extra'"),
    (lambda r: r.update(kijun_report=2), "kijun_report", "1 was expected"),
    (lambda r: r.update(run_id="yesterday"), "run_id", "does not match"),
    (lambda r: r.update(finished="soon"), "finished", "does not match"),
    (lambda r: r["hosts"][0].update(reachable="yes"), "hosts[0].reachable", "is not of type 'boolean'"),
    (lambda r: r["hosts"][0]["facts"]["pending_updates"][0].pop("security"),
     "hosts[0].facts.pending_updates[0]", "'security' is required"),
    (lambda r: r.update(chain={"sequence": 0, "previous": None}), "chain.sequence", "less than the minimum"),
    (lambda r: r["hosts"][0]["facts"].update(root_password="x"), "hosts[0].facts.root_password", "must not hold secrets"),
])
def test_bad_report_files_give_one_line_errors(tmp_path, mutate, where, reason):
    r = build_report("check", [host()], version="0.1.0")
    mutate(r)
    p = write(tmp_path, r)
    msg = one_line_error(p)
    assert msg.startswith(f"{p}: {where}: "), msg
    assert reason in msg


def test_unreadable_and_non_utf8_files(tmp_path):
    assert "cannot read" in one_line_error(tmp_path / "missing.json")
    p = tmp_path / "bin.json"
    p.write_bytes(b'{"a": "\xff"}')
    assert "not UTF-8" in one_line_error(p)


def test_huge_bad_value_is_cut_to_one_short_line(tmp_path):
    r = build_report("check", [host()], version="0.1.0")
    r["summary"] = "x\n" * 5000
    msg = one_line_error(write(tmp_path, r))
    assert len(msg) < 400 and msg.endswith("...")


def test_nullable_fields_report_the_inner_problem(tmp_path):
    r = build_report("check", [], baseline=BASELINE, version="0.1.0")
    r["baseline"]["digest"] = "md5:x"
    r["chain"] = {"sequence": 2, "previous": "sha1:abc"}
    p = write(tmp_path, r)
    errors = report_errors(json.loads(p.read_text()), str(p))
    assert [e.path for e in errors] == ["baseline.digest", "chain.previous"]
    assert "'md5:x' does not match" in errors[0].reason
