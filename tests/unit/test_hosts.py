"""The MySQL host list without servers: parsing, argument errors, role interpretation, host choice."""

from __future__ import annotations

import math
import traceback
from typing import Any

import pytest

from gpool.mysql import MySQLPool, NoHostAvailableError
from gpool.mysql._hosts import PRIMARY, REPLICA, UNAVAILABLE, HostList, interpret_role, parse_host


class FakeConn:
    def __init__(self, host: str, port: int) -> None:
        self.address = (host, port)
        self.closed = False
        self._gpool_host: Any = None

    def close(self) -> None:
        self.closed = True


def make_list(entries: list[tuple[str, int]], target: str = "any", **kwargs: Any) -> HostList:
    options: dict[str, Any] = dict(target=target, host_order="sequential", host_down_for=5.0,
                                   host_connect_timeout=1.0, name=lambda: "test")
    options.update(kwargs)
    return HostList(entries, **options)


@pytest.mark.parametrize("text, expected", [
    ("db1:3306", ("db1", 3306)),
    ("db3", ("db3", 3306)),
    (" db2:3307 ", ("db2", 3307)),
    ("[::1]:3308", ("::1", 3308)),
    ("[::1]", ("::1", 3306)),
    ("::1", ("::1", 3306)),
])
def test_parse_host_takes_host_port_and_defaults_the_port(text: str, expected: tuple[str, int]) -> None:
    assert parse_host(text) == expected


@pytest.mark.parametrize("text", ["db1:0", "db1:65536", "db1:x", ":3306", "", "[::1", "a b:1"])
def test_parse_host_rejects_malformed_entries_naming_hosts(text: str) -> None:
    with pytest.raises(ValueError, match="hosts"):
        parse_host(text)


def test_host_and_hosts_together_raise_type_error() -> None:
    with pytest.raises(TypeError, match="host and hosts"):
        MySQLPool(host="db1", hosts=["db2"])


def test_unknown_target_raises_value_error_naming_target() -> None:
    with pytest.raises(ValueError, match=r"target must be one of .* got 'master'"):
        MySQLPool(hosts=["db1"], target="master")


def test_bad_host_order_and_host_down_for_are_rejected_by_name() -> None:
    with pytest.raises(ValueError, match="host_order"):
        MySQLPool(hosts=["db1"], host_order="roundrobin")
    with pytest.raises(ValueError, match="host_down_for"):
        MySQLPool(hosts=["db1"], host_down_for=-1)
    with pytest.raises(TypeError, match="host_connect_timeout"):
        MySQLPool(hosts=["db1"], host_connect_timeout="1")
    with pytest.raises(TypeError, match="hosts must be a list"):
        MySQLPool(hosts="db1:3306,db2")
    with pytest.raises(ValueError, match="listed twice"):
        MySQLPool(hosts=["db1:3306", "db1"])


def test_host_order_defaults_follow_the_target() -> None:
    assert MySQLPool(hosts=["a", "b"], target="primary")._hosts.host_order == "sequential"  # type: ignore[union-attr]
    assert MySQLPool(hosts=["a", "b"], target="replica")._hosts.host_order == "random"  # type: ignore[union-attr]
    assert MySQLPool(hosts=["a", "b"])._hosts.host_order == "sequential"  # type: ignore[union-attr]
    assert MySQLPool(host="a").host_stats() is None  # one server, target any: the plain path


def test_host_connect_timeout_defaults_to_connect_timeout() -> None:
    pool = MySQLPool(hosts=["a", "b"], connect_timeout=3)
    assert pool._hosts is not None and pool._hosts.host_connect_timeout == 3.0


def test_from_url_parses_a_multi_host_netloc() -> None:
    pool = MySQLPool.from_url("mysql://app:pw@db1:3306,db2:3307,db3/shop?target=primary&host_down_for=2.5")
    stats = pool.host_stats()
    assert stats is not None and stats.target == "primary"
    assert [h.address for h in stats.hosts] == ["db1:3306", "db2:3307", "db3:3306"]
    assert pool._hosts is not None and pool._hosts.host_down_for == 2.5
    assert pool.database == "shop" and pool.user == "app"
    assert "pw" not in repr(pool)


