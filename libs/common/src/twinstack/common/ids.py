"""Identifiers that travel into NATS subjects, KV keys and InfluxDB tags.

A twin id becomes a subject token (``tel.<partition>.<twin_id>``) and a KV key, so it must
never contain ``.``, ``*``, ``>``, white space or anything a subject or key forbids. Ids are
checked once, at the API boundary, against one strict pattern.
"""

from __future__ import annotations

import re
import zlib

from twinstack.common.errors import FieldViolation, InvalidArgumentError

# A caller's ids never contain '/'; inside the platform the ids of a tenant other than the
# default one are qualified with it (``acme/pump-1``, see twinstack.common.tenancy), and the
# patterns below admit that form. The server bootstrap refuses '/' in every id a caller sends.
TENANT_QUALIFIER = r"(?:[a-z0-9][a-z0-9-]{0,62}/)?"
LOCAL_ID_PATTERN = re.compile(r"[A-Za-z0-9][A-Za-z0-9_-]{0,127}")
TWIN_ID_PATTERN = re.compile(TENANT_QUALIFIER + LOCAL_ID_PATTERN.pattern)
MODEL_ID_PATTERN = re.compile(TENANT_QUALIFIER + r"[A-Za-z][A-Za-z0-9:;._-]{0,254}")
FIELD_NAME_PATTERN = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,127}")


def twin_id_violation(
    value: str, field: str, pattern: re.Pattern[str] = TWIN_ID_PATTERN
) -> FieldViolation | None:
    """Why ``value`` is not a valid twin id (or, with ``LOCAL_ID_PATTERN``, a valid id that
    is never qualified, such as a relationship's), or None if it is."""
    if pattern.fullmatch(value):
        return None
    return FieldViolation(
        field,
        "twin ids are 1-128 characters of [A-Za-z0-9_-] starting with a letter or digit",
    )


def model_id_violation(value: str, field: str) -> FieldViolation | None:
    """Why ``value`` is not a valid model id (DTMI-like, e.g. ``dtmi:acme:Pump;1``), or None."""
    if MODEL_ID_PATTERN.fullmatch(value):
        return None
    return FieldViolation(
        field, "model ids are 1-255 characters of [A-Za-z0-9:;._-] starting with a letter"
    )


def field_name_violation(value: str, field: str) -> FieldViolation | None:
    """Why ``value`` is not a valid property or telemetry field name, or None."""
    if FIELD_NAME_PATTERN.fullmatch(value):
        return None
    return FieldViolation(
        field, "field names are 1-128 characters of [A-Za-z0-9_] not starting with a digit"
    )


def partition_of(twin_id: str, partitions: int) -> int:
    """The telemetry partition of a twin: stable across processes, hosts and releases."""
    return zlib.crc32(twin_id.encode()) % partitions


def require_twin_id(
    value: str, field: str = "twin_id", pattern: re.Pattern[str] = TWIN_ID_PATTERN
) -> str:
    """Returns ``value`` if it is a valid twin id (see :func:`twin_id_violation`); raises
    InvalidArgumentError otherwise."""
    violation = twin_id_violation(value, field, pattern)
    if violation is not None:
        raise InvalidArgumentError("invalid twin id", [violation])
    return value
