"""Up-front checks of every ``pymysql.connect`` keyword ``MySQLPool`` passes on.

PyMySQL checks few of them, and late: ``charset=5`` raises ``AttributeError`` at the first connect,
``ssl="yes"`` or ``bind_address=5`` fail every connect, a string timeout raises a ``TypeError``
naming no parameter. Here a wrong type raises ``TypeError`` and a wrong value ``ValueError``, naming
the parameter and the value (never a secret's value). Private; not the place to import from.
"""

from __future__ import annotations

import ssl as _ssl
from typing import Any

import pymysql.cursors

from .._check import Check, flag, instance, integer, run_checks, seconds, text


def _cursorclass(name: str, value: Any) -> None:
    if not (isinstance(value, type) and issubclass(value, pymysql.cursors.Cursor)):
        raise TypeError(f"{name} must be a pymysql.cursors.Cursor subclass, got {value!r}")


def _ssl_verify_cert(name: str, value: Any) -> None:
    if value is None or isinstance(value, bool):
        return
    if isinstance(value, str) and value.lower() in ("none", "optional", "required"):
        return
    raise TypeError(f"{name} must be a bool, 'none', 'optional', 'required' or None, got {value!r}")


def _unsupported(name: str, value: Any) -> None:
    if value:
        raise ValueError(f"{name}: not supported by PyMySQL, got {value!r}")


def _key_password(name: str, value: Any) -> None:
    if value is not None and not isinstance(value, (str, bytes)) and not callable(value):
        raise TypeError(f"{name} must be a string, bytes, a callable or None, got a {type(value).__name__}")


_TABLE: dict[str, Check] = {
    "charset": text(allow_none=False),
    "collation": text(),
    "sql_mode": text(),
    "unix_socket": text(nonempty=True, path=True),
    "read_default_file": text(path=True),
    "read_default_group": text(),
    "conv": instance((dict,), "a dict of converters"),
    "use_unicode": flag(),
    "client_flag": integer(0),
    "cursorclass": _cursorclass,
    "connect_timeout": seconds(allow_none=False, maximum=31536000),
    "read_timeout": seconds(),
    "write_timeout": seconds(),
    "local_infile": flag(),
    "max_allowed_packet": integer(1),
    "auth_plugin_map": instance((dict,), "a dict (plugin name -> class)"),
    "bind_address": text(nonempty=True),
    "binary_prefix": flag(),
    "program_name": text(),
    "server_public_key": text(allow_bytes=True),
    "ssl": instance((dict, _ssl.SSLContext), "a dict of ssl options or an ssl.SSLContext"),
    "ssl_ca": text(path=True),
    "ssl_cert": text(path=True),
    "ssl_key": text(path=True),
    "ssl_key_password": _key_password,
    "ssl_disabled": flag(allow_none=True),
    "ssl_verify_cert": _ssl_verify_cert,
    "ssl_verify_identity": flag(allow_none=True),
    "compress": _unsupported,
    "named_pipe": _unsupported,
}


def check_connect_kwargs(kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad ``pymysql.connect`` keyword of ``kwargs``."""
    run_checks(_TABLE, kwargs)
