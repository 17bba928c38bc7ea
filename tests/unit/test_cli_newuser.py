"""The CLI as a new user meets it (issue 16): one-line errors, no side effects of looking, consistent options,
a config file, progress and logging. Through the real entry point (`python3 -m kijun.cli`) in a scratch HOME."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from test_matrix import fleet  # noqa: F401 - shared fixture: a store with check runs of a small fleet

ROOT = Path(__file__).resolve().parents[2]
MINI = str(ROOT / "tests/data/mini.yaml")
TIMEOUT_S = 180  # generous for a busy machine


@pytest.fixture
def home(tmp_path):
    h = tmp_path / "home"
    h.mkdir()
    return h


def kijun(*args: str, home: Path, cwd: Path | None = None, env: dict[str, str] | None = None,
          stdin: str | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("KIJUN_", "XDG_", "LC_", "LANG"))}
    clean.update(HOME=str(home), PYTHONPATH=str(ROOT), **(env or {}))
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True,
                          cwd=cwd or home, env=clean, timeout=TIMEOUT_S, input=stdin)


def one_line(r: subprocess.CompletedProcess) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == 2, (r.returncode, r.stderr)
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, lines
    return lines[0]


# --- 1. inventories whose code fails -----------------------------------------------------------------

def test_an_inventory_error_whose_str_fails_is_one_line(home, tmp_path):
    """pyinfra's UnexpectedExternalError.__str__ fails (no .message): str() of what an inventory raised is user code."""
    inv = tmp_path / "lab.py"
    inv.write_text("class LabDown(Exception):\n    def __str__(self):\n        return self.missing\n\nraise LabDown()\n")
    for args in (["check", "-i", str(inv), "-b", MINI, "--no-store"], ["apply", "--dry", "-i", str(inv), "-b", MINI]):
        assert one_line(kijun(*args, home=home)) == f"kijun: error: {inv}:5: cannot load inventory: LabDown"


def test_the_lab_inventory_without_a_lab_is_one_line(home, tmp_path):
    state = tmp_path / "no-lab"
    r = kijun("check", "-i", str(ROOT / "inventories/lab.py"), "-b", MINI, "--no-store", home=home,
              env={"KIJUN_LAB_STATE": str(state)})
    line = one_line(r)
    assert line.startswith(f"kijun: error: {ROOT}/inventories/lab.py:20: cannot load inventory: RuntimeError: no lab state")
    assert "<root>" not in line


def test_pyinfra_click_exception_escaping_a_command_is_one_line(monkeypatch, tmp_path):
    """Whatever still lets pyinfra's wrapper escape: click would call its show(), which prints a traceback."""
    from click.testing import CliRunner
    from pyinfra_cli.exceptions import UnexpectedExternalError

    from kijun import cli, runs

    def boom(*a, **kw):
        try:
            raise RuntimeError("lab is down")
        except RuntimeError as exc:
            raise UnexpectedExternalError(exc, "inv.py") from None

    monkeypatch.setattr(runs, "load_fleet", boom)
    r = CliRunner().invoke(cli.main, ["check", "-i", "inv.py", "-b", MINI, "--no-store"])
    assert r.exit_code == 2, r.output
    assert "Traceback" not in r.output
    assert r.output.strip() == "kijun: error: inv.py: cannot load inventory: RuntimeError: lab is down"


# --- 2. nothing to do is an error, not an empty table ----------------------------------------------

def test_apply_dry_with_a_missing_inventory(home):
    r = kijun("apply", "-i", "nope.py", "--dry", "-b", MINI, home=home)
    assert one_line(r) == "kijun: error: nope.py: cannot read: No such file or directory"
    assert r.stdout == "" and "--rollback" not in r.stderr


