"""One script per host: every probe command of every applicable item, run in a single round trip.

Output is framed by marker lines carrying a per-run nonce, so file contents that happen to look
like a marker cannot confuse the parser.
"""

from __future__ import annotations

import os
import secrets
import selectors
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass

from kijun.model import ProbeOutput

# Probes must not depend on the login environment: a non-root PATH without /usr/sbin made every
# sysctl look drifted in pyinfra (FIELD-NOTES). LC_ALL=C keeps tool output parseable.
PREAMBLE = "export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin LC_ALL=C LANG=C\n"

# Facts every run report carries for incident reporting (seed 002: OS, version, packages, updates).
HOST_FACT_PROBES = {
    "fact.hostname": "hostname",
    "fact.os_release": "cat /etc/os-release",
    "fact.kernel": "uname -srm",
    "dpkg.status": "dpkg-query -W -f='${Package}\\t${db:Status-Abbrev}\\t${Version}\\n'",
    "apt.pending": "apt-get -s -o Debug::NoLocking=1 upgrade 2>/dev/null | grep '^Inst '",
    "fact.systemd": "[ -d /run/systemd/system ] && echo yes || echo no",
    # What shows that kernel state (kernel.* sysctls, loaded modules, audit rules) is not this host's
    # own: each line is one sign seen, quoted in not-applicable reasons (kijun.facts.container_signs).
    "fact.container": (
        "v=$(systemd-detect-virt -c 2>/dev/null) && echo \"systemd-detect-virt -c: $v\"; "
        "[ -e /run/.containerenv ] && echo '/run/.containerenv exists'; "
        "[ -e /.dockerenv ] && echo '/.dockerenv exists'; "
        "[ -s /run/systemd/container ] && echo \"/run/systemd/container: $(head -c 40 /run/systemd/container)\"; "
        "awk '$5 == \"/proc/sys\" && $6 ~ /(^|,)ro(,|$)/ {print \"/proc/sys mounted read-only\"; exit}' /proc/self/mountinfo; "
        "[ -e /proc/modules ] || echo 'no /proc/modules'; true"),
}


def build_script(probes: Mapping[str, str], nonce: str) -> str:
    parts = [PREAMBLE]
    for key, cmd in probes.items():
        # Keys carry paths from baselines and inventories: quoted, and one line so framing holds.
        if any(c in key for c in "\n\r\0"):
            raise ValueError(f"probe key {key!r} contains a line break or NUL")
        parts.append(
            f"printf '\\n@@{nonce} %s\\n' {shlex.quote(key)}\n"
            f"( {cmd}\n) 2>&1\n"
            f"printf '\\n@@{nonce}rc %s\\n' \"$?\"\n"
        )
    return "".join(parts)


def parse_output(data: str | bytes, nonce: str) -> dict[str, ProbeOutput]:
    """Split the host's output on the nonce markers, working on bytes, and decode each section on
    its own: a byte that is not UTF-8 (Shift_JIS in a config file) spoils only the probes that read it."""
    if isinstance(data, str):
        data = data.encode("utf-8", "surrogateescape")
    out: dict[str, ProbeOutput] = {}
    start = f"@@{nonce} ".encode()
    end = f"\n@@{nonce}rc ".encode()
    pos = 0
    while True:
        i = data.find(start, pos)
        while i > 0 and data[i - 1:i] != b"\n":  # a marker counts only at the start of a line
            i = data.find(start, i + 1)
        if i < 0:
            return out
        eol = data.find(b"\n", i)
        if eol < 0:
            return out
        key = data[i + len(start):eol].decode("utf-8", "replace")
        j = data.find(end, eol)
        following = data.find(b"\n" + start, eol)
        if j < 0 or (0 <= following < j):  # cut off before its end marker: this key stays missing
            pos = eol + 1
            continue
        rc_end = data.find(b"\n", j + len(end))
        rc_text = data[j + len(end):rc_end if rc_end >= 0 else len(data)].strip()
        body = data[eol + 1:j]
        # build_script prints a newline before the end marker; drop the one it leaves.
        if body.endswith(b"\n"):
            body = body[:-1]
        out[key] = _decoded(body, int(rc_text) if rc_text.isdigit() else 1)
        pos = j + 1


def _decoded(body: bytes, rc: int) -> ProbeOutput:
    try:
        return ProbeOutput(body.decode("utf-8"), rc)
    except UnicodeDecodeError:
        return ProbeOutput(body.decode("utf-8", "replace"), rc, bad_utf8=True)


def merge(probe_sets: Iterable[Mapping[str, str]]) -> dict[str, str]:
    merged: dict[str, str] = {}
    for probes in probe_sets:
        for key, cmd in probes.items():
            if merged.get(key, cmd) != cmd:
                raise ValueError(f"probe key {key!r} used for two different commands")
            merged[key] = cmd
    return merged


Runner = Callable[[str], "str | bytes"]  # takes a script, returns its stdout


