"""The SDK's error classes mirror the reasons the services report."""

from __future__ import annotations

import grpc
import pytest
from google.protobuf.message import Message
from google.rpc import error_details_pb2

from twinstack.common import errors as server
from twinstack.modeling.violations import FieldViolation
from twinstack.sdk import errors as sdk
from twinstack.sdk.errors import error_of, unpack_details

SERVER_ERRORS = [
    server.InvalidArgumentError("bad", [FieldViolation("points[0].twin_id", "empty")]),
    server.LimitExceededError("big", limit="TWINSTACK_MAX_X", maximum=10, requested=11),
    server.LimitExceededError(
        "many", limit="TWINSTACK_MAX_WATCHES", maximum=2, held_by_caller=True
    ),
    server.NotFoundError("twin", "twins/pump-1", "no twin pump-1"),
    server.AlreadyExistsError("twin", "twins/pump-1", "pump-1 exists"),
    server.RevisionMismatchError("twins/pump-1", 3, 5),
    server.FailedPreconditionError(
        "breaks", [FieldViolation("m.x", "removed")], violation_type="T"
    ),
    server.UnavailableError("nats away", retry_after_s=2.5),
    server.ResourceExhaustedError("busy"),
    server.QuotaExceededError(
        "over", tenant="plant-a", quota="TWINSTACK_TENANT_MAX_TWINS", maximum=5, requested=6
    ),
    server.TwinstackError("boom"),
]
EXPECTED = [
    sdk.InvalidArgumentError,
    sdk.LimitExceededError,
    sdk.LimitExceededError,
    sdk.NotFoundError,
    sdk.AlreadyExistsError,
    sdk.RevisionMismatchError,
    sdk.FailedPreconditionError,
    sdk.UnavailableError,
    sdk.ResourceExhaustedError,
    sdk.QuotaExceededError,
    sdk.InternalError,
]


def as_client_sees(error: server.TwinstackError) -> sdk.ApiError:
    status = error.to_status()
    details: list[Message] = unpack_details(status)
    return error_of(grpc.StatusCode(_code(status.code)), status.message, details)


def _code(number: int) -> tuple[int, str]:
    return next(code.value for code in grpc.StatusCode if code.value[0] == number)


@pytest.mark.parametrize(
    ("error", "expected"), list(zip(SERVER_ERRORS, EXPECTED, strict=True)), ids=repr
)
def test_each_server_reason_becomes_its_own_class(
    error: server.TwinstackError, expected: type[sdk.ApiError]
) -> None:
    seen = as_client_sees(error)
    assert type(seen) is expected
    assert seen.reason == error.reason
    assert seen.message == error.message


def test_every_reason_the_server_can_send_has_a_class() -> None:
    reasons = {cls.reason for cls in vars(server).values() if isinstance(cls, type)
               and issubclass(cls, server.TwinstackError)}  # fmt: skip
    known = {reason for cls in vars(sdk).values() if isinstance(cls, type)
             and issubclass(cls, sdk.ApiError) for reason in cls.reasons}  # fmt: skip
    assert reasons <= known


def test_details_are_readable_as_attributes() -> None:
    invalid = as_client_sees(SERVER_ERRORS[0])
    assert invalid.violations == [sdk.Violation("points[0].twin_id", "empty")]
    limit = as_client_sees(SERVER_ERRORS[1])
    assert isinstance(limit, sdk.LimitExceededError)
    assert (limit.limit, limit.maximum) == ("TWINSTACK_MAX_X", 10.0)
    missing = as_client_sees(SERVER_ERRORS[3])
    assert isinstance(missing, sdk.NotFoundError)
    assert missing.resource_name == "twins/pump-1"
    stale = as_client_sees(SERVER_ERRORS[5])
    assert isinstance(stale, sdk.RevisionMismatchError)
    assert stale.current_revision == 5
    away = as_client_sees(SERVER_ERRORS[7])
    assert away.retry_after_s == 2.5
    precondition = as_client_sees(SERVER_ERRORS[6])
    assert precondition.violations == [sdk.Violation("m.x", "removed")]
    quota = as_client_sees(SERVER_ERRORS[9])
    assert isinstance(quota, sdk.QuotaExceededError)
    assert (quota.tenant, quota.quota, quota.maximum) == (
        "plant-a",
        "TWINSTACK_TENANT_MAX_TWINS",
        5,
    )
    (failure,) = [d for d in quota.details if isinstance(d, error_details_pb2.QuotaFailure)]
    assert failure.violations[0].subject == "tenant:plant-a"
    assert quota.retry_after_s is None


def test_a_status_without_error_info_is_classed_by_its_code() -> None:
    assert type(error_of(grpc.StatusCode.UNAVAILABLE, "connection refused")) is sdk.UnavailableError
    assert type(error_of(grpc.StatusCode.DEADLINE_EXCEEDED, "late")) is sdk.DeadlineExceededError
    assert type(error_of(grpc.StatusCode.UNAUTHENTICATED, "")) is sdk.UnauthenticatedError
    # Never a subclass that only inherits the code: a bare push back is no tenant's quota.
    assert type(error_of(grpc.StatusCode.RESOURCE_EXHAUSTED, "")) is sdk.ResourceExhaustedError
    assert type(error_of(grpc.StatusCode.INVALID_ARGUMENT, "")) is sdk.InvalidArgumentError
    unknown_reason = error_of(
        grpc.StatusCode.NOT_FOUND, "x", [error_details_pb2.ErrorInfo(reason="SOMETHING_NEW")]
    )
    assert type(unknown_reason) is sdk.NotFoundError
    assert unknown_reason.reason == "SOMETHING_NEW"
