"""Names a model may not give its telemetry or simulated quantities.

Stored series use these names for something else: the time column, the tags of telemetry and
forecast points (``twinstack.common.series`` defines that layout), and the columns InfluxDB
2.x and 3.x give every point. A field of one of these names would pose as a tag in InfluxQL.
"""

from __future__ import annotations

RESERVED_SERIES_NAMES = frozenset(
    {
        "time",
        "twin_id",
        "forecast_id",
        "quantile",
        "condition",
        "_field",
        "_measurement",
        "_start",
        "_stop",
        "_time",
        "_value",
    }
)