def test_a_dry_run_does_not_suggest_rollback(home, tmp_path):
    inv = tmp_path / "inv.py"  # a closed loopback port: unreachable at once
    inv.write_text('hosts = [("127.0.0.1", {"kijun_name": "dead", "ssh_port": 9})]\n')
    dry = kijun("apply", "-i", str(inv), "--dry", "-b", MINI, "--no-store", home=home)
    assert dry.returncode == 1 and "dead" in dry.stdout and "unreachable" in dry.stdout
    assert "dry run of mini" in dry.stderr and "--rollback" not in dry.stderr
    real = kijun("apply", "-i", str(inv), "-b", MINI, "--no-store", home=home)
    assert "(rollback with --rollback " in real.stderr


def test_check_with_every_host_rejected_says_no_host_could_be_checked(home, tmp_path):
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('h1', {'kijun_class': 'V'}), ('h2', {'ssh_port': 0})]\n")
    db = tmp_path / "results.db"
    r = kijun("check", "-i", str(inv), "-b", MINI, "--store", str(db), "--key", str(tmp_path / "k.pem"), home=home)
    assert r.returncode == 2 and "Traceback" not in r.stderr
    lines = r.stderr.splitlines()
    assert any("h1.kijun_class" in x for x in lines) and any("h2.ssh_port" in x for x in lines)
    assert lines[-1] == f"kijun: error: {inv}: no host could be checked: all 2 hosts were rejected; no run was stored"
    assert "Summary" not in r.stdout and r.stdout == ""
    assert not db.exists()
    inv.write_text("hosts = [('h1', {'kijun_class': 'V'})]\n")  # one host: still one line
    r = kijun("check", "-i", str(inv), "-b", MINI, "--store", str(db), "--key", str(tmp_path / "k.pem"), home=home)
    assert one_line(r) == (f"kijun: error: {inv}: h1.kijun_class: importance class must be one of I, II, III, IV "
                           "(got 'V') (no host could be checked; no run was stored)")


# --- 3. looking never creates the store -------------------------------------------------------------

READ_ONLY = [["matrix"], ["drift"], ["runs"], ["inspect", "--no-store"]]


@pytest.mark.parametrize("args", READ_ONLY, ids=lambda a: " ".join(a))
def test_read_only_commands_do_not_create_the_store(home, args):
    default = home / ".local/share/kijun/results.db"
    line = one_line(kijun(*args, home=home))
    assert line.startswith(f"kijun: error: no store at {default}: ")
    assert not (home / ".local").exists()  # neither the database nor its directory


@pytest.mark.parametrize("args", [["verify"], ["advisory", "status", "ADV-1"]], ids=lambda a: " ".join(a))
def test_commands_reading_signed_rows_do_not_create_the_store(home, key_path, tmp_path, args):
    db = tmp_path / "sub" / "results.db"
    line = one_line(kijun(*args, "--store", str(db), "--key", str(key_path), home=home))
    assert line.startswith(f"kijun: error: no store at {db}: ")
    assert not db.parent.exists()


def test_runs_on_an_empty_store_says_so(home, tmp_path):
    from kijun.store import Store

    db = tmp_path / "results.db"
    Store(db).close()
    r = kijun("runs", "--store", str(db), home=home)
    assert r.returncode == 0 and r.stdout == ""
    assert r.stderr == f"kijun: no runs stored in {db}\n"
    r = kijun("runs", "--store", str(db), "--kind", "apply", home=home)
    assert r.stderr == f"kijun: no apply runs stored in {db}\n"


# --- 4. validate names the kind of file it was given ------------------------------------------------

@pytest.mark.parametrize("path,kind,command", [
    ("advisories/example-icmp-redirects.yaml", "an advisory", "kijun advisory validate"),
    ("waivers/example.yaml", "a waiver file", "kijun waivers check"),
    ("baselines/clauses/nisc.yaml", "a clause map", "kijun clauses --check --map"),
    ("inventories/lab.py", "a pyinfra inventory", "kijun params -i"),
])
def test_validate_names_the_kind_and_the_command(home, path, kind, command):
    r = kijun("validate", path, home=home, cwd=ROOT)
    line = one_line(r)
    assert line.startswith(f"{path}: this is {kind}, not a baseline: use `{command} {path}`"), line


