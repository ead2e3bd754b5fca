"""``MySQLPool.from_url``: parsing, with errors that never quote the URL (it may hold a password)."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qsl, unquote, urlsplit

import pymysql
import pymysql.connections
import pymysql.cursors

from .._adapter import POOL_URL_OPTIONS, url_bool, url_float, url_int, url_none, url_str
from ._hosts import HOST_URL_OPTIONS, parse_url_hosts

# -- from_url option parsing -----------------------------------------------------------------------


def _url_secret(key: str, text: str) -> str:
    return text  # never echoed


def _url_cursorclass(key: str, text: str) -> Any:
    cls = getattr(pymysql.cursors, text, None)
    if not (isinstance(cls, type) and issubclass(cls, pymysql.cursors.Cursor)):
        raise ValueError(f"url: option cursorclass must name a pymysql.cursors class (e.g. DictCursor), got {text!r}")
    return cls


_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    **POOL_URL_OPTIONS,
    **HOST_URL_OPTIONS,
    "retry": url_int,
    # session
    "autocommit": url_none(url_bool),
    "init_command": url_str,
    # pymysql.connect
    "charset": url_str,
    "collation": url_str,
    "sql_mode": url_str,
    "connect_timeout": url_float,
    "read_timeout": url_none(url_float),
    "write_timeout": url_none(url_float),
    "unix_socket": url_str,
    "local_infile": url_bool,
    "max_allowed_packet": url_int,
    "bind_address": url_str,
    "binary_prefix": url_bool,
    "program_name": url_str,
    "use_unicode": url_bool,
    "client_flag": url_int,
    "read_default_file": url_str,
    "read_default_group": url_str,
    "cursorclass": _url_cursorclass,
    "ssl_ca": url_str,
    "ssl_cert": url_str,
    "ssl_key": url_str,
    "ssl_key_password": _url_secret,
    "ssl_disabled": url_bool,
    "ssl_verify_cert": url_bool,
    "ssl_verify_identity": url_bool,
}


def parse_url(url: Any) -> dict[str, Any]:
    """The keyword arguments of ``MySQLPool`` that ``url`` stands for (see ``MySQLPool.from_url``)."""
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    try:
        parts = urlsplit(url)
    except ValueError:  # its message may quote the netloc, password included
        raise ValueError("url: malformed (expected mysql://user:password@host:port/database)") from None
    if parts.scheme not in ("mysql", "mysql+pymysql"):
        raise ValueError(f"url: scheme must be mysql:// or mysql+pymysql://, got {parts.scheme + '://'!r}")
    if parts.fragment:
        raise ValueError("url: a fragment (#...) is not allowed")
    host_list = parts.netloc.rpartition("@")[2]  # urlsplit cannot parse a multi-host netloc's port
    try:
        port = None if "," in host_list else parts.port
    except ValueError:
        text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ValueError(f"url: port must be an integer from 1 to 65535, got {text!r}") from None
    options: dict[str, Any] = {}
    if "," in host_list:
        options["hosts"] = parse_url_hosts(unquote(host_list))
    elif parts.hostname:
        options["host"] = unquote(parts.hostname)
    if port is not None:
        if port == 0:
            raise ValueError("url: port must be an integer from 1 to 65535, got '0'")
        options["port"] = port
    if parts.username:
        options["user"] = unquote(parts.username)
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    path = unquote(parts.path[1:]) if parts.path.startswith("/") else unquote(parts.path)
    if "/" in path:
        raise ValueError(f"url: database must be a single path segment, got {path!r}")
    if path:
        options["database"] = path
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("url: the query string is malformed (expected option=value&...)") from None
    setsession: list[str] = []
    for key, text in pairs:
        if key == "setsession":
            setsession.append(text)
            continue
        if key not in _URL_OPTIONS:
            raise ValueError(f"url: unknown option {key!r}")
        if key in options:
            raise ValueError(f"url: option {key!r} given more than once")
        options[key] = _URL_OPTIONS[key](key, text)
    if setsession:
        options["setsession"] = setsession
    return options
