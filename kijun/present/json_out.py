"""JSON: the data itself. A run report is printed as stored (signed bytes verify: kijun verify FILE),
so its times stay the stored ISO 8601 UTC ones."""

from __future__ import annotations

import json
from dataclasses import asdict, is_dataclass
from typing import Any

from kijun.present.base import Output


def dumps(data: Any) -> str:
    return json.dumps(data, ensure_ascii=False, indent=2) + "\n"


class Json(Output):
    name = "json"
    machine = True
    suffix = ".json"

    def run(self, report: dict[str, Any]) -> str:
        return dumps(report)

    def matrix(self, data: dict[str, Any]) -> str:
        return dumps(data)

    def inspect(self, data: dict[str, Any]) -> str:
        return dumps(data)

    def drift(self, drift: Any) -> str:
        from kijun.drift import exit_code

        return dumps({**(asdict(drift) if is_dataclass(drift) else drift), "exit_code": exit_code(drift)})
