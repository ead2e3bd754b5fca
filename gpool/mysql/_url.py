"""``MySQLPool.from_url``: parsing, with errors that never quote the URL (it may hold a password)."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote

import pymysql
import pymysql.connections
import pymysql.cursors

from .. import _adapter
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
    parts = _adapter.split_url(url, ("mysql", "mysql+pymysql"))
    host_list = parts.netloc.rpartition("@")[2]  # urlsplit cannot parse a multi-host netloc's port
    port = None if "," in host_list else _adapter.url_port(url, parts)
    options: dict[str, Any] = {}
    if "," in host_list:
        options["hosts"] = parse_url_hosts(unquote(host_list))
    elif parts.hostname:
        options["host"] = unquote(parts.hostname)
    if port is not None:
        options["port"] = port
    if parts.username:
        options["user"] = unquote(parts.username)
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    path = _adapter.url_path(parts)
    if "/" in path:
        raise ValueError(f"url: database must be a single path segment, got {_adapter.url_shown(url, path)}")
    if path:
        options["database"] = path
    setsession: list[str] = []
    for key, text in _adapter.url_query(url, parts, _URL_OPTIONS, repeatable=("setsession",)):
        if key == "setsession":
            setsession.append(text)
        else:
            options[key] = _URL_OPTIONS[key](key, text)
    if setsession:
        options["setsession"] = setsession
    return options
