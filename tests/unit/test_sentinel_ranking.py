"""How SentinelRedisPool decides which master to believe: ranking by config epoch, settled above
failover-in-progress, never back to a lower epoch (fake sentinel answers, no servers)."""

from __future__ import annotations

from typing import Any

import pytest

pytest.importorskip("redis")

from gpool.redis._sentinel_watch import (
    ANNOUNCED,
    IN_PROGRESS,
    SETTLED,
    _Answer,
    _answer_of,
    _MasterView,
    best_answer,
)

OLD, NEW = ("10.0.0.1", 6379), ("10.0.0.2", 6379)


class Manager:
    """The part of redis.sentinel.Sentinel the ranking uses (its state check)."""

    min_other_sentinels = 0
    _force_master_ip = None

    def check_master_state(self, state: dict[str, Any], service_name: str) -> bool:
        return bool(state["is_master"] and not state["is_sdown"] and not state["is_odown"])


def state(address: tuple[str, int], epoch: int, flags: str = "master") -> dict[str, Any]:
    names = flags.split(",")
    return {"ip": address[0], "port": address[1], "config-epoch": epoch, "flags": flags,
            "is_master": "master" in names, "is_sdown": "s_down" in names, "is_odown": "o_down" in names}


def answer(address: tuple[str, int], epoch: int, flags: str = "master") -> Any:
    return _answer_of(state(address, epoch, flags), Manager(), "mymaster")


def test_answers_of_a_sentinel_leading_a_failover_are_in_progress() -> None:
    assert answer(OLD, 1, "master,failover_in_progress,force_failover") == _Answer(1, IN_PROGRESS, OLD)
    assert answer(NEW, 1, "master,disconnected") == _Answer(1, SETTLED, NEW)
    assert answer(OLD, 1, "master,s_down") is None
    assert answer(OLD, 1, "master,s_down,o_down") is None


def test_settled_answer_beats_the_leaders_mid_failover_answer_of_the_same_epoch() -> None:
    leader = answer(OLD, 1, "master,failover_in_progress")
    follower = answer(NEW, 1)
    assert best_answer([leader, follower]) == follower
    assert best_answer([follower, leader]) == follower
    assert best_answer([None, None]) is None


def test_flip_flop_the_view_never_goes_back_to_the_old_master() -> None:
    """The sequence measured during SENTINEL FAILOVER on loopback, fed round by round, in every
    order the answers could come: once the view moved to NEW it never returns to OLD."""
    rounds = [
        [answer(OLD, 0, "master,failover_in_progress"), answer(OLD, 0), answer(OLD, 0)],  # failover begins
        [answer(OLD, 1, "master,failover_in_progress"), answer(OLD, 0), answer(OLD, 0)],  # promoted
        [answer(OLD, 1, "master,failover_in_progress"), answer(NEW, 1), answer(OLD, 0)],  # one follower switched
        [answer(OLD, 1, "master,failover_in_progress"), None, answer(OLD, 0)],  # that follower does not answer
        [answer(OLD, 1, "master,failover_in_progress"), answer(NEW, 1), answer(NEW, 1)],
        [answer(NEW, 1), answer(NEW, 1), answer(NEW, 1)],  # the leader finished
    ]
    view = _MasterView()
    seen = []
    for answers in rounds:
        view.offer(best_answer(answers))
        seen.append(view.address)
    assert seen == [OLD, OLD, NEW, NEW, NEW, NEW]


def test_leader_alone_mid_failover_does_not_undo_an_announced_switch() -> None:
    view = _MasterView()
    view.offer(answer(OLD, 4))
    assert view.announce(NEW)  # +switch-master from a follower
    assert view.current == _Answer(4, ANNOUNCED, NEW)
    # Only the leader answers: the failover epoch may be several above ours, still not believed.
    assert not view.offer(answer(OLD, 7, "master,failover_in_progress"))
    assert not view.offer(answer(OLD, 4))  # a follower that has not switched yet
    assert view.address == NEW
    assert view.offer(answer(NEW, 7))  # learns the real epoch
    assert not view.offer(answer(OLD, 6))  # never back to a lower epoch
    assert view.address == NEW and view.current is not None and view.current.epoch == 7
    assert view.offer(answer(OLD, 8))  # a later failover back to OLD is followed
    assert view.address == OLD


def test_announce_before_any_answer_is_ignored_and_repeats_are_no_ops() -> None:
    view = _MasterView()
    assert not view.announce(NEW)
    assert view.address is None
    view.offer(answer(OLD, 1, "master,failover_in_progress"))  # the only sentinel reachable
    assert view.address == OLD
    assert view.announce(NEW)
    assert not view.announce(NEW)  # the second and third sentinels' messages
    assert view.address == NEW
