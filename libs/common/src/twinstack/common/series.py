"""The time-series layout in InfluxDB: where every acknowledged telemetry point is stored.

InfluxDB fixes the type of a field per measurement (per shard) at its first write and refuses
later writes of another type. With one measurement for all models, the first model to write a
field ``level`` as a double would make every later model's integer ``level`` unstorable: ingest
would answer OK and the historian would then get a 400 and dead-letter acknowledged points. So
telemetry is stored in one measurement per value type: a field's type is part of where it lives,
and no write can ever conflict with another (docs/telemetry.md, "Storage layout").

Every point is tagged ``twin_id``. Tag and field names share one namespace in InfluxQL, so a
field named like a tag (``twin_id``) or the time column would make ``WHERE twin_id = ...``
match another twin's field: those names are reserved in models, and queries qualify tags with
``::tag`` as well.
"""

from __future__ import annotations

from collections.abc import Iterable

from twinstack.common.influx import quote_identifier

__all__ = [
    "ALL_MEASUREMENTS",
    "FORECAST_MEASUREMENT",
    "FORECAST_TAGS",
    "MEASUREMENTS",
    "NUMERIC_MEASUREMENTS",
    "RISK_MEASUREMENT",
    "TAGS",
    "TWIN_ID_TAG",
    "from_clause",
    "twin_tag",
]

# The tag every telemetry and forecast point carries.
TWIN_ID_TAG = "twin_id"
# Simulated futures: the forecast fan (quantiles over time) and per-condition risks.
FORECAST_MEASUREMENT = "forecast"
RISK_MEASUREMENT = "forecast_risk"
FORECAST_TAGS = ("forecast_id", "quantile", "condition")
# Every tag name in the layout; models may not use them as field names
# (twinstack.modeling.names.RESERVED_SERIES_NAMES holds them, a unit test checks).
TAGS = (TWIN_ID_TAG, *FORECAST_TAGS)

# Frame column kind -> measurement. Doubles keep the measurement all telemetry used before.
MEASUREMENTS: dict[str, str] = {
    "double_values": "telemetry",
    "int_values": "telemetry_integer",
    "bool_values": "telemetry_boolean",
    "string_values": "telemetry_string",
}
NUMERIC_MEASUREMENTS = ("telemetry", "telemetry_integer")
ALL_MEASUREMENTS = tuple(MEASUREMENTS.values())


def twin_tag() -> str:
    """The twin id tag as an InfluxQL expression that can only mean the tag."""
    return f"{quote_identifier(TWIN_ID_TAG)}::tag"


def from_clause(measurements: Iterable[str]) -> str:
    return ", ".join(quote_identifier(m) for m in measurements)
