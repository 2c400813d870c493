"""Domain errors and the rich gRPC statuses they become.

Domain modules raise these without knowing about gRPC; the server's interceptor turns them into
a ``google.rpc.Status`` with an ``ErrorInfo`` (a stable machine-readable reason) and the detail
that fits the error: ``BadRequest`` field violations, ``ResourceInfo``, ``RetryInfo`` or a
:class:`RevisionMismatch`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import grpc
from google.protobuf import any_pb2, duration_pb2
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from twinstack.api.common.v1 import types_pb2
from twinstack.modeling.violations import FieldViolation
from twinstack.sdk.errors import ERROR_DOMAIN

__all__ = [
    "AlreadyExistsError",
    "DeadlineExceededError",
    "FailedPreconditionError",
    "FieldViolation",
    "InvalidArgumentError",
    "LimitExceededError",
    "NotFoundError",
    "PermissionDeniedError",
    "QuotaExceededError",
    "ResourceExhaustedError",
    "RevisionMismatchError",
    "TwinstackError",
    "UnauthenticatedError",
    "UnavailableError",
    "internal_status",
    "require_at_most",
    "to_grpc_status",
]


class TwinstackError(Exception):
    """Base of every error a twinstack API reports to its caller."""

    code: grpc.StatusCode = grpc.StatusCode.INTERNAL
    reason: str = "INTERNAL"

    def __init__(self, message: str, *, metadata: Mapping[str, str] | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.metadata = dict(metadata or {})

    def details(self) -> list[Message]:
        """The detail messages besides ``ErrorInfo``."""
        return []

    def to_status(self) -> status_pb2.Status:
        """The ``google.rpc.Status`` sent to the caller."""
        info = error_details_pb2.ErrorInfo(
            reason=self.reason, domain=ERROR_DOMAIN, metadata=self.metadata
        )
        packed = []
        for detail in [info, *self.details()]:
            wrapper = any_pb2.Any()
            wrapper.Pack(detail)
            packed.append(wrapper)
        return status_pb2.Status(code=self.code.value[0], message=self.message, details=packed)


class InvalidArgumentError(TwinstackError):
    """The request is malformed; ``violations`` say which fields and why."""

    code = grpc.StatusCode.INVALID_ARGUMENT
    reason = "INVALID_ARGUMENT"

    def __init__(
        self,
        message: str,
        violations: Sequence[FieldViolation] = (),
        *,
        metadata: Mapping[str, str] | None = None,
    ) -> None:
        super().__init__(message, metadata=metadata)
        self.violations = list(violations)

    def details(self) -> list[Message]:
        return [
            error_details_pb2.BadRequest(
                field_violations=[
                    error_details_pb2.BadRequest.FieldViolation(
                        field=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
        ]


class LimitExceededError(TwinstackError):
    """A request goes over a documented limit (docs/limits.md), refused before work begins.

    A bound on one request (its size, scenarios, values read) is INVALID_ARGUMENT: the same
    request will never pass. A bound on what one caller holds at once (concurrent Watches,
    stored alert rules) is RESOURCE_EXHAUSTED: it passes once the caller holds less. Either way
    a ``QuotaFailure`` names the setting (``TWINSTACK_...``) and ``ErrorInfo`` carries the
    maximum and, when known, what was asked for.
    """

    reason = "LIMIT_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        limit: str,
        maximum: float,
        requested: float | None = None,
        violations: Sequence[FieldViolation] = (),
        held_by_caller: bool = False,
    ) -> None:
        metadata = {"limit": limit, "maximum": str(maximum)}
        if requested is not None:
            metadata["requested"] = str(requested)
        super().__init__(message, metadata=metadata)
        self.code = (
            grpc.StatusCode.RESOURCE_EXHAUSTED
            if held_by_caller
            else grpc.StatusCode.INVALID_ARGUMENT
        )
        self.limit = limit
        self.violations = list(violations)

    def details(self) -> list[Message]:
        found: list[Message] = [
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=self.limit, description=self.message
                    )
                ]
            )
        ]
        if self.violations:
            found.append(
                error_details_pb2.BadRequest(
                    field_violations=[
                        error_details_pb2.BadRequest.FieldViolation(
                            field=v.field, description=v.description
                        )
                        for v in self.violations
                    ]
                )
            )
        return found


def require_at_most(
    requested: int,
    maximum: int,
    *,
    limit: str,
    what: str,
    field: str,
    hint: str,
) -> None:
    """Refuses a request holding ``requested`` of ``what`` when more than ``maximum`` are
    allowed (:class:`LimitExceededError`, INVALID_ARGUMENT, ``field`` named with ``hint``)."""
    if requested > maximum:
        raise LimitExceededError(
            f"{requested} {what} in one request; at most {maximum}",
            limit=limit,
            maximum=maximum,
            requested=requested,
            violations=[FieldViolation(field, hint)],
        )


class _ResourceError(TwinstackError):
    def __init__(self, resource_type: str, resource_name: str, message: str) -> None:
        super().__init__(message, metadata={"resource_type": resource_type})
        self.resource_type = resource_type
        self.resource_name = resource_name

    def details(self) -> list[Message]:
        return [
            error_details_pb2.ResourceInfo(
                resource_type=self.resource_type, resource_name=self.resource_name
            )
        ]


class NotFoundError(_ResourceError):
    """The named resource does not exist."""

    code = grpc.StatusCode.NOT_FOUND
    reason = "NOT_FOUND"


class AlreadyExistsError(_ResourceError):
    """A resource with that name exists already."""

    code = grpc.StatusCode.ALREADY_EXISTS
    reason = "ALREADY_EXISTS"


class RevisionMismatchError(TwinstackError):
    """A conditional write named a revision that is no longer the current one."""

    code = grpc.StatusCode.ABORTED
    reason = "REVISION_MISMATCH"

    def __init__(self, resource_name: str, expected_revision: int, current_revision: int) -> None:
        super().__init__(
            f"{resource_name} is at revision {current_revision}, not {expected_revision}"
        )
        self.mismatch = types_pb2.RevisionMismatch(
            resource_name=resource_name,
            expected_revision=expected_revision,
            current_revision=current_revision,
        )

    def details(self) -> list[Message]:
        return [self.mismatch]


class FailedPreconditionError(TwinstackError):
    """The request is well formed but the system is not in a state to apply it (a model change
    that breaks compatibility, a twin that still has relationships); ``violations`` say which
    condition failed for what."""

    code = grpc.StatusCode.FAILED_PRECONDITION
    reason = "FAILED_PRECONDITION"

    def __init__(
        self, message: str, violations: Sequence[FieldViolation], *, violation_type: str
    ) -> None:
        super().__init__(message)
        self.violations = list(violations)
        self.violation_type = violation_type

    def details(self) -> list[Message]:
        return [
            error_details_pb2.PreconditionFailure(
                violations=[
                    error_details_pb2.PreconditionFailure.Violation(
                        type=self.violation_type, subject=v.field, description=v.description
                    )
                    for v in self.violations
                ]
            )
        ]


class UnauthenticatedError(TwinstackError):
    """The call carries no credential, or one that does not verify (expired, forged, revoked)."""

    code = grpc.StatusCode.UNAUTHENTICATED
    reason = "UNAUTHENTICATED"


class PermissionDeniedError(TwinstackError):
    """The caller is known, but no role binding of its tenant grants what the call needs."""

    code = grpc.StatusCode.PERMISSION_DENIED
    reason = "PERMISSION_DENIED"


class _RetryableError(TwinstackError):
    def __init__(self, message: str, *, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        delay = duration_pb2.Duration()
        delay.FromNanoseconds(int(self.retry_after_s * 1e9))
        return [error_details_pb2.RetryInfo(retry_delay=delay)]


class DeadlineExceededError(TwinstackError):
    """Something the call waits for outside the platform (a device's answer) did not come in
    time; what was asked may still have happened."""

    code = grpc.StatusCode.DEADLINE_EXCEEDED
    reason = "DEADLINE_EXCEEDED"


class UnavailableError(_RetryableError):
    """A dependency (NATS, InfluxDB, Ray) cannot be reached now; retrying later may work."""

    code = grpc.StatusCode.UNAVAILABLE
    reason = "DEPENDENCY_UNAVAILABLE"


class ResourceExhaustedError(_RetryableError):
    """The service is pushing back: too much work in flight."""

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "RESOURCE_EXHAUSTED"


class QuotaExceededError(TwinstackError):
    """A tenant is at one of its quotas (docs/limits.md#tenant-quotas).

    RESOURCE_EXHAUSTED, with a ``QuotaFailure`` whose subject is ``tenant:<name>``, an
    ``ErrorInfo`` whose metadata names the quota's setting, its maximum and what the request
    would have made it, and, for a rate, a ``RetryInfo`` saying when the request fits.
    """

    code = grpc.StatusCode.RESOURCE_EXHAUSTED
    reason = "QUOTA_EXCEEDED"

    def __init__(
        self,
        message: str,
        *,
        tenant: str,
        quota: str,
        maximum: float,
        requested: float | None = None,
        retry_after_s: float | None = None,
    ) -> None:
        metadata = {"tenant": tenant, "quota": quota, "maximum": f"{maximum:g}"}
        if requested is not None:
            metadata["requested"] = f"{requested:g}"
        super().__init__(message, metadata=metadata)
        self.tenant = tenant
        self.quota = quota
        self.retry_after_s = retry_after_s

    def details(self) -> list[Message]:
        found: list[Message] = [
            error_details_pb2.QuotaFailure(
                violations=[
                    error_details_pb2.QuotaFailure.Violation(
                        subject=f"tenant:{self.tenant}",
                        description=f"{self.message} ({self.quota})",
                    )
                ]
            )
        ]
        if self.retry_after_s is not None:
            delay = duration_pb2.Duration()
            delay.FromNanoseconds(int(self.retry_after_s * 1e9))
            found.append(error_details_pb2.RetryInfo(retry_delay=delay))
        return found


def internal_status(message: str) -> status_pb2.Status:
    """The status for an unexpected failure: no internals leak to the caller."""
    return TwinstackError(message).to_status()


def to_grpc_status(status: status_pb2.Status) -> grpc.Status:
    """Converts a ``google.rpc.Status`` into what ``context.abort_with_status`` takes."""
    return rpc_status.to_status(status)
