"""When the store fails mid-run (disk full, database gone), the run's results go to a spool file.

The spool is an unsigned report (report.schema.json, complete=false) written next to the store,
else in the current directory, else in the temporary directory; rewritten whole after each host, so
a crash keeps every host finished before it. `kijun report`/`inspect` read it like any report.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

from kijun.report import dumps
from kijun.store import DEFAULT_STORE_PATH, STORE_ENV, _sqlite_path


def candidates(store_url: str | None, run_id: str) -> list[Path]:
    url = str(store_url or os.environ.get(STORE_ENV) or DEFAULT_STORE_PATH.expanduser())
    name = f"kijun-spool-{run_id}.json"
    dirs: list[Path] = []
    if "://" not in url or url.startswith("sqlite:///"):
        path = _sqlite_path(url)
        if path != ":memory:":
            dirs.append(Path(path).parent)
            name = f"{Path(path).name}.{run_id}.spool.json"
    dirs += [Path.cwd(), Path(tempfile.gettempdir())]
    return [d / name for d in dict.fromkeys(dirs)]


def write(report: dict[str, Any], store_url: str | None, previous: Path | None = None) -> Path:
    """Write the report atomically to the first place that takes it; return where it went."""
    places = ([previous] if previous else []) + candidates(store_url, report["run_id"])
    errors = []
    for path in places:
        tmp = path.with_name(path.name + ".tmp")
        try:
            fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)  # host facts: not for everyone
            with os.fdopen(fd, "w", encoding="utf-8") as f:
                f.write(dumps(report))
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)
            return path
        except OSError as exc:
            errors.append(f"{path}: {exc.strerror or exc}")
            try:
                tmp.unlink()
            except OSError:
                pass
    raise OSError("; ".join(errors))
