"""What the operator sees while a fleet run is under way: -v/-q through the standard logging module, and one
progress line on stderr when stderr is a terminal (nothing when it is a file or a pipe: logs stay clean).

kijun's modules log with logging.getLogger(__name__): per-host start and end lines are INFO (shown with -v),
DEBUG with -vv. pyinfra's and paramiko's own log lines (tracebacks of failed handshakes included) reach
the operator only with -vv: their failures already arrive as that host's error.
"""

from __future__ import annotations

import logging
import os
import shutil
import sys
import threading
import time
from typing import Any, TextIO

LIBRARIES = ("paramiko", "pyinfra")


def level_for(verbosity: int) -> int:
    """-q: errors only; default: warnings; -v: per-host lines; -vv: debug."""
    if verbosity < 0:
        return logging.ERROR
    return (logging.WARNING, logging.INFO)[verbosity] if verbosity < 2 else logging.DEBUG


class _Formatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from kijun.termsafe import clean

        text = clean(record.getMessage())  # may carry host text
        if record.levelno >= logging.WARNING:
            text = f"{record.levelname.lower()}: {text}"
        return f"kijun: {text}" if record.name.split(".")[0] == "kijun" else f"{record.name}: {text}"


class _Handler(logging.StreamHandler):
    """A log line on a terminal first clears the progress line, which is drawn again below it.
    It writes to the sys.stderr of the moment (click's test runner swaps it), never to a stale one."""

    @property  # type: ignore[override]
    def stream(self) -> TextIO:
        return sys.stderr

    @stream.setter
    def stream(self, value: TextIO) -> None:
        pass

    def emit(self, record: logging.LogRecord) -> None:
        progress = Progress.active
        if progress is not None:
            progress.clear()
        super().emit(record)
        if progress is not None:
            progress.draw()


def setup_logging(verbosity: int) -> None:
    handler = _Handler()
    handler.setFormatter(_Formatter())
    for name in ("kijun", *LIBRARIES):
        logger = logging.getLogger(name)
        logger.handlers[:] = [h for h in logger.handlers if not isinstance(h, _Handler)] + [handler]
        logger.propagate = False  # one line per record, whatever else configured the root logger
    logging.getLogger("kijun").setLevel(level_for(verbosity))
    for name in LIBRARIES:
        logging.getLogger(name).setLevel(logging.DEBUG if verbosity >= 2 else logging.CRITICAL + 1)


def is_terminal(stream: Any) -> bool:
    try:
        return bool(stream.isatty()) and os.environ.get("TERM") != "dumb"
    except (AttributeError, ValueError):
        return False


class Progress:
    """One line, redrawn in place: hosts done/total, failing, unreachable, elapsed. Used as a context manager;
    it draws only on a terminal, so the same code runs quietly in cron jobs and CI."""

    active: Progress | None = None

    def __init__(self, total: int, lang: str = "en", stream: TextIO | None = None, enabled: bool | None = None):
        self.stream = stream or sys.stderr
        self.enabled = is_terminal(self.stream) if enabled is None else enabled
        self.total, self.lang = total, lang
        self.done = self.failing = self.unreachable = 0
        self.started = time.monotonic()
        self._lock = threading.RLock()
        self._stop = threading.Event()
        self._shown = False
        self._seen: set[str] = set()
        self._ticker: threading.Thread | None = None

    def __enter__(self) -> Progress:
        if self.enabled:
            Progress.active = self
            self.draw()
            self._ticker = threading.Thread(target=self._tick, name="kijun-progress", daemon=True)
            self._ticker.start()
        return self

    def __exit__(self, *exc: Any) -> None:
        self._stop.set()
        if self._ticker is not None:
            self._ticker.join(timeout=2)
        if self.enabled:
            self.clear()
            Progress.active = None

    def host(self, result: Any) -> None:
        """One host is finished (a kijun.model.HostResult)."""
        with self._lock:
            self.done += 1
            if not result.reachable:
                self.unreachable += 1
            elif result.error or any(r.status in ("fail", "error") for r in result.results):
                self.failing += 1
        self.draw()

    def line(self, text: str) -> None:
        """One of apply's per-host lines (kijun.apply: "HOST: unreachable", "HOST: N control(s) drifted",
        "HOST: N control(s) changed, M failed"): the first line of each host counts it as done."""
        host, _, rest = text.partition(": ")
        if not rest or not (rest == "unreachable" or "control(s)" in rest):
            return
        with self._lock:
            if host in self._seen:
                return
            self._seen.add(host)
            self.done += 1
            if rest == "unreachable":
                self.unreachable += 1
            elif rest.endswith(" failed") and not rest.endswith(" 0 failed"):
                self.failing += 1
        self.draw()

    def text(self) -> str:
        seconds = int(time.monotonic() - self.started)
        elapsed = f"{seconds // 60:02d}:{seconds % 60:02d}"
        from kijun.i18n import t

        return t("progress_line", self.lang).format(done=self.done, total=self.total, failing=self.failing,
                                                          unreachable=self.unreachable, elapsed=elapsed)

    def draw(self) -> None:
        if not self.enabled:
            return
        width = max(20, shutil.get_terminal_size((80, 24)).columns - 1)
        with self._lock:
            self.stream.write("\r\x1b[K" + self.text()[:width])
            self.stream.flush()
            self._shown = True

    def clear(self) -> None:
        with self._lock:
            if self._shown:
                self.stream.write("\r\x1b[K")
                self.stream.flush()
                self._shown = False

    def _tick(self) -> None:
        while not self._stop.wait(1.0):
            self.draw()


def progress_for(total: int, lang: str) -> Progress:
    """The progress line of a fleet run: on a terminal, unless -q."""
    import click

    ctx = click.get_current_context()
    quiet = (ctx.find_root().obj or {}).get("verbosity", 0) < 0
    return Progress(total, lang, enabled=False if quiet else None)


def say(line: str) -> None:
    """A run's own lines on stderr, below the progress line (which is drawn again after them)."""
    import click

    verbosity = (click.get_current_context().find_root().obj or {}).get("verbosity", 0)
    if verbosity < 0 and not line.startswith("kijun:"):  # -q: errors, warnings and interruptions only
        return
    active = Progress.active
    if active is not None:
        active.clear()
    click.echo(line, err=True)
    if active is not None:
        active.draw()
