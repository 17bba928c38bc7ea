"""The language of output: --lang, else KIJUN_LANG, else the locale (LC_ALL, LC_MESSAGES, LANG: ja_JP.* -> ja), else en."""

from __future__ import annotations

import os
from collections.abc import Mapping

LANGS = ("ja", "en")


def default_lang(environ: Mapping[str, str] | None = None) -> str:
    env = os.environ if environ is None else environ
    chosen = (env.get("KIJUN_LANG") or "").strip().lower()
    if chosen in LANGS:
        return chosen
    for name in ("LC_ALL", "LC_MESSAGES", "LANG"):
        value = env.get(name)
        if value:  # the first one set decides, as for gettext
            return "ja" if value.lower().startswith("ja") else "en"
    return "en"