@pytest.mark.parametrize("args,expected", [
    (["advisory", "validate", "baselines/nisc-core.yaml"],
     "baselines/nisc-core.yaml: this is a baseline, not an advisory: use `kijun validate baselines/nisc-core.yaml`"),
    (["advisory", "validate", "waivers/example.yaml"],
     "waivers/example.yaml: this is a waiver file, not an advisory: use `kijun waivers check waivers/example.yaml`"),
    (["waivers", "check", "advisories/example-icmp-redirects.yaml"],
     "kijun: error: advisories/example-icmp-redirects.yaml: this is an advisory, not a waiver file: "
     "use `kijun advisory validate advisories/example-icmp-redirects.yaml`"),
])
def test_the_other_validators_name_the_kind_too(home, args, expected):
    assert one_line(kijun(*args, home=home, cwd=ROOT)) == expected


def test_validate_of_a_report_file_points_to_verify(home, tmp_path):
    report = tmp_path / "r.json"
    report.write_text('{"kijun_report": 1, "kind": "check", "hosts": []}\n')
    assert one_line(kijun("validate", str(report), home=home)) == \
        f"{report}: this is a run report, not a baseline: use `kijun verify {report}`"


def test_validation_errors_come_in_line_order(home, tmp_path):
    """Sorted by JSON path, controls[10] came before controls[2]."""
    import json

    import yaml

    base = yaml.safe_load((ROOT / "tests/data/mini.yaml").read_text(encoding="utf-8"))
    one = base["controls"][1]
    base["controls"] = [json.loads(json.dumps(dict(one, id=f"T-SYS-{i:03d}"))) for i in range(1, 12)]  # no aliases
    base["controls"][2]["severity"] = "huge"
    base["controls"][10]["severity"] = "tiny"
    path = tmp_path / "b.yaml"
    path.write_text(yaml.safe_dump(base, allow_unicode=True, sort_keys=False), encoding="utf-8")
    r = kijun("validate", str(path), home=home)
    assert r.returncode == 2
    lines = r.stderr.splitlines()
    assert [x.split(": ")[1] for x in lines] == ["controls[2].severity", "controls[10].severity"], lines
    numbers = [int(x.split(":")[1]) for x in lines]
    assert numbers == sorted(numbers)


# --- 5. one name and one default per option ---------------------------------------------------------

def _command(path: str):
    from kijun import cli

    cmd = cli.main
    for name in path.split():
        cmd = cmd.commands[name]
    return cmd


def _param(path: str, name: str):
    return next(p for p in _command(path).params if p.name == name)


def test_parallel_has_one_default_on_every_fleet_command():
    defaults = {c: _param(c, "parallel").default for c in ("check", "apply", "advisory apply")}
    assert len(set(defaults.values())) == 1, defaults
    assert all(_param(c, "parallel").opts == ["--parallel"] for c in defaults)


def test_class_is_the_one_name_and_classes_a_hidden_alias(home):
    assert _param("matrix", "classes").opts == ["--class"]
    assert _param("inspect", "classes").opts == ["--class"]
    old = _param("inspect", "old_classes")
    assert old.opts == ["--classes"] and old.hidden
    assert "--classes" not in kijun("inspect", "--help", home=home).stdout


def test_inspect_takes_class_and_the_old_classes(fleet):  # noqa: F811
    import json

    from click.testing import CliRunner

    from kijun.cli import main

    db, b = str(fleet["db"]), str(fleet["base"].path)
    common = ["inspect", "--store", db, "-b", b, "--no-store", "--format", "json"]
    new = CliRunner().invoke(main, [*common, "--class", "IV"])
    old = CliRunner().invoke(main, [*common, "--classes", "IV"])
    default = CliRunner().invoke(main, common)
    assert new.exit_code == old.exit_code == 1, new.output
    assert json.loads(new.stdout)["totals"] == json.loads(old.stdout)["totals"]
    assert json.loads(default.stdout)["totals"] != json.loads(new.stdout)["totals"]  # I,II by default
    bad = CliRunner().invoke(main, [*common, "--class", "V"])
    assert bad.exit_code == 2 and "importance classes are I, II, III, IV (got V)" in bad.output


