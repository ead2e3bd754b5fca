"""``RedisPool.from_url``: parsing, with errors that never quote the URL (it may hold a password)."""

from __future__ import annotations

from typing import Any, Callable
from urllib.parse import parse_qsl, unquote

# Absolute imports (Python 3): this is redis-py, not this module.
from .._adapter import POOL_URL_OPTIONS, split_url, url_bool, url_float, url_int, url_none, url_shown, url_str

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


def _parse_url(url: Any) -> dict[str, Any]:
    parts = split_url(url, ("redis", "rediss", "unix"))
    scheme = parts.scheme.lower()
    if parts.fragment:
        raise ValueError("url: a fragment (#...) is not allowed")
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
        try:
            port = parts.port
        except ValueError:
            text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
            raise ValueError(f"url: port must be an integer from 1 to 65535, got {url_shown(url, text)}") from None
        if parts.hostname:
            options["host"] = unquote(parts.hostname)
        if port is not None:
            if port == 0:
                raise ValueError("url: port must be an integer from 1 to 65535, got '0'")
            options["port"] = port
        path = unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)
        if path:
            try:
                options["db"] = int(path)
            except ValueError:
                raise ValueError(f"url: the path must be the database number, got {url_shown(url, path)}") from None
        if scheme == "rediss":
            options["ssl"] = True
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("url: the query string is malformed (expected option=value&...)") from None
    seen: set[str] = set()
    for key, text in pairs:
        parse = _URL_OPTIONS.get(key)
        if parse is None:
            hint = " (redis-py's Retry object cannot be given in a URL; connect attempts are connect_retries)" \
                if key == "retry" else ""
            raise ValueError(f"url: unknown option {url_shown(url, key)}{hint}")
        if key in _SSL_ONLY and scheme != "rediss":
            raise ValueError(f"url: option {key!r} needs a rediss:// URL")
        if key in seen:
            raise ValueError(f"url: option {key!r} given more than once")
        seen.add(key)
        options[key] = parse(key, text)
    return options
