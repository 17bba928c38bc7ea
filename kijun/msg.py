"""Translatable findings: a message is an English string that remembers its template and arguments.

`Msg("{unit} is {state}", unit=name, state=...)` *is* the English text (a str), so every caller,
JSON report and signature keeps working; `render(lang)` looks the template up in the gettext
catalogue (kijun/locale) and fills in the same arguments. Arguments are host-supplied values and
are never translated nor parsed as templates; an argument that is itself a Msg (or a list, joined
with the language's separator) is rendered in the same language. Reports store `encode(msg)` so a
stored run can be shown in Japanese later (kijun.i18n.render).
"""

from __future__ import annotations

import gettext
import string
from functools import lru_cache
from pathlib import Path
from typing import Any

DOMAIN = "kijun"
LOCALE_DIR = Path(__file__).with_name("locale")
LANGS = ("ja", "en")
# A list argument is joined with the language's own separator.
LIST_SEP = {"en": ", ", "ja": "、"}
# Separators of join() as the language writes them (others are kept as given).
JOIN_SEP = {"ja": {", ": "、"}}
MAX_DEPTH = 8  # encoded messages come from stored reports: bounded nesting


@lru_cache(maxsize=None)
def catalogue(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue of a language; English is the msgid itself."""
    if lang == "en":
        return gettext.NullTranslations()
    return gettext.translation(DOMAIN, localedir=str(LOCALE_DIR), languages=[lang], fallback=True)


def translate(text: str, lang: str) -> str:
    return catalogue(lang).gettext(text) if text else text


def known(text: str) -> bool:
    """Whether a text is a msgid of the catalogue (ids from stored reports are checked against it)."""
    return any(text in getattr(catalogue(lang), "_catalog", {}) for lang in LANGS if lang != "en")


class _Formatter(string.Formatter):
    """str.format limited to `{name}` and `{name:spec}`: no attribute or index lookups, so neither a
    template nor a host value can reach into objects; argument values are rendered in `lang`."""

    def __init__(self, lang: str) -> None:
        self.lang = lang

    def get_field(self, field_name: str, args: Any, kwargs: Any) -> tuple[Any, str]:
        if not field_name.isidentifier():
            raise KeyError(field_name)
        return kwargs[field_name], field_name

    def format_field(self, value: Any, format_spec: str) -> str:
        return format(localize(value, self.lang), format_spec)


def fill(template: str, args: dict[str, Any], lang: str = "en") -> str:
    return _Formatter(lang).vformat(template, (), args)


def localize(value: Any, lang: str) -> Any:
    """A message argument as shown in `lang`: messages rendered, lists joined, host values as they are."""
    if isinstance(value, Msg):
        return value.render(lang)
    if isinstance(value, (list, tuple)):
        return LIST_SEP.get(lang, ", ").join(str(localize(v, lang)) for v in value)
    return value


class Msg(str):
    """An English finding that can be rendered in another language (see the module docstring)."""

    template: str
    args: dict[str, Any]

    def __new__(cls, template: str, /, **args: Any) -> Msg:
        self = super().__new__(cls, fill(template, args))
        self.template = template
        self.args = args
        return self

    # immutable like str; pickling keeps the template (multiprocessing, deepcopy in dataclasses.asdict)
    def __copy__(self) -> Msg:
        return self

    def __deepcopy__(self, memo: Any) -> Msg:
        return self

    def __reduce__(self) -> Any:
        return (_rebuild, (type(self), str(self), dict(self.__dict__)))

    def render(self, lang: str) -> str:
        if lang == "en":
            return str(self)
        try:
            return fill(translate(self.template, lang), self.args, lang)
        except (KeyError, ValueError, IndexError, TypeError):  # a broken translation: the English text
            return str(self)

    def encode(self) -> dict[str, Any]:
        return {"id": self.template, "args": {k: encode(v) for k, v in self.args.items()}}


def _rebuild(cls: type, text: str, state: dict[str, Any]) -> Msg:
    """Unpickle without formatting again (the template may be newer than the compiled catalogue)."""
    obj = str.__new__(cls, text)
    obj.__dict__.update(state)
    return obj


class Joined(Msg):
    """Parts joined by a separator, each part rendered in the language asked for."""

    sep: str
    parts: list[Any]

    def __new__(cls, sep: str, parts: list[Any]) -> Joined:  # type: ignore[override]
        self = str.__new__(cls, sep.join(str(p) for p in parts))
        self.template, self.args, self.sep, self.parts = "", {}, sep, list(parts)
        return self

    def render(self, lang: str) -> str:
        sep = JOIN_SEP.get(lang, {}).get(self.sep, self.sep)
        return sep.join(str(localize(p, lang)) for p in self.parts)

    def encode(self) -> dict[str, Any]:
        return {"join": self.sep, "parts": [encode(p) for p in self.parts]}


def join(sep: str, parts: Any) -> str:
    """sep.join(parts) that stays translatable; empty parts are dropped, one part is returned as is."""
    parts = [p for p in parts if p]
    if len(parts) == 1:
        return parts[0]
    if not any(isinstance(p, Msg) for p in parts):
        return sep.join(parts)
    return Joined(sep, parts)


def encode(value: Any) -> Any:
    """JSON form of a message or argument: {id, args} / {join, parts} / list / plain value."""
    if isinstance(value, Msg):
        return value.encode()
    if isinstance(value, (list, tuple)):
        return [encode(v) for v in value]
    if value is None or isinstance(value, (bool, int, float)):
        return value
    return str(value)


class DecodeError(ValueError):
    pass


def decode(data: Any, depth: int = 0) -> Any:
    """The message an encoded form stands for. Raises DecodeError on a malformed one."""
    if depth > MAX_DEPTH:
        raise DecodeError("message nested too deeply")
    if isinstance(data, dict):
        if "join" in data:
            sep, parts = data.get("join"), data.get("parts")
            if not isinstance(sep, str) or not isinstance(parts, list):
                raise DecodeError("bad joined message")
            return Joined(sep, [decode(p, depth + 1) for p in parts])
        template, args = data.get("id"), data.get("args", {})
        if not isinstance(template, str) or not isinstance(args, dict) or not all(
                isinstance(k, str) and k.isidentifier() for k in args):
            raise DecodeError("bad message")
        if not known(template):  # only kijun's own templates are ever formatted
            raise DecodeError("unknown message id")
        try:
            return Msg(template, **{k: decode(v, depth + 1) for k, v in args.items()})
        except (KeyError, ValueError, IndexError, TypeError) as exc:
            raise DecodeError(f"message does not format: {exc}") from None
    if isinstance(data, list):
        return [decode(v, depth + 1) for v in data]
    if data is None or isinstance(data, (str, bool, int, float)):
        return data
    raise DecodeError(f"unexpected {type(data).__name__} in a message")


def of_exception(exc: BaseException) -> str:
    """The message an exception was raised with (raise ValueError(Msg(...))), else its English text."""
    first = exc.args[0] if len(exc.args) == 1 else None
    return first if isinstance(first, Msg) else str(exc)
