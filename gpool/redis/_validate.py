"""Up-front checks of the redis-py connection keywords ``RedisPool`` passes on.

redis-py takes ``socket_timeout=-1`` or ``socket_read_size=0`` and fails every later command, and
``protocol=4`` raises ``redis.ConnectionError`` at the first connect. Here a wrong type raises
``TypeError`` and a wrong value ``ValueError``, naming the parameter and the value (never a secret's
value). Private; not the place to import from.
"""

from __future__ import annotations

import codecs
import ssl as _ssl
from typing import Any, Callable

from .._check import Check, callable_, choice, flag, instance, integer, run_checks, seconds, text


def _codec_name(lookup: Callable[[str], Any], what: str) -> Check:
    """A non-empty string that ``lookup`` (a ``codecs`` registry) knows, else ``ValueError`` naming ``what``."""
    def check(name: str, value: Any) -> None:
        text(allow_none=False, nonempty=True)(name, value)
        try:
            lookup(value)
        except LookupError:
            raise ValueError(f"{name}: unknown {what} {value!r}") from None
    return check


def _retry_on_error(name: str, value: Any) -> None:
    if value is None:
        return
    if not isinstance(value, (list, tuple, set, frozenset)) or not all(
            isinstance(item, type) and issubclass(item, BaseException) for item in value):
        raise TypeError(f"{name} must be a list of exception classes, got {value!r}")


def _cert_reqs(name: str, value: Any) -> None:
    if value is None or isinstance(value, _ssl.VerifyMode):
        return
    if isinstance(value, str) and value.lower() in ("none", "optional", "required"):
        return
    raise ValueError(f"{name} must be 'none', 'optional', 'required', an ssl.VerifyMode or None, got {value!r}")


def _credential_provider(name: str, value: Any) -> None:
    if value is not None and not callable(getattr(value, "get_credentials", None)):
        raise TypeError(f"{name} must be a redis.credentials.CredentialProvider or None, got a "
                        f"{type(value).__name__}")


_TABLE: dict[str, Check] = {
    "socket_timeout": seconds(),
    "socket_connect_timeout": seconds(),
    "socket_keepalive": flag(),
    "socket_keepalive_options": instance((dict,), "a dict (TCP option -> value)"),
    "socket_read_size": integer(1),
    "health_check_interval": seconds(allow_none=False, allow_zero=True),
    "client_name": text(),
    "username": text(),
    "encoding": _codec_name(codecs.lookup, "encoding"),
    "encoding_errors": _codec_name(codecs.lookup_error, "error handler"),
    "decode_responses": flag(),
    "retry_on_timeout": flag(),
    "retry_on_error": _retry_on_error,
    "protocol": choice((None, 2, 3, "2", "3")),
    "path": text(allow_none=False, nonempty=True),
    "credential_provider": _credential_provider,
    "redis_connect_func": callable_(),
    "ssl_cert_reqs": _cert_reqs,
    "ssl_ca_certs": text(path=True),
    "ssl_ca_path": text(path=True),
    "ssl_certfile": text(path=True),
    "ssl_keyfile": text(path=True),
    "ssl_password": text(secret=True, allow_bytes=True),
    "ssl_check_hostname": flag(),
    "ssl_ciphers": text(),
    "ssl_min_version": instance((_ssl.TLSVersion,), "an ssl.TLSVersion"),
}


def check_connection_kwargs(kwargs: dict[str, Any]) -> None:
    """Raise ``TypeError``/``ValueError`` naming the first bad redis-py connection keyword of ``kwargs``."""
    run_checks(_TABLE, kwargs)