def test_waivers_check_baseline_help_is_its_own():
    help_text = _param("waivers check", "baseline_path").help
    assert "waive" in help_text and "titles" not in help_text


@pytest.mark.parametrize("flag,expected", [((), "StrictHostKeyChecking=yes"),
                                           (("--trust-on-first-use",), "StrictHostKeyChecking=accept-new")])
def test_check_has_trust_on_first_use_like_apply(monkeypatch, tmp_path, flag, expected):
    from click.testing import CliRunner

    from kijun import cli, runs
    from kijun.remote import ssh_options

    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('web-01', {'kijun_class': 'II'})]\n")
    seen = []

    def fake_check(base, loaded, limit, **kw):
        seen.extend(loaded.targets)
        raise SystemExit(0)

    monkeypatch.setattr(runs, "check", fake_check)
    r = CliRunner().invoke(cli.main, ["check", "-i", str(inv), "-b", MINI, "--no-store", *flag])
    assert r.exit_code == 0, r.output
    assert [t.name for t in seen] == ["web-01"]
    assert expected in ssh_options(seen[0])
    assert "--trust-on-first-use" in [o for p in _command("apply").params for o in p.opts]


# --- 6. kijun.toml ----------------------------------------------------------------------------------

def _no_store_at(r: subprocess.CompletedProcess) -> str:
    line = one_line(r)
    assert line.startswith("kijun: error: no store at "), line
    return line.split("no store at ", 1)[1].split(": ", 1)[0]


def test_config_precedence_flag_env_file_default(home, tmp_path):
    work = tmp_path / "work"
    work.mkdir()
    (work / "kijun.toml").write_text('store = "file.db"\n')
    assert _no_store_at(kijun("runs", home=home, cwd=work)) == str(work / "file.db")
    env = {"KIJUN_STORE": str(tmp_path / "env.db")}
    assert _no_store_at(kijun("runs", home=home, cwd=work, env=env)) == str(tmp_path / "env.db")
    flag = str(tmp_path / "flag.db")
    assert _no_store_at(kijun("runs", "--store", flag, home=home, cwd=work, env=env)) == flag
    (work / "kijun.toml").unlink()
    assert _no_store_at(kijun("runs", home=home, cwd=work)) == str(home / ".local/share/kijun/results.db")


def test_config_in_the_user_config_dir_and_the_working_directory_first(home, tmp_path):
    xdg = tmp_path / "xdg"
    (xdg / "kijun").mkdir(parents=True)
    (xdg / "kijun/kijun.toml").write_text('store = "/srv/kijun/user.db"\n')
    work = tmp_path / "work"
    work.mkdir()
    env = {"XDG_CONFIG_HOME": str(xdg)}
    assert _no_store_at(kijun("runs", home=home, cwd=work, env=env)) == "/srv/kijun/user.db"
    (work / "kijun.toml").write_text('store = "here.db"\n')
    assert _no_store_at(kijun("runs", home=home, cwd=work, env=env)) == str(work / "here.db")


def test_config_language_class_and_inventory(home, tmp_path):
    import json

    (tmp_path / "kijun.toml").write_text(f'language = "ja"\nclass = "IV"\nbaseline = "{MINI}"\n'
                                         'inventory = "fleet.py"  # for fleet checks; --local ignores it\n')
    r = kijun("check", "--local", "--no-store", home=home, cwd=tmp_path)
    assert r.returncode in (0, 1), r.stderr
    assert "判定" in r.stdout and "重要性: IV" in r.stdout  # the header names the class judged by
    r = kijun("check", "--local", "--lang", "en", "--format", "json", home=home, cwd=tmp_path)
    assert json.loads(r.stdout)["hosts"][0]["importance_class"] == "IV"
    r = kijun("check", "--local", "--lang", "en", "--class", "II", home=home, cwd=tmp_path)
    assert "Control" in r.stdout and "Class: II" in r.stdout and "Class: IV" not in r.stdout


