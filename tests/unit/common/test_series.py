"""The InfluxDB layout is defined once, and the model language reserves its names."""

from __future__ import annotations

from twinstack.common.series import ALL_MEASUREMENTS, MEASUREMENTS, TAGS, TWIN_ID_TAG, twin_tag
from twinstack.modeling.names import RESERVED_SERIES_NAMES


def test_every_tag_of_the_layout_is_a_name_models_may_not_use() -> None:
    assert TWIN_ID_TAG in TAGS
    assert set(TAGS) <= RESERVED_SERIES_NAMES
    assert "time" in RESERVED_SERIES_NAMES


def test_one_measurement_per_value_type() -> None:
    assert len(set(MEASUREMENTS.values())) == len(MEASUREMENTS) == len(ALL_MEASUREMENTS)
    assert twin_tag() == '"twin_id"::tag'
