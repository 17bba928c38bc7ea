"""Hostile baselines, variables and inventories (tests/data/hostile): each is refused with one clear
line, or is legal and quoted so that nothing it carries runs. Commands never reach a real host here:
probe scripts run locally with /bin/sh, inventories point at the loopback."""

from __future__ import annotations

import glob
import os
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from kijun import baseline, check, inventory, plan, probe
from kijun.baseline import InputError
from kijun.controls import REGISTRY, kinds
from kijun.controls.sshd_option import fix_script
from kijun.model import HostTarget

ROOT = Path(__file__).resolve().parents[2]
HOSTILE = ROOT / "tests/data/hostile"
BASELINES = sorted(glob.glob(str(HOSTILE / "baselines/*.yaml")))
INVENTORY_CASES = yaml.safe_load((HOSTILE / "inventories.yaml").read_text(encoding="utf-8"))
VARS_BASELINE = str(HOSTILE / "vars-baseline.yaml")
LOCAL_MARKER = "kijun-hostile-marker"


def expectation(path: str) -> str:
    first = Path(path).read_text(encoding="utf-8").splitlines()[0]
    assert first.startswith("# expect: "), path
    return first[len("# expect: "):].strip()


QUOTED = [p for p in BASELINES if expectation(p) == "quoted"]
REFUSED = [p for p in BASELINES if expectation(p) != "quoted"]


def kijun(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYINFRA_PROGRESS": "off"}
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=cwd,
                          env=env, timeout=600)


def materialise(path: str, tmp_path: Path) -> tuple[Path, Path]:
    """A copy of a hostile baseline whose commands would create a marker file in tmp_path."""
    marker = tmp_path / "marker"
    copy = tmp_path / Path(path).name
    copy.write_text(Path(path).read_text(encoding="utf-8").replace("KIJUN_MARKER", str(marker)), encoding="utf-8")
    return copy, marker


def test_corpus_covers_every_route():
    assert len(REFUSED) >= 15 and len(QUOTED) >= 4
    assert len(INVENTORY_CASES) >= 12


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: Path(p).name)
def test_hostile_baseline_is_refused_with_one_line(path):
    errors = [str(e) for e in baseline.validate(path)]
    assert errors, f"{path} was accepted"
    assert all("\n" not in e and e.startswith(path) for e in errors), errors
    assert expectation(path) in errors[0], errors


def test_cli_validate_refuses_every_hostile_baseline_with_exit_2(tmp_path):
    r = kijun("validate", *REFUSED, cwd=ROOT)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr + r.stdout
    out = r.stdout + r.stderr
    for path in REFUSED:
        assert any(line.startswith(path) and expectation(path) in line for line in out.splitlines()), (path, out)


