"""Every adapter keyword is checked up front; URL errors never quote credential text.

No server is contacted: each bad value must raise TypeError/ValueError naming the parameter at
construction, where PyMySQL and redis-py accept it (and fail every later command) or raise an
unrelated error.
"""

from gevent import monkey

monkey.patch_all()

from typing import Any  # noqa: E402

import pytest  # noqa: E402

from gpool.mysql import MySQLPool  # noqa: E402
from gpool.redis import RedisPool  # noqa: E402

pytestmark = pytest.mark.timeout(10)

SECRET = "Zq9secretXy"

MYSQL_BAD = [
    ("charset", 5), ("collation", 5), ("sql_mode", 5), ("connect_timeout", "5"),
    ("read_timeout", "5"), ("write_timeout", "1"), ("ssl", "yes"), ("bind_address", 5),
    ("use_unicode", "yes"), ("client_flag", -1), ("max_allowed_packet", 0), ("cursorclass", dict),
    ("conv", []), ("local_infile", "no"), ("binary_prefix", 2), ("program_name", 5), ("unix_socket", 5),
    ("ssl_ca", 5), ("ssl_cert", 5), ("ssl_key", 5), ("ssl_disabled", "no"), ("ssl_verify_cert", "maybe"),
    ("ssl_verify_identity", "yes"), ("auth_plugin_map", []), ("server_public_key", 5), ("compress", True),
    ("read_default_group", 5),
]

REDIS_BAD = [
    ("socket_timeout", -1), ("socket_timeout", "5"), ("socket_connect_timeout", "1"), ("socket_read_size", 0),
    ("socket_read_size", "64"), ("protocol", 4), ("socket_keepalive", "yes"), ("health_check_interval", -1),
    ("health_check_interval", "1"), ("encoding", "nope"), ("encoding_errors", "nope"), ("decode_responses", "yes"),
    ("client_name", 5), ("username", 5), ("retry_on_timeout", "x"), ("retry_on_error", [5]),
    ("socket_keepalive_options", []), ("redis_connect_func", 5), ("credential_provider", 5),
]


@pytest.mark.parametrize("name, value", MYSQL_BAD)
def test_mysql_keyword_checked_up_front(name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        MySQLPool(**{name: value})


@pytest.mark.parametrize("name, value", REDIS_BAD)
def test_redis_keyword_checked_up_front(name: str, value: Any) -> None:
    with pytest.raises((TypeError, ValueError), match=name):
        RedisPool(**{name: value})


def test_secret_keywords_are_redacted() -> None:
    class Opaque:
        def __repr__(self) -> str:
            return SECRET

    with pytest.raises(TypeError, match="ssl_key_password") as info:
        MySQLPool(ssl_key_password=Opaque())
    assert SECRET not in str(info.value)
    with pytest.raises(TypeError, match="ssl_password") as info:
        RedisPool(ssl_password=Opaque())
    assert SECRET not in str(info.value)


TOKEN = "Kw7"  # a second piece of the password, before or after a delimiter
PASSWORDS = {
    "mysql": [TOKEN + "/" + SECRET, SECRET + "?" + TOKEN, SECRET + "?x=" + TOKEN],
    "redis": [TOKEN + "/" + SECRET, SECRET + "?" + TOKEN, SECRET + "?x=" + TOKEN,
              TOKEN + "\uff20" + SECRET, SECRET + "\u2100" + TOKEN, "\ufe56" + SECRET, SECRET + "\uff0f" + TOKEN],
}
URLS = {"mysql": "mysql://app:{}@127.0.0.1:3306/db", "redis": "redis://app:{}@127.0.0.1:6379/0"}


@pytest.mark.parametrize("kind, password", [(kind, pw) for kind, pws in PASSWORDS.items() for pw in pws])
def test_url_errors_never_quote_the_password(kind: str, password: str) -> None:
    cls = MySQLPool if kind == "mysql" else RedisPool
    with pytest.raises(ValueError) as info:
        cls.from_url(URLS[kind].format(password))
    message = str(info.value)
    for part in (SECRET, SECRET[:5], SECRET[-5:], TOKEN):
        assert part not in message, message
    assert info.value.__cause__ is None and (info.value.__context__ is None or info.value.__suppress_context__)