def test_config_parallel_and_inventory_reach_a_fleet_check(monkeypatch, tmp_path):
    from click.testing import CliRunner

    from kijun import cli, runs

    (tmp_path / "inv.py").write_text("hosts = [('web-01', {'kijun_class': 'II'})]\n")
    cfg = tmp_path / "kijun.toml"
    cfg.write_text(f'parallel = 3\ninventory = "inv.py"\nbaseline = "{MINI}"\n')
    seen = {}

    def fake_check(base, loaded, limit, **kw):
        seen.update(kw, inventory=loaded.path, baseline=base.id)
        raise SystemExit(0)

    monkeypatch.setattr(runs, "check", fake_check)
    monkeypatch.setenv("KIJUN_CONFIG", str(cfg))
    r = CliRunner().invoke(cli.main, ["check", "--no-store"])
    assert r.exit_code == 0, r.output
    assert seen["parallel"] == 3 and seen["inventory"] == str(tmp_path / "inv.py") and seen["baseline"] == "mini"
    r = CliRunner().invoke(cli.main, ["check", "--no-store", "--parallel", "7"])
    assert seen["parallel"] == 7


@pytest.mark.parametrize("text,expected", [
    ('stor = "x.db"\n', "stor: unknown key (known: store, key, baseline, inventory, language, parallel, class)"),
    ('parallel = "many"\n', "parallel: must be a whole number 1-1000 (got 'many')"),
    ('parallel = 0\n', "parallel: must be a whole number 1-1000 (got 0)"),
    ('language = "fr"\n', "language: must be one of ja, en (got 'fr')"),
    ('class = "V"\n', "class: must be one of I, II, III, IV (got 'V')"),
    ('store = 5\n', "store: must be a non-empty string (got 5)"),
    ('store = "postgresql://kijun:hunter2@db/kijun"\n', "store: a password does not belong in a config file"),
    ('\n\nparallel = \n', ":3: not valid TOML: Invalid value"),
])
def test_a_bad_config_file_is_one_line(home, tmp_path, text, expected):
    (tmp_path / "kijun.toml").write_text(text)
    for args in (["runs"], ["check", "--local"]):
        line = one_line(kijun(*args, home=home, cwd=tmp_path))
        want = f"kijun: error: {tmp_path}/kijun.toml{expected}" if expected.startswith(":") else \
            f"kijun: error: {tmp_path}/kijun.toml: {expected}"
        assert line.startswith(want), line
        assert "hunter2" not in line


# --- 7. progress on a terminal, -v/-q through logging ------------------------------------------------

DEAD = 'hosts = [("127.0.0.1", {"kijun_name": "dead-1", "ssh_port": 9}), ("127.0.0.2", {"kijun_name": "dead-2", "ssh_port": 9})]\n'


def _fleet_check(tmp_path, *extra):
    inv = tmp_path / "dead.py"  # closed loopback ports: unreachable at once, no lab needed
    inv.write_text(DEAD)
    return ["check", "-i", str(inv), "-b", MINI, "--no-store", "--connect-timeout", "20", *extra]


