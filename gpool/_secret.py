"""Keeping passwords out of the errors drivers raise: does an exception chain quote a secret?

Drivers put what they could not handle in their messages: PyMySQL's ``UnicodeEncodeError`` for a
password outside Latin-1 holds the whole password in its ``object`` and its repr. gpool logs connect
errors and chains them (``__cause__``), so an adapter asks :func:`quotes_secret` about every error of a
connect attempt and raises a sanitised one instead when the answer is yes.

Private; not the place to import from.
"""

from __future__ import annotations

from typing import Any, Union

from ._chain import exception_chain

Secret = Union[str, bytes]


def secret_forms(secret: Any) -> tuple[Secret, ...]:
    """The spellings of ``secret`` that may turn up in a message or a repr (none for an empty one)."""
    forms: list[Secret] = []
    if isinstance(secret, str) and secret:
        forms += [secret, secret.encode("utf-8", "surrogatepass"), repr(secret)[1:-1]]
        try:
            forms.append(secret.encode("latin-1"))
        except UnicodeEncodeError:
            pass
        forms.append(repr(secret.encode("utf-8", "surrogatepass"))[2:-1])
    elif isinstance(secret, (bytes, bytearray)) and secret:
        raw = bytes(secret)
        forms += [raw, raw.decode("latin-1"), repr(raw)[2:-1]]
    return tuple(dict.fromkeys(forms))


def _texts(exc: BaseException) -> list[Any]:
    texts: list[Any] = []
    for get in (str, repr):
        try:
            texts.append(get(exc))
        except Exception:  # a broken __str__: treat as quoting (see quotes_secret)
            texts.append(None)
    for arg in getattr(exc, "args", ()):
        texts.append(arg if isinstance(arg, (str, bytes)) else None if not _plain(arg) else repr(arg))
    for name in ("object", "filename", "filename2"):  # UnicodeError.object, OSError.filename
        value = getattr(exc, name, None)
        if value is not None:
            texts.append(value if isinstance(value, (str, bytes, bytearray)) else repr(value))
    return texts


def _plain(value: Any) -> bool:
    return isinstance(value, (int, float, bool, type(None), tuple, list))


def quotes_secret(exc: BaseException, forms: tuple[Secret, ...]) -> bool:
    """True when ``exc`` or any exception chained to it (cause, context) may show one of ``forms``."""
    if not forms:
        return False
    for current in exception_chain(exc):
        for text in _texts(current):
            if text is None:
                return True
            for form in forms:
                if type(form) is type(text) and form in text:  # type: ignore[operator]
                    return True
                if isinstance(text, bytearray) and isinstance(form, bytes) and form in text:
                    return True
    return False
