"""What every adapter exposes of the core pool it wraps."""

from __future__ import annotations

from collections.abc import Container, Iterator, Mapping
from typing import Any, Callable, Optional
from urllib.parse import SplitResult, parse_qsl, unquote, urlsplit

from .pool import Pool
from .stats import PoolStats


class PoolFacade:
    """Mixin for adapters that keep their core :class:`gpool.Pool` in ``self._pool``."""

    _pool: Pool[Any]

    @property
    def pool(self) -> Pool[Any]:
        """The underlying :class:`gpool.Pool`."""
        return self._pool

    @property
    def name(self) -> str:
        """The pool's name, as in errors, logs and metrics (never with a password)."""
        return self._pool.name

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._pool.closed

    @property
    def size(self) -> int:
        """Connections idle, in use or being opened."""
        return self._pool.size

    def stats(self, reset: bool = False) -> PoolStats:
        """A frozen snapshot of the pool's gauges and counters (see :meth:`gpool.Pool.stats`).

        Works after close(); ``reset=True`` restarts the counters after the snapshot.
        """
        return self._pool.stats(reset)

    def close(self) -> None:
        """Close for good (idempotent): idle connections now, those in use when they come back.

        Waiters and later calls get the pool's closed error.
        """
        self._pool.close()


# -- from_url: splitting, shared by the adapters ----------------------------------------------------


def split_url(url: Any, schemes: tuple[str, ...]) -> SplitResult:
    """``urlsplit(url)`` for a URL that may hold a password: no error quotes credential text.

    Rejects a user or password holding a raw ``/``, ``?`` or ``#`` (``urlsplit`` would cut the URL
    there and put the rest of the password in the host, port or path), and characters that Unicode
    normalisation (NFKC) turns into a delimiter (``urlsplit`` raises quoting the whole netloc), and
    a fragment.
    """
    if not isinstance(url, str):
        raise TypeError(f"url must be a string, got {type(url).__name__}")
    scheme, sep, rest = url.partition("://")
    if not sep or scheme.lower() not in schemes:
        shown = f", got {scheme + '://'!r}" if sep and not set(scheme) & set("@:/?#") else ""
        raise ValueError(f"url: scheme must be {' or '.join(s + '://' for s in schemes)}{shown}")
    at = rest.rfind("@")
    if at >= 0:
        cuts = [i for i in (rest.find(c) for c in "/?#") if i >= 0]
        end = min(cuts) if cuts else len(rest)
        if end < at:  # an '@' after the host part: in the path or query, or in a password cut short
            netloc = rest[:end]
            port_text = netloc.rpartition(":")[2] if ":" in netloc else None
            if (port_text is not None and not port_text.isdigit()) or "=" not in rest[end:at]:
                raise ValueError("url: the user or password holds a raw '/', '?', '#' or '@': percent-encode "
                                 "them (%2F, %3F, %23, %40)")
    try:
        parts = urlsplit(url)
    except ValueError:  # its message quotes the netloc, password included
        raise ValueError("url: the user, password or host holds a character that Unicode normalisation "
                         "(NFKC) turns into '/', '?', '#', '@' or ':', or is malformed: percent-encode it") from None
    if parts.fragment:
        raise ValueError("url: a fragment (#...) is not allowed")
    return parts


def url_port(url: str, parts: SplitResult) -> Optional[int]:
    """The port of a single-host URL (None when it names none), from 1 to 65535."""
    try:
        port = parts.port
    except ValueError:
        text = parts.netloc.rpartition("@")[2].rpartition(":")[2]
        raise ValueError(f"url: port must be an integer from 1 to 65535, got {url_shown(url, text)}") from None
    if port == 0:
        raise ValueError("url: port must be an integer from 1 to 65535, got '0'")
    return port


def url_path(parts: SplitResult) -> str:
    """The URL's path, unquoted, without its leading ``/``."""
    return unquote(parts.path[1:] if parts.path.startswith("/") else parts.path)


def url_query(url: str, parts: SplitResult, known: Container[str], *, repeatable: Container[str] = (),
              hints: Optional[Mapping[str, str]] = None) -> Iterator[tuple[str, str]]:
    """The URL's query as ``(option, text)`` pairs: each a ``known`` option, given once, or a
    ``repeatable`` one; an unknown option's error adds its entry in ``hints``."""
    try:
        pairs = parse_qsl(parts.query, keep_blank_values=True, strict_parsing=bool(parts.query))
    except ValueError:
        raise ValueError("url: the query string is malformed (expected option=value&...)") from None
    seen: set[str] = set()
    for key, text in pairs:
        if key not in repeatable:
            if key not in known:
                raise ValueError(f"url: unknown option {url_shown(url, key)}{(hints or {}).get(key, '')}")
            if key in seen:
                raise ValueError(f"url: option {key!r} given more than once")
            seen.add(key)
        yield key, text


def url_shown(url: str, text: str) -> str:
    """``repr(text)`` for an error message, unless ``text`` may be (part of) the URL's credentials."""
    rest = url.partition("://")[2]
    credentials = rest[:rest.rfind("@")] if "@" in rest else ""
    if text and credentials and (text in credentials or text in unquote(credentials)):
        return "(not shown: it may hold credentials)"
    return repr(text)


# -- from_url option parsers, shared by the adapters -----------------------------------------------


def url_int(key: str, text: str) -> int:
    """An integer URL option; the error names the option (never the URL, which may hold a password)."""
    try:
        return int(text)
    except ValueError:
        raise ValueError(f"url: option {key} must be an integer, got {text!r}") from None


def url_float(key: str, text: str) -> float:
    """A number URL option."""
    try:
        return float(text)
    except ValueError:
        raise ValueError(f"url: option {key} must be a number, got {text!r}") from None


def url_none(convert: Callable[[str, str], Any]) -> Callable[[str, str], Any]:
    """``convert``, or None for ``none``/``null``/empty."""
    def parse(key: str, text: str) -> Any:
        return None if text.lower() in ("none", "null", "") else convert(key, text)
    return parse


def url_bool(key: str, text: str) -> bool:
    """``1/true/yes/on`` or ``0/false/no/off``."""
    lowered = text.lower()
    if lowered in ("1", "true", "yes", "on"):
        return True
    if lowered in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"url: option {key} must be true or false, got {text!r}")


def url_str(key: str, text: str) -> str:
    """A text URL option, as it is."""
    return text


#: URL options every adapter takes for its core pool (the connect-retry count is named per adapter:
#: ``retry`` for MySQL, ``connect_retries`` for Redis, whose ``retry`` is redis-py's command policy)
POOL_URL_OPTIONS: dict[str, Callable[[str, str], Any]] = {
    "max_connections": url_int,
    "initial_connections": url_int,
    "timeout": url_none(url_float),
    "idle_timeout": url_none(url_float),
    "max_lifetime": url_none(url_float),
    "check_interval": url_none(url_float),
    "max_waiting": url_none(url_int),
    "max_usage": url_none(url_int),
    "retry_delay": url_float,
    "name": url_str,
    "reap_expired_connections": url_bool,
    "reap_interval": url_float,
    "leak_timeout": url_none(url_float),
    "reclaim_dead_holders": url_bool,
    "timing_stats": url_bool,
}