def run_with_stderr_on_a_pty(args: list[str], home: Path) -> tuple[int, str, str]:
    """stderr on a pseudo-terminal (as in an operator's shell), stdout on a pipe."""
    import pty
    import select
    import time

    master, slave = pty.openpty()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("KIJUN_", "XDG_"))}
    env.update(HOME=str(home), PYTHONPATH=str(ROOT), TERM="xterm")
    p = subprocess.Popen([sys.executable, "-m", "kijun.cli", *args], stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                         stderr=slave, env=env, cwd=home)
    os.close(slave)
    err = b""
    deadline = time.monotonic() + TIMEOUT_S
    while time.monotonic() < deadline:
        ready, _, _ = select.select([master], [], [], 1.0)
        if ready:
            try:
                chunk = os.read(master, 65536)
            except OSError:  # EIO: the child closed the terminal
                break
            if not chunk:
                break
            err += chunk
        elif p.poll() is not None:
            break
    os.close(master)
    out = p.stdout.read().decode()
    p.stdout.close()
    return p.wait(timeout=TIMEOUT_S), out, err.decode(errors="replace")


def test_progress_line_only_when_stderr_is_a_terminal(home, tmp_path):
    code, out, err = run_with_stderr_on_a_pty(_fleet_check(tmp_path), home)
    assert code == 1, err
    assert "\r\x1b[K0/2 hosts done, 0 failing, 0 unreachable, 00:0" in err
    assert "2/2 hosts done, 0 failing, 2 unreachable" in err
    assert err.endswith("\r\x1b[K")  # cleared at the end: the table is not mixed with it
    assert "dead-1" in out and "\x1b" not in out
    r = kijun(*_fleet_check(tmp_path), home=home)  # stderr on a pipe: no progress line, no escape sequence
    assert r.returncode == 1
    assert "hosts done" not in r.stderr and "\x1b" not in r.stderr and "\r" not in r.stderr


def test_apply_shows_progress_on_a_terminal_too(home, tmp_path):
    args = ["apply", "--dry", *_fleet_check(tmp_path)[1:-2]]  # apply has no --connect-timeout
    code, out, err = run_with_stderr_on_a_pty(args, home)
    assert code == 1, err
    assert "2/2 hosts done, 0 failing, 2 unreachable" in err and err.endswith("\r\x1b[K")
    assert "dry run of mini" in err  # the run's own line, not overwritten by the progress line
    r = kijun(*args, home=home)
    assert "hosts done" not in r.stderr and "\x1b" not in r.stderr


def test_progress_line_in_japanese_and_not_with_quiet(home, tmp_path):
    _, _, err = run_with_stderr_on_a_pty(_fleet_check(tmp_path, "--lang", "ja"), home)
    assert "2/2 ホスト完了、不適合 0、到達不能 2" in err
    _, _, err = run_with_stderr_on_a_pty(["-q", *_fleet_check(tmp_path)], home)
    assert "hosts done" not in err and "\x1b" not in err


def test_verbose_shows_each_host_start_and_end(home, tmp_path):
    plain = kijun(*_fleet_check(tmp_path), home=home)
    assert "dead-1" not in plain.stderr  # per-host lines only with -v
    r = kijun("-v", *_fleet_check(tmp_path), home=home)
    assert r.returncode == 1
    for host in ("dead-1", "dead-2"):
        assert f"kijun: {host}: checking" in r.stderr
        assert f"kijun: {host}: unreachable: " in r.stderr
    lines = r.stderr.splitlines()
    assert lines.index("kijun: dead-1: checking") < next(i for i, x in enumerate(lines) if x.startswith("kijun: dead-1: unreachable"))


def test_quiet_hides_the_run_lines_but_not_errors(home, tmp_path, key_path):
    db = tmp_path / "results.db"
    args = _fleet_check(tmp_path)[:-3]  # stored this time
    r = kijun("-q", *args, "--store", str(db), "--key", str(key_path), "--connect-timeout", "20", home=home)
    assert r.returncode == 1 and r.stderr == ""
    r = kijun("-q", *args, "--store", str(db), "--key", str(tmp_path / "none.pem"), home=home)
    assert r.returncode == 2 and "no signing key" in r.stderr


