"""The errors an API call raises: one class per reason the services report.

Every service error carries an ``ErrorInfo`` whose ``reason`` names what went wrong; the class
raised is chosen by that reason and, when a status has none (the network, a proxy), by its gRPC
code. Catch :class:`ApiError` for all of them.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import grpc
from google.protobuf.message import Message
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status

from twinstack.api.common.v1 import types_pb2

ERROR_DOMAIN = "twinstack.io"
"""The ``ErrorInfo.domain`` of every error the services report."""

_DETAIL_TYPES: tuple[type[Message], ...] = (
    error_details_pb2.ErrorInfo,
    error_details_pb2.BadRequest,
    error_details_pb2.ResourceInfo,
    error_details_pb2.RetryInfo,
    error_details_pb2.PreconditionFailure,
    error_details_pb2.QuotaFailure,
    types_pb2.RevisionMismatch,
)


def unpack_details(status: status_pb2.Status) -> list[Message]:
    """The detail messages of a ``google.rpc.Status`` that this SDK knows, unpacked.

    Args:
        status: A status, as ``grpc_status.rpc_status.from_call`` returns it.

    Returns:
        ``ErrorInfo``, ``BadRequest``, ``ResourceInfo``, ``RetryInfo``, ``PreconditionFailure``,
        ``QuotaFailure`` and ``RevisionMismatch`` messages, in the order sent.
    """
    found: list[Message] = []
    for wrapper in status.details:
        for kind in _DETAIL_TYPES:
            if wrapper.Is(kind.DESCRIPTOR):
                message = kind()
                wrapper.Unpack(message)
                found.append(message)
    return found


@dataclass(frozen=True)
class Violation:
    """One thing wrong with a request: where (a field path, or a precondition's subject) and
    why."""

    field: str
    description: str


class ApiError(Exception):
    """A twinstack API call failed.

    Attributes:
        code: The gRPC status code.
        message: The service's message.
        details: The rich detail messages (``ErrorInfo``, ``BadRequest``, ...).
        reason: ``ErrorInfo.reason`` (``""`` when the status came from the network, not a
            service).
        metadata: ``ErrorInfo.metadata``.
    """

    reasons: ClassVar[tuple[str, ...]] = ()
    codes: ClassVar[tuple[grpc.StatusCode, ...]] = ()

    def __init__(
        self, code: grpc.StatusCode, message: str, details: list[Message] | None = None
    ) -> None:
        super().__init__(f"{code.name}: {message}")
        self.code = code
        self.message = message
        self.details = list(details or [])
        info = self._first(error_details_pb2.ErrorInfo)
        self.reason: str = info.reason if info is not None else ""
        self.metadata: dict[str, str] = dict(info.metadata) if info is not None else {}

    def _first(self, kind: type[Any]) -> Any:
        return next((d for d in self.details if isinstance(d, kind)), None)

    @property
    def violations(self) -> list[Violation]:
        """Every field violation (``BadRequest``) and failed precondition, in order."""
        found = []
        for detail in self.details:
            if isinstance(detail, error_details_pb2.BadRequest):
                found += [Violation(v.field, v.description) for v in detail.field_violations]
            elif isinstance(detail, error_details_pb2.PreconditionFailure):
                found += [Violation(v.subject, v.description) for v in detail.violations]
        return found

    @property
    def retry_after_s(self) -> float | None:
        """How long the service asks the caller to wait before trying again (``RetryInfo``)."""
        info = self._first(error_details_pb2.RetryInfo)
        return None if info is None else info.retry_delay.ToNanoseconds() / 1e9

    @classmethod
    def from_rpc_error(cls, error: grpc.RpcError) -> ApiError:
        """The error of the most specific class for a failed call.

        Args:
            error: What a sync or asyncio gRPC call raised.
        """
        call: Any = error
        status = rpc_status.from_call(call) if hasattr(call, "trailing_metadata") else None
        details = unpack_details(status) if status is not None else []
        return error_of(call.code(), call.details() or "", details)


class InvalidArgumentError(ApiError):
    """The request is malformed; :attr:`violations` say which fields and why. Sending it again
    will not help."""

    reasons = ("INVALID_ARGUMENT",)
    codes = (grpc.StatusCode.INVALID_ARGUMENT, grpc.StatusCode.OUT_OF_RANGE)


class LimitExceededError(InvalidArgumentError):
    """The request goes over a documented limit (see ``docs/limits.md``).

    ``limit`` names the setting (``TWINSTACK_...``) that bounds it, ``maximum`` its value. When
    :attr:`code` is RESOURCE_EXHAUSTED the bound is on what the caller holds at once (open
    Watches, stored rules) and the request passes once the caller holds less.
    """

    reasons = ("LIMIT_EXCEEDED",)

    @property
    def limit(self) -> str:
        """The setting that bounds the request."""
        return self.metadata.get("limit", "")

    @property
    def maximum(self) -> float | None:
        """The bound."""
        raw = self.metadata.get("maximum")
        return None if raw is None else float(raw)


class NotFoundError(ApiError):
    """The named model, twin, relationship, rule or sweep does not exist."""

    reasons = ("NOT_FOUND",)
    codes = (grpc.StatusCode.NOT_FOUND,)

    @property
    def resource_name(self) -> str:
        """The name that was not found (``ResourceInfo``)."""
        info = self._first(error_details_pb2.ResourceInfo)
        return "" if info is None else str(info.resource_name)


class AlreadyExistsError(ApiError):
    """Something with that name exists already."""

    reasons = ("ALREADY_EXISTS",)
    codes = (grpc.StatusCode.ALREADY_EXISTS,)


class RevisionMismatchError(ApiError):
    """A conditional write named a revision that is no longer current: read and try again."""

    reasons = ("REVISION_MISMATCH",)
    codes = (grpc.StatusCode.ABORTED,)

    @property
    def current_revision(self) -> int | None:
        """The revision the resource is at now."""
        mismatch = self._first(types_pb2.RevisionMismatch)
        return None if mismatch is None else int(mismatch.current_revision)


class FailedPreconditionError(ApiError):
    """The request is well formed but the system is not in a state to apply it (a breaking
    model change, a twin that still has relationships); :attr:`violations` say which."""

    reasons = ("FAILED_PRECONDITION",)
    codes = (grpc.StatusCode.FAILED_PRECONDITION,)


class UnavailableError(ApiError):
    """A service, or something it depends on (NATS, InfluxDB, Ray), cannot be reached now;
    trying again later may work (:attr:`retry_after_s`)."""

    reasons = ("DEPENDENCY_UNAVAILABLE",)
    codes = (grpc.StatusCode.UNAVAILABLE,)


class ResourceExhaustedError(ApiError):
    """The service is pushing back (too much work in flight); trying again later may work."""

    reasons = ("RESOURCE_EXHAUSTED",)
    codes = (grpc.StatusCode.RESOURCE_EXHAUSTED,)


class QuotaExceededError(ResourceExhaustedError):
    """The caller's tenant is at one of its quotas (see ``docs/limits.md``).

    :attr:`quota` names the setting, :attr:`maximum` its value; for a rate (ingested points
    per second) :attr:`retry_after_s` says when the same request fits.
    """

    reasons = ("QUOTA_EXCEEDED",)

    @property
    def tenant(self) -> str:
        """The tenant whose quota was reached."""
        return self.metadata.get("tenant", "")

    @property
    def quota(self) -> str:
        """The setting that sets the quota."""
        return self.metadata.get("quota", "")

    @property
    def maximum(self) -> float | None:
        """The quota."""
        raw = self.metadata.get("maximum")
        return None if raw is None else float(raw)


class UnauthenticatedError(ApiError):
    """The call carried no valid credentials."""

    reasons = ("UNAUTHENTICATED",)
    codes = (grpc.StatusCode.UNAUTHENTICATED,)


class PermissionDeniedError(ApiError):
    """The caller may not do this."""

    reasons = ("PERMISSION_DENIED",)
    codes = (grpc.StatusCode.PERMISSION_DENIED,)


class DeadlineExceededError(ApiError):
    """The call's deadline passed before the service answered, or something the service waits
    for outside the platform (a device's answer to a command) did not come in time."""

    codes = (grpc.StatusCode.DEADLINE_EXCEEDED,)
    reasons = ("DEADLINE_EXCEEDED",)


class CallCancelledError(ApiError):
    """The call was cancelled (by the caller, or by a service shutting down)."""

    codes = (grpc.StatusCode.CANCELLED,)


class InternalError(ApiError):
    """The service failed unexpectedly; its logs say why."""

    reasons = ("INTERNAL",)
    codes = (
        grpc.StatusCode.INTERNAL,
        grpc.StatusCode.UNKNOWN,
        grpc.StatusCode.DATA_LOSS,
        grpc.StatusCode.UNIMPLEMENTED,
    )


_CLASSES: tuple[type[ApiError], ...] = (
    InvalidArgumentError,
    LimitExceededError,
    NotFoundError,
    AlreadyExistsError,
    RevisionMismatchError,
    FailedPreconditionError,
    UnavailableError,
    ResourceExhaustedError,
    QuotaExceededError,
    UnauthenticatedError,
    PermissionDeniedError,
    DeadlineExceededError,
    CallCancelledError,
    InternalError,
)
_BY_REASON = {reason: kind for kind in _CLASSES for reason in kind.reasons}
# A status without a reason gets the class that names its code itself, never a subclass that
# inherits it (a bare RESOURCE_EXHAUSTED is a push back, not a tenant's quota).
_BY_CODE = {code: kind for kind in _CLASSES for code in vars(kind).get("codes", ())}


def error_of(code: grpc.StatusCode, message: str, details: list[Message] | None = None) -> ApiError:
    """The error of the most specific class for a status.

    Args:
        code: The gRPC status code.
        message: The status message.
        details: The unpacked detail messages (see :func:`unpack_details`).
    """
    reason = next(
        (d.reason for d in details or [] if isinstance(d, error_details_pb2.ErrorInfo)), ""
    )
    kind = _BY_REASON.get(reason) or _BY_CODE.get(code, ApiError)
    return kind(code, message, details)
