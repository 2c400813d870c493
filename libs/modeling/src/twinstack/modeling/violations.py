"""How the model language reports what is wrong: field violations with a path and a reason."""

from __future__ import annotations

from dataclasses import dataclass

from google.protobuf import timestamp_pb2

# 0001-01-01T00:00:00Z and 9999-12-31T23:59:59Z, the range a Timestamp may hold.
MIN_TIMESTAMP_SECONDS = -62_135_596_800
MAX_TIMESTAMP_SECONDS = 253_402_300_799
NANOS_PER_SECOND = 1_000_000_000


@dataclass(frozen=True)
class FieldViolation:
    """One bad field of a request: where (a path such as ``points[3].fields.temp``) and why."""

    field: str
    description: str


def checked_timestamp_ns(value: timestamp_pb2.Timestamp) -> int | None:
    """``value`` in nanoseconds since the epoch, or None if it is no valid Timestamp."""
    seconds = value.seconds
    nanos = value.nanos
    if MIN_TIMESTAMP_SECONDS <= seconds <= MAX_TIMESTAMP_SECONDS and 0 <= nanos < NANOS_PER_SECOND:
        return seconds * NANOS_PER_SECOND + nanos
    return None


def timestamp_violation(value: timestamp_pb2.Timestamp, field: str) -> FieldViolation | None:
    """Why ``value`` is no valid Timestamp, or None.

    ``google.protobuf.Timestamp`` can carry any integers on the wire; converting one that is out
    of range raises deep inside a handler, so values are checked where they arrive.
    """
    if checked_timestamp_ns(value) is not None:
        return None
    return FieldViolation(field, "not a valid timestamp (years 1 to 9999, nanos 0 to 999,999,999)")
