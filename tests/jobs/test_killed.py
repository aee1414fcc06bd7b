"""Naming every partition that was on the workers that died (adp.jobs.killed)."""

from __future__ import annotations

from distributed.scheduler import KilledWorker

from adp.jobs.killed import add_suspects, count_suspects

LAYER = "read_parquet-0123abcd"


def _died(at: float, *keys: object, expected: bool = False) -> tuple[float, dict]:
    return at, {"action": "remove-worker", "processing-tasks": list(keys), "expected": expected}


def test_the_killer_is_counted_at_every_death_and_its_bystanders_less() -> None:
    events = [
        _died(5.0, (LAYER, 3)),  # before the block: another job's death
        _died(10.0, (LAYER, 7), (LAYER, 17)),
        _died(11.0, [LAYER, 7], [LAYER, 2]),  # msgpack may turn the keys into lists
        _died(12.0, (LAYER, 7), ("other-layer", 7)),
        _died(13.0, (LAYER, 9), expected=True),  # retired on purpose: not a suspect
        (14.0, {"action": "add-worker"}),
    ]
    assert count_suspects(events, LAYER, since=9.0) == {7: 3, 17: 1, 2: 1}


class _Client:
    def __init__(self, events: list) -> None:
        self.events = events

    def get_events(self, topic: str) -> list:
        assert topic == "all"
        return self.events


def test_dask_s_choice_and_those_as_often_on_the_dying_workers_are_named() -> None:
    events = [_died(10.0 + i, (LAYER, 7), (LAYER, 17)) for i in range(4)]
    events.append(_died(20.0, (LAYER, 7), (LAYER, 2)))
    exc = KilledWorker((LAYER, 17), None, 3)  # type: ignore[arg-type]
    add_suspects(_Client(events), exc, since=0.0)
    assert exc.suspects == [7, 17]  # type: ignore[attr-defined]  # 7: 5 times, 17: 4 times

    alone = KilledWorker((LAYER, 7), None, 3)  # type: ignore[arg-type]
    add_suspects(_Client(events), alone, since=0.0)
    assert alone.suspects == [7]  # type: ignore[attr-defined]


def test_other_errors_and_unreachable_schedulers_are_left_alone() -> None:
    error = ValueError("not a dead worker")
    add_suspects(_Client([]), error, since=0.0)
    assert not hasattr(error, "suspects")

    class _Gone:
        def get_events(self, topic: str) -> list:
            raise OSError("the scheduler is gone")

    exc = KilledWorker((LAYER, 17), None, 3)  # type: ignore[arg-type]
    add_suspects(_Gone(), exc, since=0.0)
    assert not hasattr(exc, "suspects")
