"""Timestamps and durations of requests, checked before they are read.

``google.protobuf.Timestamp`` and ``Duration`` can carry any integers on the wire; converting
one that is out of range raises ValueError deep inside a handler. Requests are checked at the
boundary instead, naming the field.
"""

from __future__ import annotations

from google.protobuf import duration_pb2, timestamp_pb2

from twinstack.common.errors import FieldViolation, InvalidArgumentError

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range a Timestamp may hold.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
# About 10,000 years, the range a Duration may hold.
MAX_DURATION_SECONDS = 315_576_000_000
_NANOS = 1_000_000_000


def timestamp_violation(value: timestamp_pb2.Timestamp, field: str) -> FieldViolation | None:
    """Why ``value`` is no valid Timestamp, or None."""
    if (
        MIN_TIMESTAMP_SECONDS <= value.seconds <= MAX_TIMESTAMP_SECONDS
        and 0 <= value.nanos < _NANOS
    ):
        return None
    return FieldViolation(field, "not a valid timestamp (years 1 to 9999, nanos 0 to 999,999,999)")


def duration_violation(value: duration_pb2.Duration, field: str) -> FieldViolation | None:
    """Why ``value`` is no valid Duration, or None."""
    same_sign = value.seconds == 0 or value.nanos == 0 or (value.seconds > 0) == (value.nanos > 0)
    if abs(value.seconds) <= MAX_DURATION_SECONDS and abs(value.nanos) < _NANOS and same_sign:
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