@pytest.mark.parametrize("url", [
    "mysql://app:s3cret@db1:99999,db2/shop",
    "mysql://app:s3cret@db1:3306,,db2/shop",
    "mysql://app:s3cret@db1,db2/shop?target=master",
])
def test_from_url_errors_never_quote_the_password(url: str) -> None:
    with pytest.raises(ValueError) as info:
        MySQLPool.from_url(url)
    assert "s3cret" not in "".join(traceback.format_exception(info.value))  # nor in the chain


@pytest.mark.parametrize("answers, role", [
    ((0, 0, 0, {}), PRIMARY),
    ((1, 0, 0, {}), REPLICA),
    ((0, 1, 0, {}), REPLICA),
    ((0, 0, 1, {"wsrep_ready": "ON", "wsrep_local_state_comment": "Synced"}), PRIMARY),
    ((0, 0, 1, {"wsrep_ready": "ON", "wsrep_local_state_comment": "Donor/Desynced"}), UNAVAILABLE),
    ((0, 0, 1, {"wsrep_ready": "OFF", "wsrep_local_state_comment": "Synced"}), UNAVAILABLE),
    ((1, 0, 1, {"wsrep_ready": "ON", "wsrep_local_state_comment": "Synced"}), REPLICA),
])
def test_interpret_role(answers: tuple[Any, Any, Any, dict[str, str]], role: str) -> None:
    assert interpret_role(*answers) == role


def test_a_failed_host_is_skipped_until_host_down_for_passes() -> None:
    hosts = make_list([("a", 1), ("b", 2)])
    tried: list[str] = []

    def open_one(host: str, port: int, timeout: float) -> FakeConn:
        tried.append(host)
        if host == "a":
            raise OSError("refused")
        return FakeConn(host, port)

    for _ in range(5):
        assert hosts.connect(open_one).address == ("b", 2)
    assert tried == ["a", "b", "b", "b", "b", "b"]
    hosts.hosts[0].down_until = -math.inf  # its deny period is over
    hosts.connect(open_one)
    assert tried[-2:] == ["a", "b"]
    assert hosts.stats().hosts[0].denials == 2


def test_when_every_host_is_denied_the_least_recently_denied_is_tried() -> None:
    hosts = make_list([("a", 1), ("b", 2)])
    tried: list[str] = []

    def open_one(host: str, port: int, timeout: float) -> FakeConn:
        tried.append(host)
        raise OSError("refused")

    with pytest.raises(NoHostAvailableError) as info:
        hosts.connect(open_one)
    assert tried == ["a", "b"]
    assert "a:1" in str(info.value) and isinstance(info.value.__cause__, OSError)
    with pytest.raises(NoHostAvailableError):
        hosts.connect(open_one)
    assert tried == ["a", "b", "a"]  # a was denied first
    with pytest.raises(NoHostAvailableError):
        hosts.connect(open_one)
    assert tried == ["a", "b", "a", "b"]


def test_sticky_primary_goes_first_and_a_second_writable_host_is_refused() -> None:
    hosts = make_list([("a", 1), ("b", 2)], target="primary")
    a, b = hosts.hosts
    assert hosts.verdict(b, PRIMARY, 0.0, pooled=False) == 0
    assert hosts.sticky is b
    assert hosts.plan(0.0)[0] == [b, a]
    epoch = a.epoch
    assert hosts.verdict(a, PRIMARY, 0.0, pooled=True) == 2  # split brain
    assert a.rogue and hosts.split_brains == 1 and a.epoch == epoch + 1
    hosts.deny(b, 1.0, "gone")
    assert hosts.verdict(a, PRIMARY, 1.0, pooled=False) == 0  # failover: b is denied
    assert hosts.sticky is a and not a.rogue