def run_probes(probes: Mapping[str, str], runner: Runner) -> dict[str, ProbeOutput]:
    nonce = secrets.token_hex(6)
    return parse_output(runner(build_script(probes, nonce)), nonce)


# --- running a probe script within bounds (local or over ssh) -----------------------------------

DEFAULT_HOST_TIMEOUT = 120  # seconds for a host's whole probe, connection included
DEFAULT_MAX_OUTPUT = 16 * 1024 * 1024  # bytes a host may send back
# One command-line argument holds at most 128 KiB (Linux MAX_ARG_STRLEN); bigger scripts go on stdin.
ARGV_MAX = 96 * 1024
# Runs the script that arrives on stdin; the probes themselves read /dev/null, never the script.
STDIN_SCRIPT = 'eval "$(cat)" </dev/null'
_STDERR_KEEP = 64 * 1024


class ProbeError(Exception):
    """The probe did not finish within its bounds (deadline, output cap, interrupted): an error verdict."""


@dataclass
class Finished:
    stdout: bytes
    stderr: str
    rc: int


def run_bounded(argv: list[str], stdin: bytes | None = None, timeout: float = DEFAULT_HOST_TIMEOUT,
                max_output: int = DEFAULT_MAX_OUTPUT, abort: threading.Event | None = None) -> Finished:
    """Run argv, reading its output as it comes: killed (with its whole process group) when the
    deadline passes, when stdout grows past max_output, or when abort is set. Memory stays
    bounded by max_output plus a fixed stderr tail."""
    deadline = time.monotonic() + timeout
    # Own session: a Ctrl-C at the terminal reaches kijun, which decides; not ssh, which would just die.
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True)
    out = bytearray()
    err = bytearray()
    sel = selectors.DefaultSelector()
    sel.register(proc.stdout, selectors.EVENT_READ, out)
    sel.register(proc.stderr, selectors.EVENT_READ, err)
    pending = memoryview(stdin or b"")
    if stdin is not None:
        os.set_blocking(proc.stdin.fileno(), False)
        if pending:
            sel.register(proc.stdin, selectors.EVENT_WRITE, None)
        else:
            proc.stdin.close()
    exited_at: float | None = None
    try:
        while sel.get_map():
            now = time.monotonic()
            if now >= deadline:
                raise ProbeError(f"timed out after {timeout:g} s")
            if abort is not None and abort.is_set():
                raise ProbeError("not finished: run interrupted")
            if exited_at is None and proc.poll() is not None:
                exited_at = now
            if exited_at is not None and now - exited_at > 2:
                break  # a leftover child (ProxyJump, ControlPersist) holds the pipes open: done anyway
            for key, _ in sel.select(timeout=min(0.2, max(0.0, deadline - now))):
                if key.data is None:  # the script for stdin
                    try:
                        n = os.write(key.fd, pending[:65536])
                    except BlockingIOError:
                        continue
                    except (BrokenPipeError, ConnectionResetError):
                        n = len(pending)
                    pending = pending[n:]
                    if not pending:
                        sel.unregister(key.fileobj)
                        key.fileobj.close()
                    continue
                chunk = os.read(key.fd, 65536)
                if not chunk:
                    sel.unregister(key.fileobj)
                    continue
                buf = key.data
                buf += chunk
                if buf is out and len(out) > max_output:
                    raise ProbeError(f"sent more than {max_output} bytes")
                if buf is err and len(err) > _STDERR_KEEP:
                    del err[:-_STDERR_KEEP]
        rc = proc.wait(timeout=max(0.1, deadline - time.monotonic()))
    except subprocess.TimeoutExpired:
        _kill(proc)
        raise ProbeError(f"timed out after {timeout:g} s") from None
    except BaseException:
        _kill(proc)
        raise
    finally:
        sel.close()
        for f in (proc.stdin, proc.stdout, proc.stderr):
            if f is not None:
                f.close()
    return Finished(bytes(out), err.decode("utf-8", "replace"), rc)


def _kill(proc: subprocess.Popen) -> None:
    try:
        os.killpg(proc.pid, signal.SIGKILL)
    except (ProcessLookupError, PermissionError):
        pass
    proc.wait()


def script_command(script: str) -> tuple[str, bytes | None]:
    """The /bin/sh -c argument and stdin for a script: the script itself, or on stdin when too big."""
    if len(script.encode()) <= ARGV_MAX:
        return script, None
    return STDIN_SCRIPT, script.encode()


def make_local_runner(timeout: float = DEFAULT_HOST_TIMEOUT, max_output: int = DEFAULT_MAX_OUTPUT,
                      abort: threading.Event | None = None) -> Runner:
    """This machine's runner (`kijun check --local`), under the same deadline and cap as a host."""

    def run(script: str) -> bytes:
        command, stdin = script_command(script)
        return run_bounded(["/bin/sh", "-c", command], stdin, timeout, max_output, abort).stdout

    return run


def local_runner(script: str) -> bytes:
    return make_local_runner()(script)