def test_progress_counts():
    import io

    from kijun.cli_progress import Progress
    from kijun.model import ControlResult, HostResult

    def host(name, reachable=True, status="pass"):
        return HostResult(name, "III", "", "", "", [], reachable, "", "", "", {}, [ControlResult("C-1", status, "", "", "")])

    stream = io.StringIO()
    with Progress(3, "en", stream=stream, enabled=True) as p:
        for h in (host("a"), host("b", status="fail"), host("c", reachable=False)):
            p.host(h)
    assert (p.done, p.failing, p.unreachable) == (3, 1, 1)
    assert "3/3 hosts done, 1 failing, 1 unreachable, 00:00" in stream.getvalue()
    quiet = io.StringIO()
    with Progress(1, stream=quiet) as p:  # a StringIO is no terminal
        p.host(host("a"))
    assert quiet.getvalue() == ""


def test_a_failed_ssh_handshake_prints_no_library_traceback(home, tmp_path):
    """paramiko logs a traceback at ERROR for a peer that closes before the banner; the host is unreachable."""
    import socket
    import threading

    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(8)
    port = server.getsockname()[1]

    def closer():
        while True:
            try:
                conn, _ = server.accept()
            except OSError:
                return
            conn.close()

    threading.Thread(target=closer, daemon=True).start()
    inv = tmp_path / "inv.py"
    inv.write_text(f'hosts = [("127.0.0.1", {{"kijun_name": "closer", "ssh_port": {port}}})]\n')
    try:
        r = kijun("apply", "--dry", "-i", str(inv), "-b", MINI, "--no-store", home=home)
        assert r.returncode == 1, r.stderr
        assert "closer" in r.stdout and "unreachable" in r.stdout
        assert "Traceback" not in r.stderr and "paramiko" not in r.stderr, r.stderr
        vv = kijun("-vv", "apply", "--dry", "-i", str(inv), "-b", MINI, "--no-store", home=home)
        assert "paramiko" in vv.stderr  # the library's own lines are there for whoever asks
    finally:
        server.close()


def test_advisory_apply_json_is_json_and_host_lines_go_to_stderr(home, tmp_path, key_path):
    """The roll-out's per-host lines were written to stdout, before the JSON document."""
    import json

    inv = tmp_path / "dead.py"
    inv.write_text(DEAD)
    args = ["advisory", "apply", str(ROOT / "advisories/example-icmp-redirects.yaml"), "-i", str(inv),
            "--store", str(tmp_path / "results.db"), "--key", str(key_path)]
    r = kijun(*args, "--format", "json", home=home)
    assert r.returncode == 1, r.stderr
    data = json.loads(r.stdout)
    assert {h["host"] for h in data["hosts"]} == {"dead-1", "dead-2"}
    assert r.stderr == ""
    v = kijun("-v", *args, "--format", "json", "--pending-only", home=home)
    assert json.loads(v.stdout) and "kijun: dead-1: unreachable" in v.stderr
    code, _, err = run_with_stderr_on_a_pty(args, home)
    assert code == 1 and "2/2 hosts done, 0 failing, 2 unreachable" in err


def test_advisory_apply_with_every_host_rejected_is_not_already_confirmed(home, tmp_path, key_path):
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('h1', {'kijun_class': 'V'})]\n")
    db = tmp_path / "results.db"
    r = kijun("advisory", "apply", str(ROOT / "advisories/example-icmp-redirects.yaml"), "-i", str(inv),
              "--store", str(db), "--key", str(key_path), home=home)
    assert one_line(r) == (f"kijun: error: {inv}: h1.kijun_class: importance class must be one of I, II, III, IV "
                           "(got 'V') (no host could be rolled out to; nothing was recorded)")
    assert "already confirmed" not in r.stdout + r.stderr and not db.exists()


