"""Times: the operator's local zone for people (TZ, else the system's; JST for ministries), ISO 8601
with the offset for machines. Reports store UTC; only the presentation converts."""

from __future__ import annotations

import datetime as dt
import os
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError


def local_zone() -> dt.tzinfo:
    name = os.environ.get("TZ", "").lstrip(":")
    if name:
        try:
            return ZoneInfo(name)
        except (ZoneInfoNotFoundError, ValueError):
            pass  # a POSIX rule like JST-9: the C library's reading of TZ below
    import time

    time.tzset()
    return dt.datetime.now().astimezone().tzinfo or dt.timezone.utc


def parse(value: str | None) -> dt.datetime | None:
    if not value:
        return None
    try:
        when = dt.datetime.fromisoformat(str(value).replace("Z", "+00:00"))
    except ValueError:
        return None
    return when if when.tzinfo else when.replace(tzinfo=dt.timezone.utc)


def human(value: str | None) -> str:
    """'2026-11-30 07:15:00 JST' (the value itself when it is no time)."""
    when = parse(value)
    if when is None:
        return "" if value is None else str(value)
    local = when.astimezone(local_zone())
    return local.strftime("%Y-%m-%d %H:%M:%S ") + (local.tzname() or local.strftime("%z"))


def machine(value: str | None) -> str:
    """'2026-11-30T07:15:00+09:00' (the value itself when it is no time)."""
    when = parse(value)
    if when is None:
        return "" if value is None else str(value)
    return when.astimezone(local_zone()).isoformat(timespec="seconds")
