"""Bad input, through the real CLI: one line naming the file, the place and the reason; exit 2; no traceback.

tests/data/bad/<kind>/ holds the corpus (tests/data/broken/ holds baseline schema errors, tested in
test_baseline.py). A text case states its expected line in its first line, `# expect: ...`; a binary or
JSON case in NAME.expect beside it. The expectation is what follows the file name in the error line:
`:LINE: PLACE: REASON`, or `PLACE: REASON` when the error has no line. Cases that cannot live in git
(FIFOs, devices, oversized files, permissions, passwords) are made here, in GENERATED.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BAD = ROOT / "tests/data/bad"
MINI = "tests/data/mini.yaml"
KINDS = ("baselines", "inventories", "waivers", "advisories", "reports", "stores")
TIMEOUT_S = 120  # generous for a busy machine; a case that does not end in time is a hang, and fails


@pytest.fixture(scope="module")
def keys(tmp_path_factory):
    from kijun.signing import generate_key, public_path

    key = generate_key(tmp_path_factory.mktemp("signing") / "ed25519.pem")
    return key, public_path(key)


def command(kind: str, path: str, tmp: Path, keys) -> list[str]:
    """The CLI command that reads one input of a kind (the one an operator would run)."""
    key, pub = keys
    return {
        "baselines": ["validate", path],
        # stored and signed, as `kijun check` does by default: a bad inventory must never leave a run behind
        "inventories": ["check", "-i", path, "-b", MINI, "--store", str(tmp / "results.db"), "--key", str(key)],
        "waivers": ["waivers", "check", path, "-b", MINI],
        "advisories": ["advisory", "validate", path],
        "reports": ["verify", "--pub", str(pub), path],
        "stores": ["runs", "--store", path],
    }[kind]


def kijun(args: list[str], env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("KIJUN_")}
    clean["HOME"] = clean.get("HOME", "/root")
    return subprocess.run([sys.executable, "-m", "kijun.cli", *args], capture_output=True, text=True, cwd=ROOT,
                          timeout=TIMEOUT_S, env={**clean, **(env or {})})


def expectation(case: Path) -> str:
    sidecar = case.with_name(case.name + ".expect")
    if sidecar.exists():
        lines = [line for line in sidecar.read_text(encoding="utf-8").splitlines() if not line.startswith("#")]
        return lines[0].strip()
    first = case.read_bytes().split(b"\n", 1)[0].decode("utf-8")
    assert first.startswith("# expect: "), f"{case}: first line must be `# expect: ...` (or add {sidecar.name})"
    return first[len("# expect: "):].strip()


def corpus() -> list[Path]:
    return sorted(p for kind in KINDS for p in (BAD / kind).iterdir() if p.suffix != ".expect")


def assert_one_clear_line(r: subprocess.CompletedProcess, shown_path: str, expected: str) -> str:
    assert "Traceback" not in r.stderr + r.stdout, r.stderr
    assert r.returncode == 2, f"exit {r.returncode} (expected 2); stderr: {r.stderr!r}"
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, f"expected exactly one line on stderr, got {lines}"
    line = lines[0]
    want = f"{shown_path}{expected}" if expected.startswith(":") else f"{shown_path}: {expected}"
    assert want in line, f"\n got:  {line}\n want: {want}"
    return line


def stored_runs(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        return conn.execute("SELECT COUNT(*) FROM kijun_runs").fetchone()[0]


def test_the_corpus_covers_every_kind():
    cases = corpus()
    for kind in KINDS:
        assert sum(p.parent.name == kind for p in cases) + sum(g[0] == kind for g in GENERATED) >= 8, kind
    assert len(cases) + len(GENERATED) >= 60


@pytest.mark.parametrize("case", corpus(), ids=lambda p: f"{p.parent.name}/{p.name}")
def test_bad_input_gives_one_clear_line(case, tmp_path, keys):
    kind = case.parent.name
    path = str(case.relative_to(ROOT))
    if kind == "stores":  # the store is opened for writing: work on a private copy (git keeps no 0600 mode)
        copy = tmp_path / case.name
        shutil.copyfile(case, copy)
        copy.chmod(0o600)
        path = str(copy)
    args = command(kind, path, tmp_path, keys)
    sidecar = case.with_name(case.name + ".expect")
    for line in sidecar.read_text(encoding="utf-8").splitlines() if sidecar.exists() else ():
        if line.startswith("# command: "):  # the subcommand that reads the broken part
            args[0] = line[len("# command: "):].strip()
    r = kijun(args)
    assert_one_clear_line(r, path, expectation(case))
    if kind == "inventories":
        assert stored_runs(tmp_path / "results.db") == 0, "a bad inventory left a (signed, empty) run in the store"


# --- cases made at run time: (kind, maker(tmp) -> path, expectation, extra environment) ------------------

def _fifo(tmp: Path, name: str) -> str:
    os.mkfifo(tmp / name)  # nobody ever writes to it: reading it would block forever
    return str(tmp / name)


def _oversized(tmp: Path, name: str, mib: int = 9) -> str:
    with open(tmp / name, "wb") as f:  # sparse: big by size, no disk used
        f.truncate(mib * 1024 * 1024)
    return str(tmp / name)


def _empty_dir(tmp: Path, name: str) -> str:
    (tmp / name).mkdir()
    return str(tmp / name)


def _missing(tmp: Path, name: str) -> str:
    return str(tmp / name)


FIFO = "not a regular file (a FIFO)"
DEVICE = "not a regular file (a character device)"
TOO_LARGE = "file too large (9437184 bytes; the limit is 2 MiB)"
STORE_PW = "password: a password on the command line is visible to every user in `ps`"
GENERATED = [
    ("baselines", lambda t: _fifo(t, "b.yaml"), FIFO, None),
    ("baselines", lambda t: "/dev/zero", DEVICE, None),
    ("baselines", lambda t: _oversized(t, "b.yaml"), TOO_LARGE, None),
    ("baselines", lambda t: _empty_dir(t, "b.yaml"), "not a regular file (a directory)", None),
    ("waivers", lambda t: _fifo(t, "w.yaml"), FIFO, None),
    ("waivers", lambda t: _oversized(t, "w.yaml"), TOO_LARGE, None),
    ("advisories", lambda t: _fifo(t, "a.yaml"), FIFO, None),
    ("advisories", lambda t: "/dev/urandom", DEVICE, None),
    ("inventories", lambda t: _fifo(t, "inv.py"), FIFO, None),
    ("inventories", lambda t: "/dev/zero", DEVICE, None),
    ("inventories", lambda t: _oversized(t, "inv.py"), TOO_LARGE, None),
    ("inventories", lambda t: _missing(t, "inv.py"), "cannot read: No such file or directory", None),
    ("reports", lambda t: _fifo(t, "r.json"), FIFO, None),
    ("reports", lambda t: "/dev/zero", DEVICE, None),
    ("reports", lambda t: _oversized(t, "r.json", 33), "file too large (34603008 bytes; the limit is 32 MiB)", None),
    ("reports", lambda t: _empty_dir(t, "exported"), "no report files (*.json) in this directory", None),
    ("stores", lambda t: _fifo(t, "results.db"), "cannot open store: not a regular file (a FIFO)", None),
    ("stores", lambda t: "/dev/zero", "cannot open store: not a regular file (a character device)", None),
    ("stores", lambda t: _empty_dir(t, "results.db"), "cannot open store: not a regular file (a directory)", None),
    ("stores", lambda t: "mysql://kijun@db/kijun", "unsupported store URL", None),
]
# The store URL's password: refused on the command line (it would be in `ps`), never echoed from the environment.
PASSWORD_CASES = [
    (["runs", "--store", "postgresql://kijun:hunter2@127.0.0.1:1/kijun"], {}, "--store", STORE_PW),
    (["drift", "--store", "postgresql://kijun@127.0.0.1:1/kijun?password=hunter2"], {}, "--store", STORE_PW),
    (["runs"], {"KIJUN_STORE": "postgresql://kijun:hunter2@127.0.0.1:1/kijun"},
     "postgresql://kijun:***@127.0.0.1:1/kijun", "cannot open store: connection failed"),
    (["runs", "--store", "postgresql://kijun@127.0.0.1:1/kijun", "--store-password-file", "/nonexistent/pw"], {},
     "/nonexistent/pw", "cannot read: No such file or directory"),
]


@pytest.mark.parametrize("kind,make,expected,env", GENERATED,
                         ids=[f"{k}-{e.split(': ', 1)[-1][:40]}-{i}" for i, (k, _, e, _) in enumerate(GENERATED)])
def test_generated_bad_input_gives_one_clear_line(kind, make, expected, env, tmp_path, keys):
    path = make(tmp_path)
    r = kijun(command(kind, path, tmp_path, keys), env)
    assert_one_clear_line(r, path, expected)
    if kind == "inventories":
        assert stored_runs(tmp_path / "results.db") == 0


@pytest.mark.parametrize("args,env,shown,expected", PASSWORD_CASES, ids=lambda v: None)
def test_a_store_password_is_never_echoed_nor_taken_from_the_command_line(args, env, shown, expected):
    r = kijun(args, env)
    assert_one_clear_line(r, shown, expected)
    assert "hunter2" not in r.stdout + r.stderr


def test_a_store_readable_by_others_warns_in_one_line(tmp_path):
    from kijun.store import Store

    db = tmp_path / "results.db"
    Store(db).close()  # as a first check run creates it (`runs` only reads: it creates nothing)
    assert (db.stat().st_mode & 0o777) == 0o600  # a new store is private
    empty = f"kijun: no runs stored in {db}"
    assert kijun(["runs", "--store", str(db)]).stderr.splitlines() == [empty]
    db.chmod(0o644)
    r = kijun(["runs", "--store", str(db)])
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert r.stderr.splitlines() == [f"kijun: warning: {db}: store is readable by others (mode 0644): "
                                     f"chmod 600 {db}", empty]


def test_the_worst_case_a_539_byte_alias_bomb_ends_at_once():
    bomb = BAD / "baselines/alias-bomb.yaml"
    assert bomb.stat().st_size <= 1024
    r = kijun(["check", "--local", "-b", str(bomb.relative_to(ROOT))])
    assert_one_clear_line(r, str(bomb.relative_to(ROOT)), expectation(bomb))


def test_a_bad_inventory_stops_apply_before_any_host_is_touched(tmp_path):
    for case, expected in (("zero-hosts.py", "no hosts"), ("non-numeric-port.py", "web-01.ssh_port: port"),
                           ("duplicate-names.py", "hosts: duplicate host name 'web-01'")):
        path = f"tests/data/bad/inventories/{case}"
        r = kijun(["apply", "--dry", "-i", path, "-b", MINI])
        assert_one_clear_line(r, path, expected)


def test_apply_refuses_an_inventory_with_an_invalid_host_before_contacting_any(tmp_path):
    """pyinfra would build every host's connection and die on the bad port with a traceback."""
    inv = tmp_path / "inv.py"
    inv.write_text("hosts = [('127.0.0.1', {'ssh_port': 1, 'kijun_name': 'closed'}), "
                   "('127.0.0.2', {'ssh_port': 'ssh', 'kijun_name': 'bad-port'})]\n")
    r = kijun(["apply", "--dry", "-i", str(inv), "-b", MINI, "--format", "json"])
    assert_one_clear_line(r, str(inv), "127.0.0.2.ssh_port: port must be a whole number 1-65535 (got 'ssh')")
    assert r.stdout == ""  # no host was worked on
