"""``RedisPool.from_url``: parsing, with errors that never quote the URL (it may hold a password)."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import unquote

# Absolute imports (Python 3): this is redis-py, not this module.
from .. import _adapter
from .._adapter import POOL_URL_OPTIONS, url_bool, url_float, url_int, url_none, url_str

# -- from_url ------------------------------------------------------------------------------------------


_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    **POOL_URL_OPTIONS,
    "connect_retries": url_int,
    # redis-py connection
    "db": url_int,
    "username": url_str,
    "password": url_str,  # never echoed: no parser of this table puts a password in a message
    "socket_timeout": url_none(url_float),
    "socket_connect_timeout": url_none(url_float),
    "socket_keepalive": url_bool,
    "socket_read_size": url_int,
    "health_check_interval": url_float,
    "client_name": url_str,
    "decode_responses": url_bool,
    "encoding": url_str,
    "encoding_errors": url_str,
    "protocol": url_int,
    "retry_on_timeout": url_bool,
    # rediss://
    "ssl_cert_reqs": url_str,
    "ssl_ca_certs": url_str,
    "ssl_ca_path": url_str,
    "ssl_certfile": url_str,
    "ssl_keyfile": url_str,
    "ssl_check_hostname": url_bool,
}
_SSL_ONLY = frozenset(key for key in _URL_OPTIONS if key.startswith("ssl_"))


_HINTS = {"retry": " (redis-py's Retry object cannot be given in a URL; connect attempts are connect_retries)"}


def _parse_url(url: Any) -> dict[str, Any]:
    parts = _adapter.split_url(url, ("redis", "rediss", "unix"))
    scheme = parts.scheme.lower()
    options: dict[str, Any] = {}
    if parts.username:
        options["username"] = unquote(parts.username)
    if parts.password is not None:
        options["password"] = unquote(parts.password)
    if scheme == "unix":
        if not parts.path:
            raise ValueError("url: unix:// needs the socket's path, e.g. unix:///run/redis.sock")
        options["path"] = unquote(parts.path)
    else:
        port = _adapter.url_port(url, parts)
        if parts.hostname:
            options["host"] = unquote(parts.hostname)
        if port is not None:
            options["port"] = port
        path = _adapter.url_path(parts)
        if path:
            try:
                options["db"] = int(path)
            except ValueError:
                shown = _adapter.url_shown(url, path)
                raise ValueError(f"url: the path must be the database number, got {shown}") from None
        if scheme == "rediss":
            options["ssl"] = True
    for key, text in _adapter.url_query(url, parts, _URL_OPTIONS, hints=_HINTS):
        if key in _SSL_ONLY and scheme != "rediss":
            raise ValueError(f"url: option {key!r} needs a rediss:// URL")
        options[key] = _URL_OPTIONS[key](key, text)
    return options