@pytest.mark.parametrize("path", REFUSED, ids=lambda p: Path(p).name)
def test_cli_check_refuses_before_probing(path, tmp_path):
    copy, marker = materialise(path, tmp_path)
    r = kijun("check", "--local", "-b", str(copy), "--no-store", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    lines = r.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kijun: error: {copy}"), lines
    assert not marker.exists()


@pytest.mark.parametrize("path", QUOTED, ids=lambda p: Path(p).name)
def test_legal_but_hostile_paths_are_quoted_in_the_probe_script(path, tmp_path):
    copy, marker = materialise(path, tmp_path)
    base = baseline.load(copy)
    target = HostTarget(name="local", importance_class="I")
    probes = check.probes_for(plan.plan_host(base, target))
    out = probe.run_probes(probes, probe.local_runner)
    assert not marker.exists(), f"{path}: a probe ran the command it carried"
    assert set(out) == set(probes), "framing broken: some probe output was lost or invented"


@pytest.mark.parametrize("path", QUOTED, ids=lambda p: Path(p).name)
def test_cli_check_local_with_quoted_paths_runs_nothing_they_carry(path, tmp_path):
    copy, marker = materialise(path, tmp_path)
    r = kijun("check", "--local", "-b", str(copy), "--no-store", "--format", "json", cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr
    assert "Traceback" not in r.stderr
    assert not marker.exists()


def test_probe_key_with_a_line_break_is_refused():
    with pytest.raises(ValueError):
        probe.build_script({"file./etc/x\nrm -rf /": "true"}, "n")


def test_sshd_line_is_written_with_printf_not_echo(tmp_path):
    """dash's echo turns a literal backslash-n into a second line (AllowUsers nobody); printf '%s' does not."""
    script = fix_script("Banner", "none\\nAllowUsers nobody")
    writer = next(line for line in script.splitlines() if "kijun-new" in line and "grep -viE" in line)
    body = writer.split("|| true;", 1)[1].rsplit("; }", 1)[0]
    out = subprocess.run(["/bin/sh", "-c", body], capture_output=True, text=True, cwd=tmp_path).stdout
    assert out == "Banner none\\nAllowUsers nobody\n"


BAD_STRINGS = ["sshd\n", "sshd\r", "ss\x00hd", "-sshd", "--system", "a b;c", "x\x1b[2J"]


@pytest.mark.parametrize("kind", ["SYSCTL_KEY", "UNIT", "PACKAGE", "KMOD", "ACCOUNT", "HOSTNAME", "CONF_KEY",
                                  "SSHD_KEYWORD", "MODE", "IPV4_NET"])
def test_grammar_kinds_refuse_trailing_newline_and_options(kind):
    schema = getattr(kinds, kind)
    v = jsonschema.Draft202012Validator(schema)
    for bad in BAD_STRINGS:
        assert not v.is_valid(bad), (kind, bad)


def test_kinds_accept_real_values():
    ok = {"SYSCTL_KEY": ["net.ipv4.conf.all.rp_filter", "net/ipv4/conf/eth0.100/rp_filter", "kernel.kptr_restrict"],
          "UNIT": ["ssh", "getty@tty1.service", "systemd-timesyncd"], "PACKAGE": ["libpam-pwquality", "g++", "aide-common"],
          "KMOD": ["usb-storage", "firewire_core"], "ACCOUNT": ["root", "_apt", "host$"], "PATH": ["/etc/login.defs", "/srv/a b"],
          "HOSTNAME": ["ntp.nict.jp", "10.77.0.1", "fe80::1"], "MODE": ["0640", "644"], "VALUE": ["no", 3, "aes256-gcm@openssh.com"]}
    for kind, values in ok.items():
        v = jsonschema.Draft202012Validator(getattr(kinds, kind))
        for value in values:
            assert v.is_valid(value), (kind, value)
    path, value = jsonschema.Draft202012Validator(kinds.PATH), jsonschema.Draft202012Validator(kinds.VALUE)
    assert not path.is_valid("/etc/login.defs\n") and not path.is_valid("etc/login.defs")
    assert not value.is_valid("yes\\n") and not value.is_valid("yes\n")


def _string_leaves(schema: dict, where: str):
    if "properties" in schema:
        for name, sub in schema["properties"].items():
            yield from _string_leaves(sub, f"{where}.{name}")
    elif "items" in schema and isinstance(schema["items"], dict):
        yield from _string_leaves(schema["items"], f"{where}[]")
    elif "string" in (schema.get("type") if isinstance(schema.get("type"), list) else [schema.get("type")]):
        yield where, schema


def test_every_string_parameter_of_every_control_type_has_a_kind():
    """The mechanism, not the examples: a new string parameter without a control-character guard fails here."""
    unguarded = [where for name, ctype in REGISTRY.items() for where, leaf in _string_leaves(ctype.params_schema, name)
                 if "not" not in leaf and "enum" not in leaf]
    assert not unguarded, unguarded


# --- inventories -------------------------------------------------------------------------------------

def write_inventory(case: dict, tmp_path: Path, lab_address: str = "127.0.0.1", extra: dict | None = None) -> Path:
    """One pyinfra inventory file holding the hostile host; markers resolve inside tmp_path."""
    def fill(value):
        if isinstance(value, str):
            return (value.replace("KIJUN_LOCAL_MARKER", LOCAL_MARKER).replace("KIJUN_MARKER", str(tmp_path / "marker"))
                    .replace("KIJUN_LAB", lab_address))
        if isinstance(value, dict):
            return {k: fill(v) for k, v in value.items()}
        return value

    data = {"ssh_port": 1, "ssh_user": "kijun", "ssh_strict_host_key_checking": "yes", **(extra or {}), **fill(case["data"])}
    inv = tmp_path / "inventory.py"
    inv.write_text(f"hosts = {[(fill(case['host']), data)]!r}\n", encoding="utf-8")
    return inv


def expected_line(case: dict, tmp_path: Path, inv: Path) -> str:
    text = (case["expect"].replace("KIJUN_LOCAL_MARKER", LOCAL_MARKER).replace("KIJUN_MARKER", str(tmp_path / "marker"))
            .replace("KIJUN_LAB", "127.0.0.1"))
    return f"{VARS_BASELINE}: {text}" if case.get("plan") else f"{inv}: {'127.0.0.1' if text.startswith('.') else ''}{text}"


def no_marker(tmp_path: Path) -> bool:
    return not (tmp_path / LOCAL_MARKER).exists() and not (tmp_path / "marker").exists()


@pytest.mark.parametrize("case", [c for c in INVENTORY_CASES if c["expect"] != "quoted"], ids=lambda c: c["case"])
def test_hostile_inventory_host_gets_its_one_line_error(case, tmp_path):
    inv = write_inventory(case, tmp_path)
    loaded = inventory.load(str(inv))
    if case.get("plan"):
        assert not loaded.errors
        with pytest.raises(InputError) as exc:
            plan.plan_host(baseline.load(VARS_BASELINE), loaded.targets[0])
        errors = [str(exc.value)]
    else:
        assert not loaded.targets
        errors = [str(e) for e in loaded.errors]
    assert len(errors) == 1 and "\n" not in errors[0]
    assert errors[0].startswith(expected_line(case, tmp_path, inv)), (errors[0], expected_line(case, tmp_path, inv))


@pytest.mark.parametrize("case", [c for c in INVENTORY_CASES if c["expect"] != "quoted"], ids=lambda c: c["case"])
def test_cli_check_refuses_hostile_host_with_exit_2_and_runs_nothing(case, tmp_path):
    inv = write_inventory(case, tmp_path)
    r = kijun("check", "-i", str(inv), "-b", VARS_BASELINE, "--no-store", "--connect-timeout", "3", cwd=tmp_path)
    assert r.returncode == 2, r.stdout + r.stderr
    assert "Traceback" not in r.stderr
    assert any(line.startswith("kijun: error: " + expected_line(case, tmp_path, inv)) for line in r.stderr.splitlines()), r.stderr
    assert no_marker(tmp_path), "a hostile host field ran a command on the controller"


@pytest.mark.parametrize("case", [c for c in INVENTORY_CASES if c["case"] in ("at-local", "at-local-with-hostname", "dash-host", "ssh-port-options")],
                         ids=lambda c: c["case"])
def test_cli_apply_dry_never_connects_to_a_rejected_host(case, tmp_path):
    """`@local` made apply probe (and with apply, change) the controller itself while check said unreachable.
    apply refuses the whole inventory (it changes hosts): one line naming the host, exit 2, nothing run."""
    inv = write_inventory(case, tmp_path)
    base, marker = materialise(str(HOSTILE / "baselines/setting-path-quote.yaml"), tmp_path)
    r = kijun("apply", "-i", str(inv), "-b", str(base), "--dry", "--format", "json", cwd=tmp_path)
    assert "Traceback" not in r.stderr, r.stderr
    assert r.returncode == 2 and r.stdout == "", r.stdout + r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1 and lines[0].startswith(f"kijun: error: {expected_line(case, tmp_path, inv)}"), r.stderr
    assert no_marker(tmp_path) and not marker.exists()


def test_remote_refuses_an_option_like_destination_even_without_the_inventory(tmp_path):
    """Defence in depth for callers that build a HostTarget themselves: ssh never sees an option as host."""
    from kijun.remote import Unreachable, runner_for

    for ssh in ({"hostname": "-oProxyCommand=touch${IFS}" + str(tmp_path / "m")}, {"hostname": "127.0.0.1", "user": "-oX=y"}):
        with pytest.raises(Unreachable):
            runner_for(HostTarget(name="x", ssh=ssh))
    assert not (tmp_path / "m").exists()


def test_backup_manifest_keeps_a_backslash_path_on_one_line(tmp_path, monkeypatch):
    """A path with a literal backslash-n must not add an 'absent /etc/passwd' line that rollback would act on."""
    from kijun import ops

    monkeypatch.setattr(ops, "BACKUP_ROOT", str(tmp_path / "backup"))
    path = str(tmp_path / "x\\nabsent /etc/passwd")
    script = " && ".join(ops.backup_commands("t1", [path]))
    subprocess.run(["/bin/sh", "-c", script], check=True)
    manifest = (tmp_path / "backup/t1/manifest").read_text().splitlines()
    assert manifest == [f"absent {path}"]


def test_rollback_run_id_cannot_leave_the_backup_directory(tmp_path):
    from kijun import apply, ops

    for bad in ("../../etc", "x; touch y", "a\nb"):
        with pytest.raises(ValueError):
            ops.rollback_script(bad)
        with pytest.raises(InputError):
            apply.rollback(str(tmp_path / "inventory.py"), bad)
    assert "20260101T000000Z-0a1b2c" in ops.rollback_script("20260101T000000Z-0a1b2c")
