"""Timestamps and durations of requests, checked before they are read.

``google.protobuf.Timestamp`` and ``Duration`` can carry any integers on the wire; converting
one that is out of range raises ValueError deep inside a handler. Requests are checked at the
boundary instead, naming the field.
"""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from twinstack.common.errors import FieldViolation, InvalidArgumentError
from twinstack.modeling.violations import NANOS_PER_SECOND, timestamp_violation

__all__ = [
    "duration_ns",
    "duration_violation",
    "timestamp_ns",
    "timestamp_violation",
]

# About 10,000 years, the range a Duration may hold.
MAX_DURATION_SECONDS = 315_576_000_000


def duration_violation(value: duration_pb2.Duration, field: str) -> FieldViolation | None:
    """Why ``value`` is no valid Duration, or None."""
    same_sign = value.seconds == 0 or value.nanos == 0 or (value.seconds > 0) == (value.nanos > 0)
    if (
        abs(value.seconds) <= MAX_DURATION_SECONDS
        and abs(value.nanos) < NANOS_PER_SECOND
        and same_sign
    ):
        return None
    return FieldViolation(field, "not a valid duration")


def timestamp_ns(value: timestamp_pb2.Timestamp, field: str) -> int:
    """``value`` in nanoseconds since the epoch; InvalidArgumentError if it is no Timestamp."""
    violation = timestamp_violation(value, field)
    if violation is not None:
        raise InvalidArgumentError("invalid timestamp", [violation])
    return value.ToNanoseconds()


def duration_ns(value: duration_pb2.Duration, field: str) -> int:
    """``value`` in nanoseconds; InvalidArgumentError if it is no Duration."""
    violation = duration_violation(value, field)
    if violation is not None:
        raise InvalidArgumentError("invalid duration", [violation])
    return value.ToNanoseconds()
