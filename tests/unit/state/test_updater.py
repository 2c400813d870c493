"""How long a twin may stay silent, and what happens to the state of deleted twins."""

from __future__ import annotations

import pytest

from twinstack.modeling.document import parse_model
from twinstack.modeling.resolve import Resolver
from twinstack.state.store import Retirement, StateStore
from twinstack.state.updater import StalePeriods

FAST = parse_model(
    {
        "id": "dtmi:test:Fast;1",
        "telemetry": {
            "a": {"schema": "double", "samplePeriodS": 0.5},
            "b": {"schema": "double", "samplePeriodS": 2},
        },
    }
)
QUIET = parse_model({"id": "dtmi:test:Quiet;1", "telemetry": {"a": "double"}})
RESOLVE = Resolver({FAST.id: FAST, QUIET.id: QUIET}.get).resolve


def test_a_twin_is_stale_after_some_of_its_slowest_sample_periods() -> None:
    periods = StalePeriods(RESOLVE, periods=3, default_s=300)
    assert periods.of(FAST.id) == 6.0, "3 x the slowest declared period"
    assert periods.of(QUIET.id) == 300, "no period declared: the default"
    assert periods.of("dtmi:test:Unknown;1") == 300, "an unknown model: the default"


class Deleted(StateStore):
    """The store's delete, recorded instead of sent to a bucket."""

    def __init__(self) -> None:
        self.deleted: list[str] = []

    async def delete(self, twin_id: str) -> None:
        self.deleted.append(twin_id)


async def test_only_the_owner_of_a_twins_partition_retires_its_state() -> None:
    store = Deleted()
    retirement = Retirement(store, owns=lambda twin_id: twin_id.startswith("mine-"))
    retirement.retire("mine-1")
    retirement.retire("theirs-1")
    await retirement.stop()
    assert store.deleted == ["mine-1"]


async def test_a_failed_removal_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    class Failing(Deleted):
        async def delete(self, twin_id: str) -> None:
            raise ConnectionError("nats away")

    retirement = Retirement(Failing(), owns=lambda _: True)
    retirement.retire("mine-2")
    await retirement.stop()
    assert "could not remove the state of deleted twin mine-2" in caplog.text


async def test_deletions_reported_before_the_partitions_are_known_wait_for_them() -> None:
    store = Deleted()
    held: set[str] | None = None
    retirement = Retirement(store, owns=lambda t: None if held is None else t in held)
    retirement.retire("mine-3")
    retirement.retire("theirs-3")
    await retirement.stop()
    assert store.deleted == [], "nothing is decided before ownership is known"
    held = {"mine-3"}
    retirement.decide()
    await retirement.stop()
    assert store.deleted == ["mine-3"]