def test_a_config_file_of_another_user_or_writable_by_others_is_refused(home, tmp_path):
    """A kijun.toml that came with someone else's checkout must not choose the inventory (code kijun runs)."""
    cfg = tmp_path / "kijun.toml"
    cfg.write_text('inventory = "evil.py"\n')
    cfg.chmod(0o666)
    line = one_line(kijun("check", home=home, cwd=tmp_path))
    assert line == f"kijun: error: {cfg}: writable by others (mode 0666): chmod go-w {cfg}"
    cfg.chmod(0o644)
    if os.getuid() == 0:
        os.chown(cfg, 54321, 54321)
        line = one_line(kijun("check", home=home, cwd=tmp_path))
        assert line.startswith(f"kijun: error: {cfg}: owned by uid 54321, not by you or root")


def test_apply_names_why_a_host_cannot_be_connected_without_a_traceback(home, tmp_path):
    """A missing key file made pyinfra's connect_all raise inside a greenlet: gevent printed the traceback,
    and the hosts after that one were never activated."""
    inv = tmp_path / "inv.py"
    inv.write_text('hosts = [("127.0.0.1", {"kijun_name": "nokey", "ssh_port": 9, "ssh_key": "/nonexistent/key"}),'
                   ' ("127.0.0.2", {"kijun_name": "dead", "ssh_port": 9})]\n')
    r = kijun("apply", "--dry", "-i", str(inv), "-b", MINI, "--no-store", "--format", "json", home=home)
    assert r.returncode == 1, r.stderr
    assert "Traceback" not in r.stderr and "Greenlet" not in r.stderr, r.stderr
    import json

    out = {o["host"]: o for o in json.loads(r.stdout)["hosts"]}
    assert out["nokey"]["error"] == "cannot connect: No such private key file: /nonexistent/key"
    assert not out["dead"]["reachable"] and out["dead"]["error"].startswith("cannot connect: ")


# --- local checks are kept like fleet checks ------------------------------------------------------------

def test_a_local_check_is_stored_and_signed_once_a_key_exists(home):
    """Before `kijun keygen` the first check still runs and says it was not kept; afterwards every local
    check is a signed stored run, `kijun verify` vouches for it and `kijun drift` compares two of them."""
    import json

    r = kijun("check", "--local", "-b", MINI, "--class", "IV", "--format", "json", home=home)
    assert r.returncode in (0, 1), r.stderr
    assert "not stored: no signing key yet" in r.stderr
    assert not (home / ".local/share/kijun/results.db").exists()
    assert kijun("keygen", home=home).returncode == 0
    runs = []
    for _ in range(2):
        r = kijun("check", "--local", "-b", MINI, "--class", "IV", "--format", "json", home=home)
        assert r.returncode in (0, 1), r.stderr
        report = json.loads(r.stdout)
        assert report["run_id"] and f"run {report['run_id']} stored and signed" in r.stderr
        assert report["inventory"]["path"].startswith("local:")
        runs.append(report["run_id"])
    listed = kijun("runs", home=home)
    assert all(run in listed.stdout for run in runs), listed.stdout
    assert kijun("verify", home=home).returncode == 0
    drift = kijun("drift", home=home)
    assert drift.returncode == 0 and runs[0] in drift.stdout + drift.stderr and runs[1] in drift.stdout + drift.stderr, drift
    # --no-store keeps nothing; -q hides the informational line
    quiet = kijun("-q", "check", "--local", "-b", MINI, "--class", "IV", home=home)
    assert "stored and signed" not in quiet.stderr and quiet.returncode in (0, 1)
    kijun("check", "--local", "-b", MINI, "--class", "IV", "--no-store", home=home)
    assert len([line for line in kijun("runs", home=home).stdout.splitlines() if "check" in line]) == 3


def test_a_local_check_with_a_store_asked_for_but_no_key_is_one_line(home):
    """A store named (flag, KIJUN_STORE or kijun.toml) means the operator wants the record: no silent skip."""
    line = one_line(kijun("check", "--local", "-b", MINI, "--store", str(home / "r.db"), home=home))
    assert "no signing key" in line and "kijun keygen" in line
