from typing import Any

import grpc
from google.rpc import status_pb2

from twinstack.api.common.v1 import types_pb2
from twinstack.common.errors import (
    FieldViolation,
    InvalidArgumentError,
    NotFoundError,
    ResourceExhaustedError,
    RevisionMismatchError,
)
from twinstack.sdk.errors import ERROR_DOMAIN, unpack_details


def details(status: status_pb2.Status) -> list[Any]:
    return list(unpack_details(status))


def test_invalid_argument_carries_error_info_and_field_violations() -> None:
    error = InvalidArgumentError(
        "bad", [FieldViolation("points[0].time", "required"), FieldViolation("x", "y")]
    )
    status = error.to_status()
    assert status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert status.message == "bad"
    info, bad_request = details(status)
    assert info.reason == "INVALID_ARGUMENT"
    assert info.domain == ERROR_DOMAIN
    assert [(v.field, v.description) for v in bad_request.field_violations] == [
        ("points[0].time", "required"),
        ("x", "y"),
    ]


def test_not_found_names_the_resource() -> None:
    status = NotFoundError("twinstack.io/Twin", "pump-9", "no twin").to_status()
    assert status.code == grpc.StatusCode.NOT_FOUND.value[0]
    info, resource = details(status)
    assert info.metadata["resource_type"] == "twinstack.io/Twin"
    assert (resource.resource_type, resource.resource_name) == ("twinstack.io/Twin", "pump-9")


def test_revision_mismatch_reports_the_current_revision() -> None:
    status = RevisionMismatchError(
        "twins/pump-1", expected_revision=3, current_revision=7
    ).to_status()
    assert status.code == grpc.StatusCode.ABORTED.value[0]
    mismatch = details(status)[1]
    assert isinstance(mismatch, types_pb2.RevisionMismatch)
    assert (mismatch.expected_revision, mismatch.current_revision) == (3, 7)


def test_push_back_says_when_to_retry() -> None:
    status = ResourceExhaustedError("busy", retry_after_s=1.5).to_status()
    assert status.code == grpc.StatusCode.RESOURCE_EXHAUSTED.value[0]
    retry = details(status)[1]
    assert retry.retry_delay.ToNanoseconds() == 1_500_000_000
