from twinstack.api.common.v1 import events_pb2
from twinstack.api.state.v1 import state_pb2
from twinstack.state.live import merge


def batch(*samples: tuple[int, dict[str, float]]) -> events_pb2.TelemetryBatch:
    b = events_pb2.TelemetryBatch(twin_id="pump-1")
    for time_s, fields in samples:
        sample = b.samples.add()
        sample.time.FromSeconds(time_s)
        for name, value in fields.items():
            sample.fields[name].double_value = value
    return b


def test_newest_value_of_each_field_wins_whatever_the_arrival_order() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    assert merge(state, [batch((20, {"temp": 2.0}), (10, {"temp": 1.0, "rpm": 5.0}))])
    assert state.reported["temp"].value.double_value == 2.0
    assert state.reported["temp"].time.seconds == 20
    assert state.reported["rpm"].value.double_value == 5.0
    assert state.last_seen_time.seconds == 20

    late = batch((15, {"temp": 1.5, "rpm": 6.0}))
    assert merge(state, [late]), "rpm is newer than what the state holds"
    assert state.reported["temp"].value.double_value == 2.0, "a late sample never overwrites"
    assert state.reported["rpm"].value.double_value == 6.0
    assert state.last_seen_time.seconds == 20


def test_applying_a_batch_twice_changes_nothing() -> None:
    state = state_pb2.TwinState(twin_id="pump-1")
    redelivered = batch((30, {"temp": 3.0}))
    assert merge(state, [redelivered])
    before = state.SerializeToString(deterministic=True)
    assert not merge(state, [redelivered])
    assert state.SerializeToString(deterministic=True) == before
